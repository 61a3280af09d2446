"""Performance estimation while labels are late: CBPE for classifiers, DLE for regressors.

Both follow NannyML's published estimators (NannyML itself is not a dependency: it pins old libraries
and sends usage telemetry by default) and are fitted on a labelled *reference* — the champion's holdout:

- **CBPE** (confidence-based performance estimation): calibrate the classifier's probabilities on the
  reference (isotonic regression per class, one-vs-rest, renormalised), then on an unlabelled batch take
  the expected confusion matrix under those probabilities: e.g. expected accuracy = mean over rows of
  the calibrated probability of the predicted class; expected F1 of a class = TP / (TP + (FP + FN) / 2)
  with TP = sum of p(class) over rows predicted as the class, FP = sum of 1 - p(class) over the same
  rows, FN = sum of p(class) over the other rows (NannyML ``estimate_f1``; macro F1 averages the
  classes). ROC AUC uses NannyML's ``estimate_roc_auc`` (cumulative expected true positives along the
  scores). Expected log loss / Brier score take the expectation over the calibrated label distribution.
  The estimate is right when the calibrated probabilities stay right: it captures covariate shift, not
  a change of P(y | x).
- **DLE** (direct loss estimation): fit a model of the champion's per-row loss (squared error for RMSE,
  absolute error for MAE) on the reference's features and prediction; the estimate on a batch is the
  root mean (RMSE) or mean (MAE) of the predicted losses, clipped at 0. NannyML uses LightGBM; this uses
  scikit-learn's histogram gradient boosting (the same algorithm family).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from retrainer.ml.metrics import predict_proba
from retrainer.ml.train import predict

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from retrainer.config import ModelConfig

ESTIMABLE = {
    "classification": {"accuracy", "f1", "roc_auc", "log_loss", "brier"},
    "regression": {"rmse", "mae"},
}


# -- CBPE: the published formulas over calibrated probabilities ------------------------------------------
def expected_accuracy(pred_index: np.ndarray, proba: np.ndarray) -> float:
    """Mean calibrated probability of the predicted class (NannyML ``estimate_accuracy``)."""
    import numpy as np

    return float(np.mean(proba[np.arange(len(pred_index)), pred_index])) if len(pred_index) else float("nan")


def expected_f1_binary(pred_positive: np.ndarray, p_positive: np.ndarray) -> float:
    """NannyML ``estimate_f1``: expected TP / (TP + (FP + FN) / 2) under calibrated probabilities."""
    import numpy as np

    tp = float(np.sum(np.where(pred_positive, p_positive, 0.0)))
    fp = float(np.sum(np.where(pred_positive, 1.0 - p_positive, 0.0)))
    fn = float(np.sum(np.where(~pred_positive, p_positive, 0.0)))
    denominator = tp + 0.5 * (fp + fn)
    return tp / denominator if denominator != 0 else 0.0


def expected_macro_f1(pred_index: np.ndarray, proba: np.ndarray) -> float:
    """Macro F1: the expected one-vs-rest F1 of every class, averaged (as :func:`metrics.compute`)."""
    import numpy as np

    return float(np.mean([expected_f1_binary(pred_index == j, proba[:, j]) for j in range(proba.shape[1])]))


def expected_roc_auc_binary(p_true: np.ndarray, score: np.ndarray) -> float:
    """NannyML ``estimate_roc_auc``: ROC curve of expected positives ranked by the model's score."""
    import numpy as np
    from sklearn.metrics import auc

    order = np.argsort(score)[::-1]
    p_true = np.asarray(p_true, dtype=float)[order]
    with np.errstate(divide="ignore", invalid="ignore"):
        tps = np.cumsum(p_true)
        fps = 1 + np.arange(len(p_true)) - tps
        tpr = np.round(np.concatenate(([0.0], tps)), 5)
        fpr = np.round(np.concatenate(([0.0], fps)), 5)
        return float(auc(fpr / fpr[-1], tpr / tpr[-1]))


