"""Performance metrics for both tasks, computed the same way everywhere (monitor, training, backtest).

Label metrics (accuracy, macro F1, balanced accuracy / RMSE, MAE, R²) need only predictions. Probability
metrics (ROC AUC, PR AUC, log loss, Brier score) need the classifier's class probabilities
(``predict_proba``): :func:`compute` adds them when ``proba`` is given, and :func:`score` predicts both
for a fitted model. For more than two classes ROC AUC and PR AUC are one-vs-rest macro averages and the
Brier score is the multi-class one (mean over rows of the summed squared probability errors).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from retrainer.config import import_object
from retrainer.exceptions import ConfigError
from retrainer.ml.train import predict

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    import numpy as np
    import pandas as pd

    from retrainer.config import ModelConfig

PROBABILITY_METRICS = ("roc_auc", "pr_auc", "log_loss", "brier")


def compute(
    task: str,
    y_true: np.ndarray,
    y_pred: np.ndarray,
    proba: np.ndarray | None = None,
    classes: Any = None,
    custom: Mapping[str, Callable[[Any, Any], float]] | None = None,
) -> dict[str, float]:
    """All metrics for ``task`` on labelled rows; empty input gives an empty dict.

    ``proba`` (rows x classes, columns in the order of ``classes``) adds the probability metrics for a
    classifier; a metric that is undefined on this batch (e.g. ROC AUC with one class present) is left
    out rather than reported as a number. ``custom`` (name -> ``f(y_true, y_pred)``, see :func:`custom`)
    adds the team's own metric.
    """
    from sklearn import metrics as skm

    if len(y_true) == 0:
        return {}
    own = {name: float(f(y_true, y_pred)) for name, f in (custom or {}).items()}
    if task == "regression":
        return {
            "rmse": float(skm.root_mean_squared_error(y_true, y_pred)),
            "mae": float(skm.mean_absolute_error(y_true, y_pred)),
            "r2": float(skm.r2_score(y_true, y_pred)) if len(y_true) > 1 else float("nan"),
            **own,
        }
    out = {
        "accuracy": float(skm.accuracy_score(y_true, y_pred)),
        # macro F1: the same definition on every batch, whichever classes a batch happens to contain
        "f1": float(skm.f1_score(y_true, y_pred, average="macro", zero_division=0)),
        "balanced_accuracy": float(skm.balanced_accuracy_score(y_true, y_pred)),
    }
    if proba is not None and classes is not None:
        out.update(probability_metrics(y_true, proba, classes))
    return {**out, **own}


def custom(cfg: ModelConfig) -> dict[str, Callable[[Any, Any], float]]:
    """The team's own metric of ``cfg`` (``validation.metric: package.module:function``) by its name, or
    an empty dict; a ConfigError naming the key when it does not import or is not a function."""
    path = cfg.custom_metric
    if path is None:
        return {}
    f = import_object(path, "validation.metric")
    if not callable(f):
        raise ConfigError(f"validation.metric: {path!r} is not a function f(y_true, y_pred) -> float")
    return {cfg.metric: f}


def probability_metrics(y_true: np.ndarray, proba: np.ndarray, classes: Any) -> dict[str, float]:
    """ROC AUC, PR AUC (average precision), log loss and Brier score from class probabilities."""
    import numpy as np
    from sklearn import metrics as skm

    classes = list(classes)
    proba = np.asarray(proba, dtype=float)
    y_true = np.asarray(y_true)
    known = np.isin(y_true, classes)  # a class the model never saw has no probability column
    y_true, proba = y_true[known], proba[known]
    if len(y_true) == 0:
        return {}
    onehot = (y_true[:, None] == np.asarray(classes)[None, :]).astype(float)
    out = {
        "log_loss": float(skm.log_loss(y_true, proba, labels=classes)),
        "brier": float(np.mean(np.sum((proba - onehot) ** 2, axis=1)))
        if len(classes) > 2
        else float(np.mean((proba[:, 1] - onehot[:, 1]) ** 2)),
    }
    present = onehot.sum(axis=0)
    if len(classes) == 2:
        if 0 < present[1] < len(y_true):
            out["roc_auc"] = float(skm.roc_auc_score(onehot[:, 1], proba[:, 1]))
            out["pr_auc"] = float(skm.average_precision_score(onehot[:, 1], proba[:, 1]))
        return out
    cols = [j for j in range(len(classes)) if 0 < present[j] < len(y_true)]
    if cols:  # one-vs-rest, macro over the classes present in the batch
        out["roc_auc"] = float(np.mean([skm.roc_auc_score(onehot[:, j], proba[:, j]) for j in cols]))
        out["pr_auc"] = float(np.mean([skm.average_precision_score(onehot[:, j], proba[:, j]) for j in cols]))
    return out


def predict_proba(cfg: ModelConfig, model: Any, df: pd.DataFrame) -> tuple[Any, Any] | tuple[None, None]:
    """(probabilities, classes) of a classifier with ``predict_proba``; (None, None) otherwise."""
    if cfg.task != "classification" or not hasattr(model, "predict_proba"):
        return None, None
    try:
        return model.predict_proba(df[cfg.data.feature_names]), list(model.classes_)
    except AttributeError:  # e.g. an SVC without probability=True exposes the method but cannot use it
        return None, None


def score(cfg: ModelConfig, model: Any, df: pd.DataFrame) -> dict[str, float]:
    """Every metric of ``model`` on the labelled rows of ``df`` (probability metrics when it has them)."""

    lab = df[df[cfg.data.target].notna()]
    if lab.empty:
        return {}
    proba, classes = predict_proba(cfg, model, lab)
    y_true, y_pred = lab[cfg.data.target].to_numpy(), predict(cfg, model, lab)
    return compute(cfg.task, y_true, y_pred, proba, classes, custom(cfg))


def worse_by(value: float, reference: float, lower_is_better: bool) -> float:
    """Relative worsening of ``value`` against ``reference`` (positive = worse)."""
    if reference == 0:
        return 0.0 if value == reference else float("inf")
    delta = (value - reference) if lower_is_better else (reference - value)
    return delta / abs(reference)


def worse_by_units(value: float, reference: float, lower_is_better: bool) -> float:
    """Absolute worsening of ``value`` against ``reference`` in metric units (positive = worse)."""
    return (value - reference) if lower_is_better else (reference - value)
