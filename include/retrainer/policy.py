"""The trigger policy: per-signal thresholds, a combination rule, and a cooldown.

Pure functions over plain data, so the monitor DAG, the CLI and the backtest share one implementation.
:func:`decide` returns a :class:`Decision` whose ``reasons`` say, in words, which signals crossed which
thresholds; ``suppressed_by`` says why a firing decision did not request a retrain.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from retrainer.metrics import worse_by

if TYPE_CHECKING:
    from retrainer.config import TriggerConfig

SIGNALS = ("data_drift", "prediction_drift", "performance", "flags")


@dataclass(frozen=True)
class Signals:
    """Everything measured on one batch (None = not measured)."""

    data_drift_share: float | None = None
    drifted_columns: tuple[str, ...] = ()
    prediction_drift: float | None = None
    metric_name: str | None = None
    metric_value: float | None = None
    metric_reference: float | None = None
    lower_is_better: bool = True
    labelled_rows: int = 0
    flagged_rate: float | None = None
    has_champion: bool = True


@dataclass(frozen=True)
class PolicyState:
    """What the policy remembers: batches checked after the last retrain request (None = never)."""

    batches_since_request: int | None = None


@dataclass
class Decision:
    retrain: bool
    reasons: list[str] = field(default_factory=list)
    fired: list[str] = field(default_factory=list)
    suppressed_by: str | None = None
    score: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def verdict(self) -> str:
        if self.retrain:
            return "retrain"
        return "suppressed" if self.suppressed_by else "no_retrain"


def evaluate_signals(s: Signals, t: TriggerConfig) -> dict[str, str]:
    """Signals that crossed their thresholds, each with a human-readable reason."""
    fired: dict[str, str] = {}
    if t.data_drift and s.data_drift_share is not None and s.data_drift_share >= t.data_drift.share:
        cols = ", ".join(s.drifted_columns[:6])
        fired["data_drift"] = f"data_drift {s.data_drift_share:.2f} >= {t.data_drift.share:.2f} ({cols})"
    if (
        t.prediction_drift
        and s.prediction_drift is not None
        and s.prediction_drift >= t.prediction_drift.threshold
    ):
        fired["prediction_drift"] = (
            f"prediction_drift {s.prediction_drift:.3f} >= {t.prediction_drift.threshold:.3f}"
        )
    if (
        t.performance
        and s.metric_value is not None
        and s.metric_reference is not None
        and s.labelled_rows >= t.performance.min_labelled_rows
    ):
        change = worse_by(s.metric_value, s.metric_reference, s.lower_is_better)
        if change > t.performance.max_degradation:
            fired["performance"] = (
                f"{s.metric_name} {s.metric_value:.4g} vs champion {s.metric_reference:.4g}: "
                f"{change:+.0%} worse > {t.performance.max_degradation:.0%}"
            )
    if t.flags and s.flagged_rate is not None and s.flagged_rate >= t.flags.threshold:
        fired["flags"] = f"flagged_rate {s.flagged_rate:.1%} >= {t.flags.threshold:.1%}"
    return fired


def combine(fired: dict[str, str], t: TriggerConfig) -> tuple[bool, float]:
    """Apply the combination rule: (fires, score)."""
    if t.combine == "weighted":
        score = sum(t.weights.get(name, 1.0) for name in fired)
        return score >= t.weighted_threshold, score
    enabled = [n for n in SIGNALS if getattr(t, n) is not None]
    need = 1 if t.combine == "any" else min(t.k, max(len(enabled), 1))
    return len(fired) >= need, float(len(fired))


def decide(s: Signals, t: TriggerConfig, state: PolicyState | None = None) -> Decision:
    """Decide whether this batch should request a retrain."""
    state = state or PolicyState()
    if not s.has_champion:
        return Decision(True, ["no champion model yet: train the first one"], ["no_champion"])
    fired = evaluate_signals(s, t)
    fires, score = combine(fired, t)
    decision = Decision(fires, list(fired.values()), list(fired), score=score)
    gap = None if state.batches_since_request is None else state.batches_since_request + 1
    if fires and gap is not None and gap <= t.cooldown_batches:
        decision.retrain = False
        decision.suppressed_by = (
            f"cooldown: batch {gap} after the last request, within cooldown_batches={t.cooldown_batches}"
        )
    return decision


def next_state(state: PolicyState, decision: Decision) -> PolicyState:
    """State after a batch: a request resets the counter, any other batch advances it."""
    if decision.retrain:
        return PolicyState(batches_since_request=0)
    if state.batches_since_request is None:
        return state
    return PolicyState(batches_since_request=state.batches_since_request + 1)
