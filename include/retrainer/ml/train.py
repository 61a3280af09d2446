"""Training: gather the window, split off the most recent holdout, fit the configured estimator.

Everything here is plain pandas/scikit-learn; MLflow logging lives in :mod:`retrainer.tracking.runs`.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from retrainer.config import duration_hours, import_object
from retrainer.exceptions import ConfigError, RetrainerError
from retrainer.storage import DataRoot, batch_columns, read_columns, to_utc_naive

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    import pandas as pd
    from sklearn.pipeline import Pipeline

    from retrainer.config import ModelConfig

log = logging.getLogger(__name__)


def prepare(cfg: ModelConfig, df: pd.DataFrame) -> pd.DataFrame:
    """Parse the time column by the time rule (:func:`~retrainer.storage.to_utc_naive`: offsets converted
    to UTC, kept without them) and give categorical features a string dtype (stable across CSV/Parquet)."""
    import pandas as pd

    df = df.copy(deep=False)  # columns are replaced, never written in place: no need to copy the data
    df[cfg.data.time_column] = to_utc_naive(df[cfg.data.time_column])
    for c in cfg.data.categorical:
        if c in df:
            if df[c].dtype == object and pd.api.types.infer_dtype(df[c], skipna=False) == "string":
                continue  # strings already, none missing: the conversion below would give the same values
            col = df[c].astype("string").astype(object)
            df[c] = col.where(col.notna(), None)  # missing is None, as after a Parquet round trip
    return df


def labelled(cfg: ModelConfig, df: pd.DataFrame) -> pd.DataFrame:
    """Rows whose label has arrived."""
    if cfg.data.target not in df:
        return df.iloc[0:0]
    return df[df[cfg.data.target].notna()]


def gather_window(
    cfg: ModelConfig,
    root: DataRoot,
    window: str | None = None,
    late_labels: Callable[[pd.DataFrame], pd.DataFrame] | None = None,
) -> tuple[pd.DataFrame, list[str]]:
    """Labelled archived rows inside the training window ending at the newest archived time.

    A row is labelled when its batch carried the label or ``late_labels`` (the labels feed's join on
    ``data.id_column``, :func:`retrainer.stages.feeds.label_filler`) fills it in: every label that has
    arrived by now is used. The window is anchored on the data, not on the wall clock, so a re-run over the
    same archive and labels gives the same training set.
    """
    import pandas as pd

    def with_labels(df: pd.DataFrame) -> pd.DataFrame:
        return labelled(cfg, late_labels(df) if late_labels is not None else df)

    time = cfg.data.time_column
    ranges = root.archive_ranges(time)  # (first, last) per file, from a small index: no data read
    # the window ends at the newest labelled row: open files newest first until no later one can hold it
    end = None
    key_columns = [time, cfg.data.target, *([cfg.data.id_column] if cfg.data.id_column else [])]
    for path, (_, last) in sorted(ranges.items(), key=lambda kv: kv[1][1], reverse=True):
        if end is not None and not last > end:
            break
        df = with_labels(prepare(cfg, read_columns(path, key_columns)))
        if len(df):
            newest = df[time].max()
            end = newest if end is None or newest > end else end
    if end is None:
        raise RetrainerError(f"no labelled data archived for model {cfg.name} under {root.archive}")
    start = end - timedelta(hours=duration_hours(window or cfg.training.window))
    frames, sources, without = [], [], {}
    required = [f.name for f in cfg.data.features if not f.nullable]
    for path, (_, last) in ranges.items():  # name order, as before: the snapshot's row order is unchanged
        if not last > start:
            continue  # entirely before the window: never opened
        # schema evolution: a batch archived before a (not nullable) feature was added to the config does
        # not carry it and cannot train the new model; a nullable one is imputed like any gap
        present = set(batch_columns(path))
        lacking = [c for c in required if c not in present]
        if lacking:
            without[path.name] = lacking
            continue
        df = with_labels(prepare(cfg, read_columns(path, [*key_columns, *cfg.data.feature_names])))
        if len(df):
            frames.append(df)
            sources.append(path.name)
    if without:
        log.warning(
            "%d archived batch(es) in the window left out: they lack configured feature(s) %s (e.g. %s)",
            len(without),
            sorted({c for cols in without.values() for c in cols}),
            sorted(without)[:3],
        )
    if not frames:
        raise RetrainerError(
            f"no labelled archived batch of model {cfg.name} in the training window carries every "
            f"configured feature (left out: {dict(sorted(without.items())[:5])}): a feature added to "
            "data.features trains once batches carrying it are archived and labelled, or declare it "
            "nullable to impute it in older batches"
        )
    full = pd.concat(frames, ignore_index=True)
    for c in sorted(cfg.data.nullable - set(full.columns)):  # a nullable feature no batch carries yet
        full[c] = None if c in cfg.data.categorical else float("nan")
    in_window, start = select_window(cfg, full, window)
    used = sorted({s for s, f in zip(sources, frames, strict=True) if (f[time] > start).any()})
    return in_window, used


def select_window(
    cfg: ModelConfig, full: pd.DataFrame, window: str | None = None
) -> tuple[pd.DataFrame, Any]:
    """Labelled rows of ``full`` inside the training window ending at its newest time, and the window's
    (exclusive) start. Shared by the retrain DAG (over the archive) and the backtest (in memory)."""
    end = full[cfg.data.time_column].max()
    start = end - timedelta(hours=duration_hours(window or cfg.training.window))
    in_window = full[full[cfg.data.time_column] > start]
    cols = [cfg.data.time_column, *cfg.data.feature_names, cfg.data.target]
    return in_window[cols].reset_index(drop=True), start


def split_holdout(cfg: ModelConfig, df: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(train, holdout): the holdout is the most recent ``training.holdout`` of the data."""
    t = df[cfg.data.time_column]
    cut = t.max() - timedelta(hours=duration_hours(cfg.training.holdout))
    train, holdout = df[t <= cut], df[t > cut]
    if len(train) < cfg.training.min_rows:
        raise RetrainerError(
            f"only {len(train)} training rows before the holdout (need training.min_rows={cfg.training.min_rows})"
        )
    return train.reset_index(drop=True), holdout.reset_index(drop=True)


