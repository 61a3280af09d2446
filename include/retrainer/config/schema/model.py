"""`model` and `training`: the estimator a retrain fits and the data it trains on."""

from __future__ import annotations

import importlib
from typing import Any

from pydantic import Field, field_validator

from retrainer.config.schema.base import Duration, _Strict
from retrainer.exceptions import ConfigError


class ModelSpec(_Strict):
    """The estimator a retrain fits. Whoever can edit this can run code in every worker: the import path
    is imported."""

    estimator: str = Field(
        description="import path of a scikit-learn estimator class, e.g. `sklearn.linear_model.Ridge`"
    )
    params: dict[str, Any] = Field(
        default_factory=dict,
        description="its constructor arguments; seed it (`random_state`) so `retrainer reproduce` can "
        "refit bit for bit",
    )
    scale_numeric: bool = Field(
        True, description="StandardScaler on numeric features (categorical features are one-hot encoded)"
    )

    @field_validator("estimator")
    @classmethod
    def _dotted(cls, value: str) -> str:
        if "." not in value:
            raise ValueError("must be an import path such as sklearn.linear_model.Ridge")
        return value

    def build(self) -> Any:
        """Instantiate the estimator (imports scikit-learn: call at run time, not parse time)."""
        module, _, cls = self.estimator.rpartition(".")
        try:
            klass = getattr(importlib.import_module(module), cls)
        except (ImportError, AttributeError) as exc:
            raise ConfigError(f"model.estimator: cannot import {self.estimator!r}: {exc}") from exc
        try:
            return klass(**self.params)
        except TypeError as exc:
            raise ConfigError(f"model.params: {self.estimator} rejected the params: {exc}") from exc


class TrainingConfig(_Strict):
    """What a retrain trains on."""

    window: Duration = Field(
        "8W", description="training window, ending at the newest archived data (not the clock)"
    )
    holdout: Duration = Field(
        "1W", description="most recent part of the window held out to compare candidate and champion"
    )
    min_rows: int = Field(100, ge=10, description="fewer training rows fail the retrain with a clear message")
