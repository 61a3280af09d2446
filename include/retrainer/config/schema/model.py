"""`model` and `training`: the estimator a retrain fits and the data it trains on."""

from __future__ import annotations

import importlib
from typing import Any

from pydantic import Field, field_validator, model_validator

from retrainer.config.schema.base import Duration, _module_path, _Strict
from retrainer.exceptions import ConfigError

# Types every model artifact may contain beyond skops' built-in safe list (module prefixes).
BASE_TRUSTED = ("sklearn", "numpy", "scipy")
# Types an estimator library's fitted objects carry from outside its own package (what skops reports).
LIBRARY_COMPANIONS = {"lightgbm": ("collections.OrderedDict",)}


def import_object(path: str, key: str) -> Any:
    """The object at ``path`` (``package.module:name``, or ``package.module.Name``); a ConfigError naming
    ``key`` when it does not import."""
    module, sep, name = path.partition(":")
    if not sep:
        module, _, name = path.rpartition(".")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(
            f"{key}: cannot import {path!r}: {exc} (is the package installed, or on the workers' path?)"
        ) from exc


class ModelSpec(_Strict):
    """The model a retrain fits: `estimator` (one class, behind our preprocessing) or `pipeline` (a factory
    of the team's own). Whoever can edit this can run code in every worker: the import path is imported."""

    estimator: str | None = Field(
        None,
        description="import path of a scikit-learn-compatible estimator class, fitted behind our "
        "preprocessing (scaling, one-hot encoding, imputation), e.g. `sklearn.linear_model.Ridge`, "
        "`lightgbm.LGBMClassifier`, `xgboost.XGBRegressor`. Exactly one of `estimator` and `pipeline`",
    )
    pipeline: str | None = Field(
        None,
        description="import path `package.module:function` of a factory: called with the model's config "
        "(`cfg.task`, `cfg.data.numeric`, `cfg.data.categorical`, `cfg.model.params`), it returns an "
        "unfitted scikit-learn-compatible estimator (usually a `Pipeline` with the team's own steps) that "
        "takes the feature columns as a DataFrame. No preprocessing of ours is added. List the package in "
        "`trusted_modules`",
    )
    params: dict[str, Any] = Field(
        default_factory=dict,
        description="the estimator's constructor arguments (with `pipeline`: passed to the factory in "
        "`cfg.model.params`); seed it (`random_state`) so `retrainer reproduce` can refit bit for bit",
    )
    scale_numeric: bool = Field(
        True,
        description="with `estimator`: StandardScaler on numeric features (categorical features are "
        "one-hot encoded)",
    )
    trusted_modules: list[str] = Field(
        default_factory=list,
        description="packages (e.g. `acme_features`) or exact types (`collections.OrderedDict`) a model "
        "artifact may contain besides scikit-learn, NumPy, SciPy and the library of `estimator`; an "
        "artifact naming any other type is refused before it is loaded",
    )

    @field_validator("estimator")
    @classmethod
    def _dotted(cls, value: str | None) -> str | None:
        if value is not None and "." not in value:
            raise ValueError("must be an import path such as sklearn.linear_model.Ridge")
        return value

    @field_validator("pipeline")
    @classmethod
    def _factory_path(cls, value: str | None) -> str | None:
        return None if value is None else _module_path(value, "acme_models.factories:build")

    @field_validator("trusted_modules")
    @classmethod
    def _module_names(cls, value: list[str]) -> list[str]:
        bad = [v for v in value if not all(p.isidentifier() for p in v.split("."))]
        if bad:
            raise ValueError(f"not module or type names: {bad}")
        return value

    @model_validator(mode="after")
    def _one_model(self) -> ModelSpec:
        if (self.estimator is None) == (self.pipeline is None):
            raise ValueError(
                "give exactly one of model.estimator (a class behind our preprocessing) and "
                "model.pipeline (a factory of your own pipeline)"
            )
        return self

    @property
    def library(self) -> str | None:
        """The top-level package of `estimator` (None for a pipeline factory)."""
        return None if self.estimator is None else self.estimator.split(".", 1)[0]

    @property
    def trusted(self) -> tuple[str, ...]:
        """Module prefixes and exact type names a model artifact of this config may contain."""
        roots = [*BASE_TRUSTED, *([self.library] if self.library else []), *self.trusted_modules]
        companions = [c for r in roots for c in LIBRARY_COMPANIONS.get(r, ())]
        return tuple(dict.fromkeys([*roots, *companions]))

    def build(self) -> Any:
        """Instantiate the estimator (imports it: call at run time, not parse time)."""
        if self.estimator is None:
            raise ConfigError("model.estimator is not set (this model is built by model.pipeline)")
        klass = import_object(self.estimator, "model.estimator")
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
