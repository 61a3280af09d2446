"""Shared pieces of the config schema: the strict base model, durations, names, metric sets and error text."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Annotated

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from retrainer.exceptions import ConfigError

if TYPE_CHECKING:
    from pathlib import Path

DURATION_RE = re.compile(r"^(\d+)([DWH])$")
NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,62}$")

Duration = Annotated[
    str, Field(pattern=DURATION_RE.pattern, description="a number and a unit: H hours, D days, W weeks (8W)")
]
LOWER_IS_BETTER = {"rmse", "mae", "log_loss", "brier"}
TRIGGER_SIGNALS = (
    "data_drift",
    "prediction_drift",
    "performance",
    "flags",
    "error_detector",
    "cost",
    "benefit",
)
METRICS = {
    "classification": {"accuracy", "f1", "balanced_accuracy", "roc_auc", "pr_auc", "log_loss", "brier"},
    "regression": {"rmse", "mae", "r2"},
}


def duration_hours(text: str) -> int:
    """Hours in a duration string such as ``8W``, ``56D`` or ``12H``."""
    m = DURATION_RE.match(text)
    if not m:
        raise ConfigError(f"not a duration: {text!r} (use e.g. 8W, 56D, 12H)")
    n, unit = int(m.group(1)), m.group(2)
    return n * {"H": 1, "D": 24, "W": 24 * 7}[unit]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


ALERT_EVENTS = (
    "quarantine",  # a batch failed the data gate and was quarantined
    "rejected",  # a retrained candidate failed validation (or was rejected / timed out in approval)
    "promotion",  # a new champion
    "rollback",  # the champion moved back (manually or automatically)
    "approval_waiting",  # a challenger waits for a person
    "stuck_batch",  # a claimed batch is not moving
    "task_failed",  # any task of the model's DAGs failed for good
    "no_batch",  # no batch arrived within alerts.no_batch_within
    "signal_suppressed",  # a drift or performance signal fired without a retrain (cooldown, budget, vote)
)


RESERVED_POLICIES = {"never", "every_batch", "trigger", "baseline"}


def _module_path(value: str, example: str) -> str:
    """``value`` if it is ``package.module:name``; else a ValueError showing ``example``."""
    module, sep, name = value.partition(":")
    if (
        not sep
        or not module
        or not name.isidentifier()
        or not all(p.isidentifier() for p in module.split("."))
    ):
        raise ValueError(f"must be an import path `package.module:function`, e.g. {example}")
    return value


def cron(value: str | None) -> str | None:
    """``value`` if it is a 5-field cron expression, an ``@preset`` or None; else a ValueError."""
    if value is not None and value.startswith("@"):
        return value
    from croniter import croniter  # light, and already required by Airflow

    if value is not None and (len(value.split()) != 5 or not croniter.is_valid(value)):
        raise ValueError("must be a valid 5-field cron expression, an @preset, or null")
    return value


def _format_errors(path: Path | str, err: ValidationError) -> str:
    lines = [f"{path}: invalid config"]
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"]) or "<root>"
        if e["type"] == "extra_forbidden":
            lines.append(f"  - unknown key '{loc}' (not a recognised setting; check spelling)")
        elif e["type"] == "missing":
            lines.append(f"  - missing required key '{loc}'")
        else:
            lines.append(f"  - {loc}: {e['msg']} (got {e.get('input')!r})")
    return "\n".join(lines)
