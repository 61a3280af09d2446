"""Drift signals with Evidently 0.7: data drift over features and prediction drift.

Effect sizes, not p-values: numeric columns use the normed Wasserstein distance and categorical ones
Jensen-Shannon by default, so large or seasonal batches do not fire on every check. Each side is sampled
to ``triggers.report_max_rows`` rows (seeded) before the report: the report's cost grows with rows, and
a distance estimated from 20k rows has a standard error well under the 0.1 default threshold.

The numbers the policy acts on come from :func:`drift_signals`, one implementation shared by the monitor
DAG and the backtest: for the effect-size methods (normed Wasserstein, Jensen-Shannon) it computes with
numpy/scipy exactly what Evidently computes (same formulas, same binning; a unit test holds them equal),
in milliseconds instead of the ~1 s an Evidently report costs. The monitor still builds the Evidently
report for people to read; other methods (``ks``, ``psi``, ...) take their numbers from it.
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


FAST_METHODS = {"numeric": {"wasserstein", "jensenshannon"}, "categorical": {"jensenshannon"}}


def _sample(df: pd.DataFrame, n: int) -> pd.DataFrame:
    return df if len(df) <= n else df.sample(n=n, random_state=0)


def _sides(cfg: ModelConfig, reference: pd.DataFrame, current: pd.DataFrame) -> tuple[Any, ...]:
    """Trigger settings (defaults when a trigger is off: the numbers are still recorded), the features,
    whether both sides carry predictions, and both sides sampled to ``triggers.report_max_rows``."""
    t = cfg.triggers
    features = cfg.data.feature_names
    has_pred = PREDICTION in reference and PREDICTION in current
    cols = features + ([PREDICTION] if has_pred else [])
    return (
        t.data_drift or DataDriftTrigger(),
        t.prediction_drift or PredictionDriftTrigger(),
        features,
        has_pred,
        _sample(reference[cols], t.report_max_rows),
        _sample(current[cols], t.report_max_rows),
    )


def no_data(reference: pd.DataFrame, current: pd.DataFrame, columns: list[str]) -> list[str]:
    """Columns with no value at all on one side (e.g. a sensor outage): no distance can be measured."""
    return sorted(c for c in columns if not reference[c].notna().any() or not current[c].notna().any())


def effect_size(reference: pd.Series, current: pd.Series, kind: str, method: str) -> float | None:
    """Evidently's normed Wasserstein (``wasserstein_distance / max(std(ref), 0.001)``) or Jensen-Shannon
    distance (Sturges bins over both samples for numeric columns with > 20 values, else category shares).

    None when either side has no values (an all-null column): "no data", not drift and not an error."""
    import numpy as np
    import pandas as pd
    from scipy import stats
    from scipy.spatial import distance

    ref, cur = reference.dropna(), current.dropna()
    if ref.empty or cur.empty:
        return None
    if method == "wasserstein" and kind == "numeric":
        ref_f, cur_f = ref.to_numpy(dtype=float), cur.to_numpy(dtype=float)
        return float(stats.wasserstein_distance(ref_f, cur_f) / max(float(np.std(ref_f)), 0.001))
    if method != "jensenshannon":
        raise DriftCheckError(f"no fast path for drift method {method!r} on a {kind} column")
    if kind == "numeric" and ref.nunique() > 20:
        combined = np.asarray(pd.concat([ref, cur], axis=0).to_numpy(dtype=float))
        bins = np.histogram_bin_edges(combined, bins="sturges")
        p = np.histogram(ref.to_numpy(dtype=float), bins)[0] / len(ref)
        q = np.histogram(cur.to_numpy(dtype=float), bins)[0] / len(cur)
    else:
        keys = pd.unique(pd.concat([ref, cur], axis=0))
        rc, cc = ref.value_counts(), cur.value_counts()
        p = np.array([rc.get(k, 0) for k in keys]) / len(ref)
        q = np.array([cc.get(k, 0) for k in keys]) / len(cur)
    return float(distance.jensenshannon(p, q))


def fast_path(cfg: ModelConfig) -> bool:
    """Whether :func:`drift_signals` can compute this config's drift methods without Evidently."""
    dd = cfg.triggers.data_drift or DataDriftTrigger()
    pdc = cfg.triggers.prediction_drift or PredictionDriftTrigger()
    pred_method = pdc.method if cfg.task == "regression" else dd.cat_method
    pred_kind = "numeric" if cfg.task == "regression" else "categorical"
    return (
        (not cfg.data.numeric or dd.num_method in FAST_METHODS["numeric"])
        and (not cfg.data.categorical or dd.cat_method in FAST_METHODS["categorical"])
        and pred_method in FAST_METHODS[pred_kind]
    )


