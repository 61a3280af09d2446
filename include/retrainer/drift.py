"""Drift signals with Evidently 0.7: data drift over features and prediction drift.

Effect sizes, not p-values: numeric columns use the normed Wasserstein distance and categorical ones
Jensen-Shannon by default, so large or seasonal batches do not fire on every check. Each side is sampled
to ``triggers.report_max_rows`` rows (seeded) before the report: the report's cost grows with rows, and
a distance estimated from 20k rows has a standard error well under the 0.1 default threshold.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from retrainer.config import DataDriftTrigger, PredictionDriftTrigger
from retrainer.exceptions import DriftCheckError

if TYPE_CHECKING:
    from pathlib import Path

    import pandas as pd

    from retrainer.config import ModelConfig

log = logging.getLogger(__name__)
PREDICTION = "prediction"


def _sample(df: pd.DataFrame, n: int) -> pd.DataFrame:
    return df if len(df) <= n else df.sample(n=n, random_state=0)


def drift_report(
    cfg: ModelConfig,
    reference: pd.DataFrame,
    current: pd.DataFrame,
    *,
    html_path: Path | None = None,
) -> dict[str, Any]:
    """Compute data drift (features) and, if both frames carry a ``prediction`` column, prediction drift.

    Returns a flat dict: ``data_drift_share``, ``drifted_columns``, ``column_drift`` (per column value),
    ``prediction_drift`` (distance or None), ``report`` (HTML path or None), ``method``.
    """
    from evidently import DataDefinition, Dataset, Report
    from evidently.metrics import ValueDrift
    from evidently.presets import DataDriftPreset

    if reference is None or reference.empty:
        raise DriftCheckError("drift needs reference data (the champion's training snapshot); none given")
    t = cfg.triggers
    dd_cfg = t.data_drift or DataDriftTrigger()  # the report is still useful when the trigger is off
    pd_cfg = t.prediction_drift or PredictionDriftTrigger()
    features = cfg.data.feature_names
    has_pred = PREDICTION in reference and PREDICTION in current
    cols = features + ([PREDICTION] if has_pred else [])
    ref = _sample(reference[cols], t.report_max_rows)
    cur = _sample(current[cols], t.report_max_rows)
    numeric = cfg.data.numeric + ([PREDICTION] if has_pred and cfg.task == "regression" else [])
    categorical = cfg.data.categorical + ([PREDICTION] if has_pred and cfg.task == "classification" else [])
    definition = DataDefinition(numerical_columns=numeric, categorical_columns=categorical)
    metrics: list[Any] = [
        DataDriftPreset(
            columns=features,
            num_method=dd_cfg.num_method,
            cat_method=dd_cfg.cat_method,
            threshold=dd_cfg.column_threshold,
            drift_share=dd_cfg.share,
        )
    ]
    if has_pred:
        method = pd_cfg.method if cfg.task == "regression" else dd_cfg.cat_method
        metrics.append(ValueDrift(column=PREDICTION, method=method, threshold=pd_cfg.threshold))
    try:
        snapshot = Report(metrics).run(
            current_data=Dataset.from_pandas(cur, data_definition=definition),
            reference_data=Dataset.from_pandas(ref, data_definition=definition),
        )
    except Exception as exc:  # evidently raises assorted errors on degenerate data
        raise DriftCheckError(f"Evidently drift report failed: {type(exc).__name__}: {exc}") from exc
    column_drift: dict[str, float] = {}
    prediction_drift = None
    for m in snapshot.dict()["metrics"]:
        conf = m["config"]
        if conf.get("type", "").endswith(":ValueDrift"):
            value = float(m["value"])
            if conf["column"] == PREDICTION:
                prediction_drift = value
            else:
                column_drift[conf["column"]] = value
    p_value = "p_value" in str(snapshot.dict()["metrics"])  # ks/chisquare give p-values: drift when small
    drifted = sorted(
        c
        for c, v in column_drift.items()
        if (v < dd_cfg.column_threshold if p_value else v >= dd_cfg.column_threshold)
    )
    out = {
        "data_drift_share": len(drifted) / len(features) if features else 0.0,
        "drifted_columns": drifted,
        "column_drift": column_drift,
        "prediction_drift": prediction_drift,
        "method": f"{dd_cfg.num_method}/{dd_cfg.cat_method}",
        "reference_rows": len(ref),
        "current_rows": len(cur),
        "report": None,
    }
    if html_path is not None:
        html_path.parent.mkdir(parents=True, exist_ok=True)
        snapshot.save_html(str(html_path))
        out["report"] = str(html_path)
    log.info(
        "drift: %.0f%% of features drifted %s; prediction drift %s",
        100 * out["data_drift_share"],
        drifted,
        prediction_drift,
    )
    return out