@dataclass
class CBPE:
    """Calibrators fitted on the reference; :meth:`estimate` gives the expected metrics of a batch."""

    classes: list[Any]
    calibrators: list[Any]

    @classmethod
    def fit(cls, y_true: np.ndarray, proba: np.ndarray, classes: list[Any]) -> CBPE:
        import numpy as np
        from sklearn.isotonic import IsotonicRegression

        cals = []
        for j, c in enumerate(classes):
            target = (np.asarray(y_true) == c).astype(float)
            iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip")
            cals.append(iso.fit(proba[:, j], target))
        return cls(list(classes), cals)

    def calibrate(self, proba: np.ndarray) -> np.ndarray:
        import numpy as np

        cal = np.column_stack([c.predict(proba[:, j]) for j, c in enumerate(self.calibrators)])
        if cal.shape[1] == 2:  # binary: calibrate the positive class, the negative is its complement
            cal[:, 0] = 1.0 - cal[:, 1]
        total = cal.sum(axis=1, keepdims=True)
        return np.where(total > 0, cal / np.where(total > 0, total, 1.0), 1.0 / cal.shape[1])

    def estimate(self, proba: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
        import numpy as np

        if len(y_pred) == 0:
            return {}
        cal = self.calibrate(np.asarray(proba, dtype=float))
        index = {c: j for j, c in enumerate(self.classes)}
        pred_index = np.array([index.get(v, 0) for v in y_pred])
        out = {"accuracy": expected_accuracy(pred_index, cal), "f1": expected_macro_f1(pred_index, cal)}
        eps = 1e-15
        out["log_loss"] = float(np.mean(-np.sum(cal * np.log(np.clip(proba, eps, 1)), axis=1)))
        if len(self.classes) == 2:
            p1 = np.asarray(proba)[:, 1]
            # E[(p - y)^2] with y ~ Bernoulli(q): p^2 (1 - q) + (1 - p)^2 q
            out["brier"] = float(np.mean(p1**2 * (1 - cal[:, 1]) + (1 - p1) ** 2 * cal[:, 1]))
            out["roc_auc"] = expected_roc_auc_binary(cal[:, 1], p1)
        else:
            p = np.asarray(proba)
            sq = np.sum(p**2, axis=1, keepdims=True)  # E sum_k (p_k - 1[y=k])^2 = sum p^2 - 2 p.q + 1
            out["brier"] = float(np.mean(sq[:, 0] - 2 * np.sum(p * cal, axis=1) + 1))
            out["roc_auc"] = float(
                np.mean([expected_roc_auc_binary(cal[:, j], p[:, j]) for j in range(p.shape[1])])
            )
        return out


# -- DLE: a model of the loss ---------------------------------------------------------------------------
@dataclass
class DLE:
    """A regressor of the champion's per-row loss; :meth:`estimate` gives the batch's expected RMSE/MAE."""

    squared: Any
    absolute: Any

    @staticmethod
    def _design(x: pd.DataFrame, y_pred: np.ndarray) -> pd.DataFrame:
        out = x.copy()
        out["__prediction__"] = y_pred
        return out

    @classmethod
    def fit(cls, x: pd.DataFrame, y_true: np.ndarray, y_pred: np.ndarray, categorical: list[str]) -> DLE:
        import numpy as np
        from sklearn.ensemble import HistGradientBoostingRegressor
        from threadpoolctl import threadpool_limits

        design = _encode(cls._design(x, y_pred), categorical)
        err = np.asarray(y_true, dtype=float) - np.asarray(y_pred, dtype=float)
        kw = {"max_iter": 100, "learning_rate": 0.1, "min_samples_leaf": 10, "random_state": 0}
        with threadpool_limits(1):  # a few hundred rows: threads only contend for shared cores
            sq = HistGradientBoostingRegressor(**kw).fit(design, err**2)
            ab = HistGradientBoostingRegressor(**kw).fit(design, np.abs(err))
        return cls(sq, ab)

    def estimate(self, x: pd.DataFrame, y_pred: np.ndarray, categorical: list[str]) -> dict[str, float]:
        import numpy as np

        if len(x) == 0:
            return {}
        from threadpoolctl import threadpool_limits

        design = _encode(self._design(x, y_pred), categorical)
        with threadpool_limits(1):
            sq = np.maximum(0.0, self.squared.predict(design))
            ab = np.maximum(0.0, self.absolute.predict(design))
        return {"rmse": float(np.sqrt(np.mean(sq))), "mae": float(np.mean(ab))}


def _encode(x: pd.DataFrame, categorical: list[str]) -> pd.DataFrame:
    """Categoricals as stable integer codes (a hash of the value), numerics as floats (NaN kept)."""
    import zlib

    import pandas as pd

    out = pd.DataFrame(index=x.index)
    for c in x.columns:
        if c in categorical:
            out[c] = [
                float(zlib.crc32(str(v).encode()) % 1000) if pd.notna(v) else float("nan") for v in x[c]
            ]
        else:
            out[c] = pd.to_numeric(x[c], errors="coerce").astype(float)
    return out


# -- the estimator of one champion ---------------------------------------------------------------------
@dataclass
class Estimator:
    """CBPE or DLE fitted for one model on its labelled reference (the champion's holdout)."""

    task: str
    method: str  # cbpe | dle
    impl: CBPE | DLE

    def estimate(self, cfg: ModelConfig, model: Any, df: pd.DataFrame) -> dict[str, float]:
        """Expected metrics of ``model`` on ``df`` (labels not used)."""

        if len(df) == 0:
            return {}
        y_pred = predict(cfg, model, df)
        if isinstance(self.impl, CBPE):
            proba, _ = predict_proba(cfg, model, df)
            return self.impl.estimate(proba, y_pred) if proba is not None else {}
        return self.impl.estimate(df[cfg.data.feature_names], y_pred, cfg.data.categorical)


def fit_estimator(cfg: ModelConfig, model: Any, reference: pd.DataFrame) -> Estimator | None:
    """Fit CBPE (classifiers with ``predict_proba``) or DLE (regressors) on the labelled ``reference``.

    None when the reference is too small (``triggers.estimation.min_reference_rows``) or the classifier
    has no probabilities.
    """

    est_cfg = cfg.triggers.estimation
    lab = reference[reference[cfg.data.target].notna()]
    if est_cfg is None or len(lab) < est_cfg.min_reference_rows:
        return None
    y = lab[cfg.data.target].to_numpy()
    if cfg.task == "classification":
        proba, classes = predict_proba(cfg, model, lab)
        if proba is None or classes is None:
            return None
        return Estimator(cfg.task, "cbpe", CBPE.fit(y, proba, classes))
    y_pred = predict(cfg, model, lab)
    return Estimator(cfg.task, "dle", DLE.fit(lab[cfg.data.feature_names], y, y_pred, cfg.data.categorical))