def drift_signals(cfg: ModelConfig, reference: pd.DataFrame, current: pd.DataFrame) -> dict[str, Any]:
    """Data drift share over features and prediction drift, as the policy reads them (no report).

    Same output keys as :func:`drift_report` (``report`` is None). Both sides are sampled to
    ``triggers.report_max_rows`` exactly as for the report.
    """
    if reference is None or reference.empty:
        raise DriftCheckError("drift needs reference data (the champion's training snapshot); none given")
    if not fast_path(cfg):
        return drift_report(cfg, reference, current)
    dd_cfg, pd_cfg, features, has_pred, ref, cur = _sides(cfg, reference, current)
    column_drift: dict[str, float | None] = {}
    for c in cfg.data.numeric:
        column_drift[c] = effect_size(ref[c], cur[c], "numeric", dd_cfg.num_method)
    for c in cfg.data.categorical:
        column_drift[c] = effect_size(ref[c], cur[c], "categorical", dd_cfg.cat_method)
    prediction_drift = None
    if has_pred:
        if cfg.task == "regression":
            prediction_drift = effect_size(ref[PREDICTION], cur[PREDICTION], "numeric", pd_cfg.method)
        else:
            prediction_drift = effect_size(
                ref[PREDICTION].astype(str), cur[PREDICTION].astype(str), "categorical", dd_cfg.cat_method
            )
    drifted = sorted(c for c, v in column_drift.items() if v is not None and v >= dd_cfg.column_threshold)
    empty = sorted(c for c, v in column_drift.items() if v is None)
    return _signals(
        dd_cfg,
        features,
        drifted=drifted,
        empty=empty,
        column_drift={c: column_drift[c] for c in features},
        prediction_drift=prediction_drift,
        rows=(len(ref), len(cur)),
    )


def _share(drifted: list[str], features: list[str], empty: list[str]) -> float | None:
    """Share of drifted features among those with data on both sides (None when no feature had any)."""
    measured = len(features) - len(empty)
    if not features:
        return 0.0
    return len(drifted) / measured if measured else None


def _signals(
    dd_cfg: DataDriftTrigger,
    features: list[str],
    *,
    drifted: list[str],
    empty: list[str],
    column_drift: dict[str, float | None],
    prediction_drift: float | None,
    rows: tuple[int, int],
) -> dict[str, Any]:
    """The flat result both :func:`drift_signals` and :func:`drift_report` return (``report`` unset)."""
    return {
        "data_drift_share": _share(drifted, features, empty),
        "drifted_columns": drifted,
        "no_data_columns": empty,
        "column_drift": column_drift,
        "prediction_drift": prediction_drift,
        "method": f"{dd_cfg.num_method}/{dd_cfg.cat_method}",
        "reference_rows": rows[0],
        "current_rows": rows[1],
        "report": None,
    }


def _measurable(
    ref: pd.DataFrame, cur: pd.DataFrame, features: list[str], has_pred: bool
) -> tuple[list[str], list[str], bool]:
    """Features with data on both sides, those without ("no data"), and whether the prediction column
    has data on both sides. A column with no value on one side is left out of the report (Evidently and
    scipy fail on it) and reported as "no data"; so is the prediction column if it is empty."""
    empty = no_data(ref, cur, features + ([PREDICTION] if has_pred else []))
    if PREDICTION in empty:
        has_pred, empty = False, [c for c in empty if c != PREDICTION]
    return [c for c in features if c not in empty], empty, has_pred


