"""From a batch's evidence to the policy's decision: the one step the monitor's decide task and
``retrainer check`` share, so both decide a batch the same way.

:func:`assess` is pure: it reads nothing and records nothing. The decide task gathers the evidence from
what the signal tasks returned and records the result in the decision log; ``retrainer check`` computes
the same evidence in one process and prints it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from retrainer import policy

if TYPE_CHECKING:
    from retrainer.config import ModelConfig


@dataclass(frozen=True)
class Evidence:
    """What is known about one batch when it is decided: the results of the drift, performance and flag
    signals, the champion that scored it, and the advisory extras."""

    drift: dict[str, Any] = field(default_factory=dict)
    performance: dict[str, Any] = field(default_factory=dict)
    flagged_rate: float | None = None
    champion_version: int | None = None
    unscorable: str | None = None  # why the champion cannot score the batch (it counts as no champion)
    estimate: dict[str, Any] = field(default_factory=dict)  # the estimated metric (CBPE / DLE), if any
    errors: Any = None  # per-row errors for the change detector


@dataclass(frozen=True)
class Assessment:
    """The policy's input, its decision, and its state after this batch."""

    signals: policy.Signals
    decision: policy.Decision
    state: policy.PolicyState


def signals_of(
    cfg: ModelConfig,
    drift_result: dict[str, Any],
    perf: dict[str, Any],
    flagged_rate: float | None,
    has_champion: bool,
) -> policy.Signals:
    """The policy's input from what the signal tasks returned (drift, performance, flagged rate)."""
    return policy.Signals(
        data_drift_share=drift_result.get("data_drift_share"),
        drifted_columns=tuple(drift_result.get("drifted_columns") or ()),
        prediction_drift=drift_result.get("prediction_drift"),
        metric_name=perf.get("metric"),
        metric_value=perf.get("value"),
        metric_reference=perf.get("reference"),
        lower_is_better=cfg.lower_is_better,
        labelled_rows=int(perf.get("labelled_rows") or 0),
        flagged_rate=flagged_rate,
        has_champion=has_champion,
    )


def assess(cfg: ModelConfig, evidence: Evidence, state: policy.PolicyState) -> Assessment:
    """The policy's step on one batch's ``evidence`` from ``state`` (the state after the previous batch).

    A champion that cannot score the batch counts as none (a retrain replaces it), and the decision then
    says why; an estimated metric, when there is one, feeds the policy beside the realised one."""
    why, version = evidence.unscorable, evidence.champion_version
    signals = signals_of(
        cfg, evidence.drift, evidence.performance, evidence.flagged_rate, version is not None and not why
    )
    estimated = evidence.estimate.get(cfg.trigger_metric)
    if estimated is not None:
        signals = replace(signals, estimated_value=estimated, estimate_method=evidence.estimate["method"])
    decision, new_state, signals = policy.step(
        signals,
        cfg.triggers,
        state,
        errors=evidence.errors,
        model_id=None if version is None else f"v{version}",
    )
    if why and decision.fired == ["no_champion"]:
        decision = replace(decision, reasons=[why], fired=["champion_unscorable"])
    return Assessment(signals, decision, new_state)
