"""Training: gather the window, split off the most recent holdout, fit the configured estimator.

Everything here is plain pandas/scikit-learn; MLflow logging lives in :mod:`retrainer.tracking`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from retrainer.config import duration_hours
from retrainer.exceptions import RetrainerError
from retrainer.storage import DataRoot, read_batch, read_columns

if TYPE_CHECKING:
    import pandas as pd
    from sklearn.pipeline import Pipeline

    from retrainer.config import ModelConfig

log = logging.getLogger(__name__)


def prepare(cfg: ModelConfig, df: pd.DataFrame) -> pd.DataFrame:
    """Parse the time column and give categorical features a string dtype (stable across CSV/Parquet)."""
    import pandas as pd

    df = df.copy(deep=False)  # columns are replaced, never written in place: no need to copy the data
    df[cfg.data.time_column] = pd.to_datetime(df[cfg.data.time_column], utc=False)
    for c in cfg.data.categorical:
        if c in df:
            df[c] = df[c].astype("string").astype(object)
    return df


def labelled(cfg: ModelConfig, df: pd.DataFrame) -> pd.DataFrame:
    """Rows whose label has arrived."""
    if cfg.data.target not in df:
        return df.iloc[0:0]
    return df[df[cfg.data.target].notna()]


def gather_window(
    cfg: ModelConfig, root: DataRoot, window: str | None = None
) -> tuple[pd.DataFrame, list[str]]:
    """Labelled archived rows inside the training window ending at the newest archived time.

    The window is anchored on the data, not on the wall clock, so a re-run over the same archive gives
    the same training set.
    """
    import pandas as pd

    time = cfg.data.time_column
    ranges = root.archive_ranges(time)  # (first, last) per file, from a small index: no data read
    # the window ends at the newest labelled row: open files newest first until no later one can hold it
    end = None
    for path, (_, last) in sorted(ranges.items(), key=lambda kv: kv[1][1], reverse=True):
        if end is not None and not last > end:
            break
        df = labelled(cfg, prepare(cfg, read_columns(path, [time, cfg.data.target])))
        if len(df):
            newest = df[time].max()
            end = newest if end is None or newest > end else end
    if end is None:
        raise RetrainerError(f"no labelled data archived for model {cfg.name} under {root.archive}")
    start = end - timedelta(hours=duration_hours(window or cfg.training.window))
    frames, sources = [], []
    for path, (_, last) in ranges.items():  # name order, as before: the snapshot's row order is unchanged
        if not last > start:
            continue  # entirely before the window: never opened
        df = labelled(cfg, prepare(cfg, read_batch(path)))
        if len(df):
            frames.append(df)
            sources.append(path.name)
    full = pd.concat(frames, ignore_index=True)
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


def build_pipeline(cfg: ModelConfig) -> Pipeline:
    """Preprocessing (one-hot categoricals, optionally scaled numerics) + the configured estimator."""
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    num = StandardScaler() if cfg.model.scale_numeric else "passthrough"
    pre = ColumnTransformer(
        [
            ("num", num, cfg.data.numeric),
            ("cat", OneHotEncoder(handle_unknown="ignore", sparse_output=False), cfg.data.categorical),
        ],
        remainder="drop",
    )
    return Pipeline([("pre", pre), ("model", cfg.model.build())])


def fit(cfg: ModelConfig, train: pd.DataFrame) -> Pipeline:
    pipe = build_pipeline(cfg)
    pipe.fit(train[cfg.data.feature_names], train[cfg.data.target])
    return pipe


def predict(cfg: ModelConfig, model: Any, df: pd.DataFrame) -> Any:
    return model.predict(df[cfg.data.feature_names])


@dataclass
class TrainResult:
    model: Any
    train_rows: int
    holdout_rows: int
    holdout_metrics: dict[str, float]