# Estimator libraries whose own thread pool is set by a constructor argument: under the thread cap their
# ``n_jobs`` is the cap unless the params set it (OpenMP limits alone leave their defaults to the library).
THREADED_LIBRARIES = ("lightgbm", "xgboost")
_THREADS: ContextVar[int | None] = ContextVar("retrainer_model_threads", default=None)


def build_model(cfg: ModelConfig) -> Any:
    """The unfitted model of ``cfg``: :func:`build_pipeline` for ``model.estimator``, or what the factory
    of ``model.pipeline`` returns (it must have ``fit`` and ``predict``)."""
    if cfg.model.pipeline is None:
        return build_pipeline(cfg)
    factory = import_object(cfg.model.pipeline, "model.pipeline")
    if not callable(factory):
        raise ConfigError(f"model.pipeline: {cfg.model.pipeline!r} is not a function")
    model = factory(cfg)
    lacking = [m for m in ("fit", "predict") if not callable(getattr(model, m, None))]
    if lacking:
        raise ConfigError(
            f"model.pipeline: {cfg.model.pipeline} returned {type(model).__name__!r}, which has no "
            f"{' or '.join(lacking)}: return an unfitted scikit-learn-compatible estimator"
        )
    return _cap_jobs(model)


def _cap_jobs(model: Any) -> Any:
    """``model`` with every LightGBM / XGBoost step's ``n_jobs`` set to the thread cap (when one is in
    force and the step's own ``n_jobs`` is unset)."""
    threads = _THREADS.get()
    if threads is None or not hasattr(model, "get_params"):
        return model
    steps = [model, *(v for v in model.get_params(deep=True).values() if hasattr(v, "get_params"))]
    for step in steps:
        lib = type(step).__module__.split(".", 1)[0]
        if lib in THREADED_LIBRARIES and step.get_params(deep=False).get("n_jobs") is None:
            step.set_params(n_jobs=threads)
    return model


