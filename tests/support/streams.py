"""Small synthetic streams the unit tests share: a stable daily stream with row ids (and its model
config), a stream whose concept flips, and the delivery contract's write-then-rename."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from retrainer.config import parse_config

if TYPE_CHECKING:
    from pathlib import Path

    from retrainer.config import ModelConfig

ROWS = 48  # rows of one day of the stable stream
FLIP = 8  # batches between concept changes of the flipping stream


def stream_config(name: str, id_column: str | None = "rid") -> ModelConfig:
    """A linear-regression model of the stable stream (``y = 2a + b``, mae), 30-day window, 1-day holdout."""
    return parse_config(
        {
            "name": name,
            "task": "regression",
            "data": {"time_column": "ts", "target": "y", "features": ["a", "b"], "id_column": id_column},
            "model": {"estimator": "sklearn.linear_model.LinearRegression"},
            "training": {"window": "30D", "holdout": "1D", "min_rows": 50},
            "validation": {"metric": "mae"},
        }
    )


def stream_day(i: int, *, seed: int = 0, ids: str = "d") -> pd.DataFrame:
    """Day ``i`` of the stable stream: ``ROWS`` rows every half hour, ids ``<ids><i>-<n>``, labelled."""
    rng = np.random.default_rng(seed + i)
    t = pd.Timestamp("2024-01-01") + pd.Timedelta(days=i) + pd.to_timedelta(np.arange(ROWS) * 0.5, unit="h")
    a, b = rng.normal(size=ROWS), rng.normal(size=ROWS)
    return pd.DataFrame(
        {"rid": [f"{ids}{i}-{n}" for n in range(ROWS)], "ts": t, "a": a, "b": b, "y": 2 * a + b}
    )


def flips(days: int, rows: int, seed: int = 0) -> pd.DataFrame:
    """Daily batches of ``rows`` rows whose concept flips every :data:`FLIP` days (y = +-3a + b, noise 0.5):
    the inputs and the distribution of the predictions never change, so drift signals are blind and a
    fixed schedule is out of phase; only a signal on the labelled errors can time the retrains."""
    rng = np.random.default_rng(seed)
    n = days * rows
    t = pd.Timestamp("2024-01-01") + pd.to_timedelta(np.arange(n) * (24 / rows), unit="h")
    a, b = rng.normal(size=n), rng.normal(size=n)
    sign = np.where((np.arange(n) // (FLIP * rows)) % 2 == 0, 1.0, -1.0)
    y = sign * 3 * a + b + rng.normal(scale=0.5, size=n)
    return pd.DataFrame({"ts": t, "a": a, "b": b, "y": y})


def deliver_file(folder: Path, frame: pd.DataFrame, name: str) -> Path:
    """Write ``frame`` as ``folder/name`` (CSV or Parquet by its suffix) the way the delivery contract
    asks: to a dotfile first, then renamed in."""
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{name}.tmp"
    if name.endswith(".csv"):
        frame.to_csv(tmp, index=False)
    else:
        frame.to_parquet(tmp, index=False)
    dest = folder / name
    tmp.rename(dest)
    return dest
