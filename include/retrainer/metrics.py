"""Performance metrics for both tasks, computed the same way everywhere (monitor, training, backtest)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np


def compute(task: str, y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """All metrics for ``task`` on labelled rows; empty input gives an empty dict."""
    from sklearn import metrics as skm

    if len(y_true) == 0:
        return {}
    if task == "regression":
        return {
            "rmse": float(skm.root_mean_squared_error(y_true, y_pred)),
            "mae": float(skm.mean_absolute_error(y_true, y_pred)),
            "r2": float(skm.r2_score(y_true, y_pred)) if len(y_true) > 1 else float("nan"),
        }
    return {
        "accuracy": float(skm.accuracy_score(y_true, y_pred)),
        # macro F1: the same definition on every batch, whichever classes a batch happens to contain
        "f1": float(skm.f1_score(y_true, y_pred, average="macro", zero_division=0)),
        "balanced_accuracy": float(skm.balanced_accuracy_score(y_true, y_pred)),
    }


def worse_by(value: float, reference: float, lower_is_better: bool) -> float:
    """Relative worsening of ``value`` against ``reference`` (positive = worse)."""
    if reference == 0:
        return 0.0 if value == reference else float("inf")
    delta = (value - reference) if lower_is_better else (reference - value)
    return delta / abs(reference)
