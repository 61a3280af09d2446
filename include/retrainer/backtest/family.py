"""The family of trigger policies ``retrainer tune`` searches: signal sets x timings, each one a
``triggers`` section built on the config's own (estimation, label delay and sensor settings are kept), and
how a candidate is judged against the fixed-schedule frontier."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from retrainer.config import TriggerConfig

if TYPE_CHECKING:
    from retrainer.config import ModelConfig

# the keys a candidate sets; everything else in `triggers` (estimation, label delay, sensor) is the config's
_OFF: dict[str, Any] = {
    "data_drift": None,
    "prediction_drift": None,
    "performance": None,
    "error_detector": None,
    "cost": None,
    "combine": "any",
}
_PDA = {"mode": "auto", "threshold": 0.15, "z": 3.0}


def _ctl(z: float) -> dict[str, Any]:
    return {"mode": "control", "z": z, "max_degradation": 0.25}


# The signal sets searched: name -> the signal sections (the others off). "no_signal" leaves the retrains to
# the timing alone (the age floor: a fixed schedule; without one, never retrain).
SIGNALS: dict[str, dict[str, Any]] = {
    "no_signal": {},
    "performance_control_z1": {"performance": _ctl(1.0)},
    "performance_control_z2": {"performance": _ctl(2.0)},
    "performance_control_z3": {"performance": _ctl(3.0)},
    "performance_relative_10": {"performance": {"mode": "relative", "max_degradation": 0.10}},
    "performance_relative_25": {"performance": {"mode": "relative", "max_degradation": 0.25}},
    "performance_cusum_h2": {"performance": {"mode": "cusum", "cusum_k": 0.5, "cusum_h": 2.0}},
    "performance_cusum_h4": {"performance": {"mode": "cusum", "cusum_k": 0.5, "cusum_h": 4.0}},
    "prediction_drift_auto": {"prediction_drift": _PDA},
    "prediction_drift_0.3": {"prediction_drift": {"mode": "absolute", "threshold": 0.3}},
    "error_detector_adwin": {"error_detector": {"method": "adwin"}},
    "prediction_drift_auto+performance_control_z1": {"prediction_drift": _PDA, "performance": _ctl(1.0)},
    "prediction_drift_auto+performance_control_z2": {"prediction_drift": _PDA, "performance": _ctl(2.0)},
}

# The timings searched for the best signal sets: cooldown x age floor, and a retrain budget (its share is
# --max-share, filled in at search time).
TIMINGS: dict[str, dict[str, Any]] = {
    **{
        f"cooldown{c}_age{a or 'off'}": {
            "cooldown_batches": c,
            "max_age_batches": a,
            "budget_share": None,
            "follow_up_refit": False,
        }
        for c in (1, 3, 5)
        for a in (None, 4, 8)
    },
    "budget_age_off": {
        "cooldown_batches": 1,
        "max_age_batches": None,
        "budget_share": "max_share",
        "budget_burst": 2.0,
        "follow_up_refit": False,
    },
}
FIRST_TIMING = "cooldown3_age8"  # the shipped default's timing: the first pass
# never retrain: 0 retrains, the frontier's first point, so always within the bounds (the choice when
# --max-share is below what every other policy of the family uses)
NEVER = ("no_signal", "cooldown3_ageoff")


@dataclass
class Candidate:
    """One policy of the family and its figures on the search part."""

    name: str
    signals: str
    timing: str
    triggers: TriggerConfig
    search: dict[str, Any] = field(default_factory=dict)

    @property
    def eligible(self) -> bool:
        return bool(self.search.get("eligible"))


def shipped_default(cfg: ModelConfig) -> TriggerConfig:
    """The trigger policy a model gets without a ``triggers`` section (the config's label delay kept)."""
    default = TriggerConfig(label_delay_batches=cfg.triggers.label_delay_batches)
    perf = default.performance
    if perf is not None and "min_batch_rows" in cfg.data.model_fields_set:  # as ModelConfig does
        rows = min(perf.min_labelled_rows, cfg.data.min_batch_rows)
        default = default.model_copy(
            update={"performance": perf.model_copy(update={"min_labelled_rows": rows})}
        )
    return default


def candidate_triggers(cfg: ModelConfig, signals: str, timing: str, max_share: float) -> TriggerConfig:
    """The config's ``triggers`` with one signal set and one timing of the family."""
    sections = {**_OFF, **SIGNALS[signals]}
    perf = sections.get("performance")
    if perf is not None:  # the config's labelled-rows floor stays (a batch's size is the stream's)
        rows = (cfg.triggers.performance or shipped_default(cfg).performance).min_labelled_rows  # type: ignore[union-attr]
        sections["performance"] = {"min_labelled_rows": rows, **perf}
    tim = {k: (max_share if v == "max_share" else v) for k, v in TIMINGS[timing].items()}
    base = cfg.triggers.model_dump()
    return TriggerConfig.model_validate({**base, **sections, **tim})


def _key(t: TriggerConfig) -> str:
    return json.dumps(t.model_dump(mode="json"), sort_keys=True)


def _worse(cfg: ModelConfig, ci: list[float]) -> bool:
    """Below the frontier with the CI excluding 0."""
    lo, hi = ci
    return bool(lo > 0) if cfg.lower_is_better else bool(hi < 0)


def _better(cfg: ModelConfig, ci: list[float]) -> bool:
    lo, hi = ci
    return bool(hi < 0) if cfg.lower_is_better else bool(lo > 0)


def place(cfg: ModelConfig, ci: list[float]) -> str:
    """``above`` / ``below`` the frontier when the CI excludes 0, else ``tied``."""
    return "above" if _better(cfg, ci) else "below" if _worse(cfg, ci) else "tied"


def _score(cfg: ModelConfig, c: Candidate) -> tuple[bool, float, int]:
    """Sort key (higher first): eligible, the mean metric (sign so that higher is better), fewer retrains."""
    sign = -1.0 if cfg.lower_is_better else 1.0
    mean = c.search["mean"]
    return (c.eligible, sign * mean if mean == mean else float("-inf"), -c.search["retrains"])
