"""Feature engineering of our own: clock-like columns (hour of day, day of week) as points on a circle."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin


class CyclicalFeatures(TransformerMixin, BaseEstimator):
    """Replace each column of ``periods`` (name -> period, e.g. ``{"hr": 24}``) by its sine and cosine, so
    23:00 and 00:00 are neighbours. Other columns pass through unchanged; the output is a DataFrame."""

    def __init__(self, periods: dict[str, float] | None = None):
        self.periods = periods

    def fit(self, X: pd.DataFrame, y: Any = None) -> CyclicalFeatures:
        missing = [c for c in (self.periods or {}) if c not in X.columns]
        if missing:
            raise ValueError(f"CyclicalFeatures: columns {missing} are not in the input")
        self.feature_names_in_ = np.asarray(list(X.columns), dtype=object)
        self.n_features_in_ = len(X.columns)
        return self

    def transform(self, X: pd.DataFrame) -> pd.DataFrame:
        out = X.copy()
        for col, period in (self.periods or {}).items():
            angle = 2 * np.pi * out.pop(col).astype(float) / float(period)
            out[f"{col}_sin"], out[f"{col}_cos"] = np.sin(angle), np.cos(angle)
        return out

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        kept = [c for c in self.feature_names_in_ if c not in (self.periods or {})]
        added = [f"{c}_{f}" for c in (self.periods or {}) for f in ("sin", "cos")]
        return np.asarray(kept + added, dtype=object)
