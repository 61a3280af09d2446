"""The champion on a batch file, streamed :data:`~retrainer.storage.CHUNK_ROWS` rows at a time so memory
follows the chunk size, not the batch: its predictions, the batch's drift against the champion's reference,
and the estimated metric while labels have not arrived (CBPE / DLE).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from retrainer import settings
from retrainer.exceptions import RetrainerError
from retrainer.gates.drift import drift_report, drift_signals
from retrainer.ml import metrics
from retrainer.ml.estimation import CBPE, fit_estimator
from retrainer.ml.train import predict, predict_with_proba, prepare, split_holdout, thread_cap
from retrainer.stages import feeds
from retrainer.stages.batches import batch_file, read_rows, reference_frame, run_champion, scoring_config
from retrainer.storage import iter_chunks
from retrainer.tracking.artifacts import load_run_model

if TYPE_CHECKING:
    from pathlib import Path

    import pandas as pd

    from retrainer.config import ModelConfig

log = logging.getLogger(__name__)


def predict_file(cfg: ModelConfig, model: Any, path: Path, proba: bool = False) -> pd.DataFrame:
    """Time column and predictions of a batch file (and, with ``proba``, the classifier's probabilities
    as ``proba:<class>``), predicted :data:`~retrainer.storage.CHUNK_ROWS` rows at a time."""
    import numpy as np
    import pandas as pd

    # class probabilities are stored beside the predictions, one column per class (``proba:<class>``),
    # when the decision estimates the metric (CBPE) or a probability metric is the watched one (the labels
    # that arrive later are scored with them)
    proba = proba or cfg.trigger_metric in metrics.PROBABILITY_METRICS
    classes = [str(c) for c in getattr(model, "classes_", [])] if proba else []
    times, preds, probas = [], [], []
    for chunk in iter_chunks(path, [cfg.data.time_column, *cfg.data.feature_names]):
        chunk = prepare(cfg, chunk)
        times.append(chunk[cfg.data.time_column].to_numpy())
        if proba and classes:
            pred, p = predict_with_proba(cfg, model, chunk)
            if p is not None:
                probas.append(np.asarray(p, dtype=float))
        else:
            pred = predict(cfg, model, chunk)
        preds.append(np.asarray(pred))
    out = pd.DataFrame(
        {
            cfg.data.time_column: np.concatenate(times) if times else np.array([], "datetime64[ns]"),
            "prediction": np.concatenate(preds) if preds else np.array([]),
        }
    )
    if probas and len(probas) == len(preds):
        stacked = np.concatenate(probas)
        for j, c in enumerate(classes):
            out[f"{feeds.PROBA}{c}"] = stacked[:, j]
    return out


def drift_of(
    cfg: ModelConfig, ref: pd.DataFrame, path: Path, predictions: Any, html: Path | None
) -> dict[str, Any]:
    """Drift of a batch file (with its predictions) against the reference, on sampled rows."""
    import numpy as np

    # the same rows drift_report would sample (pandas' seeded DataFrame.sample), read without loading
    # the rest of the batch: the report's cost and memory stay at report_max_rows whatever the batch size
    total, n = len(predictions), cfg.triggers.report_max_rows
    positions = np.random.RandomState(0).choice(total, n, replace=False) if total > n else np.arange(total)
    cur = read_rows(cfg, path, [cfg.data.time_column, *cfg.data.feature_names], positions)
    cur["prediction"] = np.asarray(predictions)[positions]
    out = drift_report(cfg, ref, cur, html_path=html) if html is not None else drift_signals(cfg, ref, cur)
    out["sampled"] = (
        f"{out.get('current_rows', len(cur))} of {total} batch rows, "
        f"{out.get('reference_rows', len(ref))} of {len(ref)} reference rows (seeded random sample)"
    )
    return out


def estimate(cfg: ModelConfig, claim: dict[str, Any], scored: dict[str, Any]) -> dict[str, Any]:
    """The champion's estimated metrics on the whole batch, labels or not (CBPE / DLE fitted on its
    holdout: the newest ``training.holdout`` of its snapshot); empty when it cannot be estimated."""

    champ = run_champion(cfg, claim)
    if cfg.triggers.estimation is None or champ is None or scored.get("predictions") is None:
        return {}
    try:
        reference = reference_frame(cfg, champ)
        if reference is None:
            return {}
        view = scoring_config(cfg, champ)  # the features the champion was trained on
        _, holdout = split_holdout(view, reference)
        model = load_run_model(champ.run_id, cfg)
        with thread_cap(cfg, settings.threads()):  # the fit; the batch is predicted as the score task does
            est = fit_estimator(view, model, holdout)
        if est is None:
            return {}
        return {"method": est.method, **estimate_batch(view, est, model, claim, scored)}
    except (RetrainerError, ValueError) as exc:  # an estimate is advisory: never block the decision
        log.warning("no performance estimate for %s: %s", claim["batch"], exc)
        return {}


def estimate_batch(
    cfg: ModelConfig, est: Any, model: Any, claim: dict[str, Any], scored: dict[str, Any]
) -> dict[str, float]:
    """The estimator's metrics on the batch without holding its rows: CBPE reads the predictions and
    probabilities the score task stored (computed chunk by chunk if they were not stored); DLE reads the
    features :data:`~retrainer.storage.CHUNK_ROWS` rows at a time beside the stored predictions."""
    import numpy as np
    import pandas as pd
    import pyarrow.parquet as pq

    stored = scored["predictions"]
    columns = [cfg.data.time_column, *cfg.data.feature_names]
    names = pq.read_schema(stored).names
    proba_cols = [c for c in names if c.startswith(feeds.PROBA)]  # written in the model's class order
    preds = pd.read_parquet(stored, columns=["prediction", *proba_cols])
    y_pred = preds["prediction"].to_numpy()
    if isinstance(est.impl, CBPE):
        if proba_cols:
            proba = preds[proba_cols].to_numpy()
        else:  # predictions stored without probabilities: compute them chunk by chunk
            parts = []
            for chunk in iter_chunks(batch_file(cfg, claim), columns):
                _, p = predict_with_proba(cfg, model, prepare(cfg, chunk))
                if p is None:
                    return {}
                parts.append(np.asarray(p, dtype=float))
            proba = np.concatenate(parts) if parts else np.empty((0, len(est.impl.classes)))
        return est.impl.estimate(proba, y_pred)
    # DLE: expected squared and absolute loss per chunk, combined as the mean over all rows
    sq = ab = 0.0
    start = 0
    for chunk in iter_chunks(batch_file(cfg, claim), columns):
        part = est.impl.estimate(
            prepare(cfg, chunk)[cfg.data.feature_names],
            y_pred[start : start + len(chunk)],
            cfg.data.categorical,
        )
        if part:
            sq += part["rmse"] ** 2 * len(chunk)
            ab += part["mae"] * len(chunk)
        start += len(chunk)
    if not start:
        return {}
    return {"rmse": float(np.sqrt(sq / start)), "mae": float(ab / start)}
