"""Every model the replay can train, scored on every batch after it could serve: the matrix behind the
oracle bound (:func:`retrainer.backtest.stats.oracle_curve`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from retrainer.ml import metrics
from retrainer.ml.train import predict

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from retrainer.backtest.replay import Replay
    from retrainer.config import ModelConfig


def _fast_metric(metric: str, y: np.ndarray, p: np.ndarray) -> float | None:
    """``metric`` on one batch without sklearn's overhead (the same definitions), or None if not covered."""
    import numpy as np

    if not len(y):
        return float("nan")
    if metric == "rmse":
        return float(np.sqrt(np.mean((y.astype(float) - p.astype(float)) ** 2)))
    if metric == "mae":
        return float(np.mean(np.abs(y.astype(float) - p.astype(float))))
    if metric == "accuracy":
        return float(np.mean(y == p))
    if metric == "f1":  # macro over the classes present in labels or predictions, zero_division=0
        scores = []
        for c in np.union1d(y, p):
            tp = np.sum((y == c) & (p == c))
            denom = 2 * tp + np.sum((y != c) & (p == c)) + np.sum((y == c) & (p != c))
            scores.append(2 * tp / denom if denom else 0.0)
        return float(np.mean(scores))
    return None


def labelled_rows(cfg: ModelConfig, batch: pd.DataFrame) -> pd.DataFrame:
    """The rows of ``batch`` with a label."""
    return batch[batch[cfg.data.target].notna()]


def model_metrics(replay: Replay) -> tuple[np.ndarray, list[int]]:
    """The configured metric of every model the replay can train, on every batch after it could serve.

    Row 0 is the first model (trained before the replay); row ``r + 1`` is the model a retrain at
    evaluation batch ``r`` trains (labels up to ``r - label_delay``), which serves from batch ``r + 1``.
    Entry ``[row, e]`` is that model's metric on evaluation batch ``e`` (NaN where it cannot serve or
    the fit failed). Uses the replay's fit cache: after ``every_batch`` has run, no new fit is needed.
    """
    import numpy as np
    import pandas as pd

    cfg, w = replay.cfg, replay.warmup
    n = len(replay.batches) - w
    out = np.full((n + 1, n), np.nan)
    frames = [labelled_rows(cfg, replay.batches[i][1]) for i in range(w, len(replay.batches))]
    sizes = [len(f) for f in frames]
    starts = np.concatenate([[0], np.cumsum(sizes)])
    rows = pd.concat(frames, ignore_index=True)
    ys = rows[cfg.data.target].to_numpy()
    need_proba = cfg.metric in metrics.PROBABILITY_METRICS
    for row in range(n):  # the model serving from batch `row` (row 0: the first model)
        fitted = replay.fit(w - 1 if row == 0 else w + row - 1 - replay.delay)
        if isinstance(fitted, str):
            continue
        later = rows.iloc[starts[row] :]
        pred = predict(cfg, fitted.model, later)  # one call per model: every later batch at once
        proba, classes = metrics.predict_proba(cfg, fitted.model, later) if need_proba else (None, None)
        for e in range(row, n):
            a, b = starts[e] - starts[row], starts[e + 1] - starts[row]
            y = ys[starts[e] : starts[e + 1]]
            value = None if need_proba else _fast_metric(cfg.metric, y, pred[a:b])
            if value is None:
                value = metrics.compute(
                    cfg.task,
                    y,
                    pred[a:b],
                    None if proba is None else proba[a:b],
                    classes,
                    metrics.custom(cfg),
                ).get(cfg.metric, float("nan"))
            out[row, e] = value
    return out, sizes
