"""Pipeline factories: ``model.pipeline: acme_models.factories:bikes`` in a Retrainer model config.

A factory receives the model's config (``cfg.task``, ``cfg.data.numeric``, ``cfg.data.categorical``,
``cfg.model.params``) and returns an unfitted scikit-learn estimator taking the feature columns as a
DataFrame. Retrainer adds nothing around it: the factory owns the preprocessing.
"""

from __future__ import annotations

from typing import Any

from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder

from acme_models.features import CyclicalFeatures

CLOCK_COLUMNS = {"hr": 24, "weekday": 7}  # the periods of the clock-like columns we know of


def bikes(cfg: Any) -> Pipeline:
    """Clock columns on the circle, categoricals one-hot encoded, then gradient boosting (``model.params``
    are its arguments)."""
    periods = {c: p for c, p in CLOCK_COLUMNS.items() if c in cfg.data.numeric}
    encode = ColumnTransformer(
        [("cat", OneHotEncoder(handle_unknown="ignore", sparse_output=False), list(cfg.data.categorical))],
        remainder="passthrough",
        verbose_feature_names_out=False,
    )
    boost = HistGradientBoostingRegressor if cfg.task == "regression" else HistGradientBoostingClassifier
    return Pipeline(
        [("clock", CyclicalFeatures(periods)), ("encode", encode), ("model", boost(**cfg.model.params))]
    )


def not_a_model(cfg: Any) -> dict[str, Any]:
    """A broken factory (for Retrainer's tests): returns something that cannot be fitted."""
    return {"task": cfg.task}
