"""Candidate vs champion: the validation rule as a pure function (no MLflow).

The retrain DAG's ``evaluate`` task and the backtest both call :func:`failed_checks`, so a candidate the
backtest accepts is one the DAG would register. The checks and messages are those of
``mlflow.validate_evaluation_results`` with the thresholds of :func:`limits` (a unit test holds the two
verdicts equal): absolute floors from ``validation.floors`` and non-inferiority to the champion within
``validation.max_degradation``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from retrainer.config import LOWER_IS_BETTER

if TYPE_CHECKING:
    from retrainer.config import ModelConfig


def limits(cfg: ModelConfig, champion_value: float | None, force: bool) -> dict[str, tuple[float, bool]]:
    """Per metric: (threshold, greater_is_better) the candidate must meet."""
    out: dict[str, tuple[float, bool]] = {}
    for name, floor in cfg.validation.floors.items():
        lower = name in LOWER_IS_BETTER
        limit = floor.max if lower else floor.min
        if limit is not None:
            out[name] = (float(limit), not lower)
    if champion_value is not None and not force:
        margin = cfg.validation.max_degradation * abs(champion_value)
        limit = champion_value + margin if cfg.lower_is_better else champion_value - margin
        current = out.get(cfg.metric)
        if current is not None:  # keep the stricter of floor and champion comparison
            stricter = min if cfg.lower_is_better else max
            limit = stricter(limit, current[0])
        out[cfg.metric] = (float(limit), not cfg.lower_is_better)
    return out


def failed_checks(
    cfg: ModelConfig, candidate: dict[str, float], champion: dict[str, float], force: bool = False
) -> list[str]:
    """The checks the candidate fails (empty = it passes), worded as MLflow words them."""
    failed = []
    for name, (threshold, greater) in limits(cfg, champion.get(cfg.metric), force).items():
        if name not in candidate:
            failed.append(
                f"Metric validation failed: metric {name} was missing from the evaluation result of "
                "the candidate model."
            )
            continue
        value = candidate[name]
        ok = value >= threshold if greater else value <= threshold
        if not ok:
            failed.append(
                f"Metric {name} value threshold check failed: candidate model {name} = {value}, "
                f"{name} threshold = {threshold}."
            )
    return failed