def build_pipeline(cfg: ModelConfig) -> Pipeline:
    """Preprocessing + the configured estimator (``model.estimator``).

    Numeric features are optionally scaled, categoricals one-hot encoded. ``nullable`` features first go
    through an imputer (``data.impute``), so every estimator family trains and predicts on them, also on a
    batch where such a column is entirely empty. Configs without nullable features get no imputer.
    """
    import numpy as np
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    imp, nullable = cfg.data.impute, cfg.data.nullable

    def num() -> Any:
        return StandardScaler() if cfg.model.scale_numeric else "passthrough"

    def cat() -> Any:
        return OneHotEncoder(handle_unknown="ignore", sparse_output=False)

    def imputed(strategy: str, fill: Any, then: Any, missing: Any) -> Pipeline:
        imputer = SimpleImputer(
            missing_values=missing,
            strategy=strategy,
            fill_value=fill if strategy == "constant" else None,
            add_indicator=imp.add_indicator,
            keep_empty_features=True,  # a column empty in the whole window keeps its place (filled)
        )
        return Pipeline([("impute", imputer), ("encode", then)])

    parts: list[tuple[str, Any, list[str]]] = [
        ("num", num(), [c for c in cfg.data.numeric if c not in nullable]),
        ("cat", cat(), [c for c in cfg.data.categorical if c not in nullable]),
    ]
    if nullable_num := [c for c in cfg.data.numeric if c in nullable]:
        parts.append(("num_nullable", imputed(imp.numeric, imp.numeric_fill, num(), np.nan), nullable_num))
    if nullable_cat := [c for c in cfg.data.categorical if c in nullable]:
        parts.append(
            ("cat_nullable", imputed(imp.categorical, imp.categorical_fill, cat(), None), nullable_cat)
        )
    pre = ColumnTransformer(parts, remainder="drop")
    return _cap_jobs(Pipeline([("pre", pre), ("model", cfg.model.build())]))


def _missing_as_none(cfg: ModelConfig, df: pd.DataFrame) -> pd.DataFrame:
    """Nullable categoricals with ``None`` for missing, whatever marked it (``nan``, ``pd.NA``)."""
    cols = [c for c in cfg.data.categorical if c in cfg.data.nullable and c in df]
    if not cols:
        return df
    df = df.copy()
    for c in cols:
        col = df[c].astype(object)
        df[c] = col.where(col.notna(), None)
    return df


@contextmanager
def thread_cap(cfg: ModelConfig, threads: int | None) -> Iterator[None]:
    """At most ``threads`` BLAS/OpenMP threads (None: no cap) while ``cfg``'s model fits or predicts.

    The estimator is built first: threadpoolctl caps only the libraries loaded by then, and the OpenMP
    runtime of scikit-learn (or of another package's estimator) loads with its first import. Models built
    inside get ``n_jobs=threads`` on their LightGBM / XGBoost steps (:func:`_cap_jobs`).
    """
    if threads is None:
        yield
        return
    from threadpoolctl import threadpool_limits

    token = _THREADS.set(threads)
    try:
        build_model(cfg)
        with threadpool_limits(threads):
            yield
    finally:
        _THREADS.reset(token)


def fit(cfg: ModelConfig, train: pd.DataFrame) -> Any:
    pipe = build_model(cfg)
    pipe.fit(_missing_as_none(cfg, train[cfg.data.feature_names]), train[cfg.data.target])
    return pipe


def predict(cfg: ModelConfig, model: Any, df: pd.DataFrame) -> Any:
    return model.predict(_missing_as_none(cfg, df[cfg.data.feature_names]))


def predict_with_proba(cfg: ModelConfig, model: Any, df: pd.DataFrame) -> tuple[Any, Any]:
    """(predictions, class probabilities or None) of ``df``: exactly :func:`predict` and the classifier's
    ``predict_proba``, with a pipeline's preprocessing run once for both."""
    from sklearn.pipeline import Pipeline

    x = _missing_as_none(cfg, df[cfg.data.feature_names])
    final = model
    if isinstance(model, Pipeline) and len(model.steps) > 1:
        x, final = model[:-1].transform(x), model.steps[-1][1]
    pred = final.predict(x)
    proba = None
    if cfg.task == "classification" and hasattr(final, "predict_proba"):
        try:
            proba = final.predict_proba(x)
        except AttributeError:  # e.g. an SVC without probability=True exposes the method but cannot use it
            proba = None
    return pred, proba