def _report_metrics(
    cfg: ModelConfig,
    dd_cfg: DataDriftTrigger,
    pd_cfg: PredictionDriftTrigger,
    measured: list[str],
    has_pred: bool,
) -> list[Any]:
    """The Evidently metrics for the measurable columns: the drift preset and the prediction's drift."""
    from evidently.metrics import ValueDrift
    from evidently.presets import DataDriftPreset

    metrics: list[Any] = []
    if measured:  # an empty column list would mean "every column" to the preset
        metrics.append(
            DataDriftPreset(
                columns=measured,
                num_method=dd_cfg.num_method,
                cat_method=dd_cfg.cat_method,
                threshold=dd_cfg.column_threshold,
                drift_share=dd_cfg.share,
            )
        )
    if has_pred:
        method = pd_cfg.method if cfg.task == "regression" else dd_cfg.cat_method
        metrics.append(ValueDrift(column=PREDICTION, method=method, threshold=pd_cfg.threshold))
    return metrics


def _run_report(
    cfg: ModelConfig,
    metrics: list[Any],
    measured: list[str],
    has_pred: bool,
    ref: pd.DataFrame,
    cur: pd.DataFrame,
) -> Any:
    """Run the Evidently report on both sides; its errors become :class:`DriftCheckError`."""
    from evidently import DataDefinition, Dataset, Report

    numeric = [c for c in cfg.data.numeric if c in measured]
    numeric += [PREDICTION] if has_pred and cfg.task == "regression" else []
    categorical = [c for c in cfg.data.categorical if c in measured]
    categorical += [PREDICTION] if has_pred and cfg.task == "classification" else []
    definition = DataDefinition(numerical_columns=numeric, categorical_columns=categorical)
    try:
        return Report(metrics).run(
            current_data=Dataset.from_pandas(cur, data_definition=definition),
            reference_data=Dataset.from_pandas(ref, data_definition=definition),
        )
    except Exception as exc:  # evidently raises assorted errors on degenerate data
        raise DriftCheckError(f"Evidently drift report failed: {type(exc).__name__}: {exc}") from exc


def _read_report(
    snapshot: Any, column_threshold: float
) -> tuple[dict[str, float | None], float | None, list[str]]:
    """Per-column drift values, the prediction's drift and the drifted columns from a report."""
    column_drift: dict[str, float | None] = {}
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
        if v is not None and (v < column_threshold if p_value else v >= column_threshold)
    )
    return column_drift, prediction_drift, drifted


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
    if reference is None or reference.empty:
        raise DriftCheckError("drift needs reference data (the champion's training snapshot); none given")
    dd_cfg, pd_cfg, features, has_pred, ref, cur = _sides(cfg, reference, current)
    measured, empty, has_pred = _measurable(ref, cur, features, has_pred)
    keep = measured + ([PREDICTION] if has_pred else [])
    ref, cur = ref[keep], cur[keep]
    metrics = _report_metrics(cfg, dd_cfg, pd_cfg, measured, has_pred)
    rows = (len(ref), len(cur))
    if not metrics:  # nothing measurable on either side: no report, every feature is "no data"
        log.warning("drift: no feature has data on both sides %s; no report", empty)
        return _signals(
            dd_cfg,
            features,
            drifted=[],
            empty=empty,
            column_drift={c: None for c in features},
            prediction_drift=None,
            rows=rows,
        )
    snapshot = _run_report(cfg, metrics, measured, has_pred, ref, cur)
    column_drift, prediction_drift, drifted = _read_report(snapshot, dd_cfg.column_threshold)
    if fast_path(cfg):  # the policy's numbers: the shared implementation (equal to Evidently's)
        fast = drift_signals(cfg, reference, current)
        fast["evidently_column_drift"] = column_drift
        fast["evidently_prediction_drift"] = prediction_drift
        return _finish(fast, snapshot, html_path)
    out = _signals(
        dd_cfg,
        features,
        drifted=drifted,
        empty=empty,
        column_drift={c: column_drift.get(c) for c in features},
        prediction_drift=prediction_drift,
        rows=rows,
    )
    return _finish(out, snapshot, html_path)


def _finish(out: dict[str, Any], snapshot: Any, html_path: Path | None) -> dict[str, Any]:
    if html_path is not None:
        html_path.parent.mkdir(parents=True, exist_ok=True)
        snapshot.save_html(str(html_path))
        out["report"] = str(html_path)
    drifted, prediction_drift = out["drifted_columns"], out["prediction_drift"]
    share = out["data_drift_share"]
    log.info(
        "drift: %s of features drifted %s; prediction drift %s; no data: %s",
        "-" if share is None else f"{100 * share:.0f}%",
        drifted,
        prediction_drift,
        out.get("no_data_columns") or "none",
    )
    return out
