"""Model configs: one YAML file per model, validated into typed objects.

Unknown keys and bad values are errors that name the file, the key and the problem. This module imports
only pydantic and yaml, so the DAG factory can load configs at parse time cheaply.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator

from retrainer.config.schema.base import LOWER_IS_BETTER, METRICS, NAME_RE, _format_errors, _Strict, cron
from retrainer.config.schema.data import DataConfig  # noqa: TC001 (pydantic resolves field types at run time)
from retrainer.config.schema.model import ModelSpec, TrainingConfig
from retrainer.config.schema.operation import AlertsConfig, BacktestConfig, PromotionConfig, RetentionConfig
from retrainer.config.schema.triggers import TriggerConfig
from retrainer.config.schema.validation import ValidationConfig
from retrainer.exceptions import ConfigError


class ModelConfig(_Strict):
    """One model: `include/models/<name>.yaml`. Unknown keys are errors that name the key and the file."""

    name: str = Field(
        description="model name: lower case letters, digits and `_`, starting with a letter; must equal the "
        "file name. Used for the DAG ids, the registered model and the experiments"
    )
    task: Literal["classification", "regression"] = Field(description="`classification` or `regression`")
    description: str = Field("", description="free text, shown in the Retraining view")
    data: DataConfig = Field(description="the columns of a batch")
    model: ModelSpec = Field(description="the estimator")
    training: TrainingConfig = Field(default_factory=TrainingConfig, description="the training window")
    schedule: str | None = Field(
        "0 3 * * 1",
        description="cron (5 fields) or `@preset` for scheduled retrains; `null` for trigger-only",
    )
    triggers: TriggerConfig = Field(default_factory=TriggerConfig, description="the trigger policy")
    validation: ValidationConfig = Field(
        default_factory=ValidationConfig, description="data gate tolerances and candidate validation"
    )
    promotion: PromotionConfig = Field(
        default_factory=PromotionConfig, description="how a validated candidate becomes champion"
    )
    alerts: AlertsConfig = Field(default_factory=AlertsConfig, description="where alerts go")
    backtest: BacktestConfig = Field(
        default_factory=BacktestConfig, description="defaults of `retrainer backtest`"
    )
    retention: RetentionConfig = Field(
        default_factory=RetentionConfig, description="what `retrainer gc` may remove"
    )
    source: str = Field("", exclude=True, description="file the config came from (set by load_config)")

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not NAME_RE.match(value):
            raise ValueError("must be lower case letters, digits and _ starting with a letter")
        return value

    @field_validator("schedule")
    @classmethod
    def _cron(cls, value: str | None) -> str | None:
        return cron(value)

    @model_validator(mode="after")
    def _metrics_fit_task(self) -> ModelConfig:
        allowed = METRICS[self.task] | ({self.metric} if self.custom_metric else set())
        given = [] if self.custom_metric else [self.validation.metric]
        if self.custom_metric and self.metric in METRICS["classification"] | METRICS["regression"]:
            raise ValueError(
                f"validation.metric: your function's name {self.metric!r} is a built-in metric's"
            )
        bad = [m for m in [*given, *self.validation.floors] if m and m not in allowed]
        if bad:
            raise ValueError(f"metrics {bad} do not apply to {self.task}; use {sorted(allowed)}")
        return self

    @model_validator(mode="after")
    def _checks_name_features(self) -> ModelConfig:
        names = set(self.data.feature_names)
        slice_cols = [s.column for s in self.validation.slices]
        inv = self.validation.behaviour.invariance
        unknown = sorted({c for c in [*slice_cols, *(inv.features if inv else [])] if c not in names})
        if unknown:
            raise ValueError(f"validation checks name columns that are not features: {unknown}")
        return self

    def alternative_triggers(self) -> dict[str, TriggerConfig]:
        """The named alternative trigger policies: each is ``triggers`` with its overrides applied."""
        base = self.triggers.model_dump()
        return {
            name: TriggerConfig.model_validate({**base, **override})
            for name, override in self.backtest.alternatives.items()
        }

    @model_validator(mode="after")
    def _labelled_rows_fit_batches(self) -> ModelConfig:
        """An unset ``performance.min_labelled_rows`` is at most ``data.min_batch_rows`` when that is set:
        small batches (daily rows in weekly batches) would otherwise never be judged."""
        perf = self.triggers.performance
        if (
            perf is not None
            and "min_labelled_rows" not in perf.model_fields_set
            and "min_batch_rows" in self.data.model_fields_set
            and self.data.min_batch_rows < perf.min_labelled_rows
        ):
            perf = perf.model_copy(update={"min_labelled_rows": self.data.min_batch_rows})
            object.__setattr__(self, "triggers", self.triggers.model_copy(update={"performance": perf}))
        return self

    @model_validator(mode="after")
    def _detector_fits_task(self) -> ModelConfig:
        det = self.triggers.error_detector
        if det is not None and det.method == "ddm" and self.task == "regression":
            raise ValueError("triggers.error_detector: ddm watches a 0/1 error stream (classification only)")
        return self

    @property
    def metric(self) -> str:
        """The primary metric's name (a metric of your own: its function's name)."""
        if self.custom_metric:
            return self.custom_metric.rpartition(":")[2]
        return self.validation.metric or ("rmse" if self.task == "regression" else "f1")

    @property
    def custom_metric(self) -> str | None:
        """The import path of a metric of your own (``validation.metric: package.module:function``)."""
        m = self.validation.metric
        return m if m is not None and ":" in m else None

    @property
    def lower_is_better(self) -> bool:
        if self.custom_metric:
            return not self.validation.greater_is_better
        return self.metric in LOWER_IS_BETTER

    @property
    def trigger_metric(self) -> str:
        """The metric the performance and cost signals watch: the validation metric."""
        return self.metric

    @property
    def fingerprint(self) -> str:
        """Hash of everything that changes what a retrain produces."""
        payload = self.model_dump(
            mode="json",
            include={"task", "data", "model", "training", "validation"},
            exclude={"data": {"max_batch_span"}},  # a gate bound: what an accepted batch trains is unchanged
        )
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def parse_config(raw: Any, source: Path | str = "<config>") -> ModelConfig:
    """Validate a parsed YAML mapping into a :class:`ModelConfig`."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a mapping at the top level, got {type(raw).__name__}")
    try:
        return ModelConfig.model_validate({**raw, "source": str(source)})
    except ValidationError as exc:
        raise ConfigError(_format_errors(source, exc)) from exc


def load_config(path: Path | str) -> ModelConfig:
    """Read and validate one model config file."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: no such config file") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    cfg = parse_config(raw, path)
    if path.stem != cfg.name:
        raise ConfigError(f"{path}: name '{cfg.name}' must match the file name '{path.stem}'")
    return cfg


def load_all(folder: Path | str) -> list[ModelConfig]:
    """Every ``*.yaml`` config in a folder, sorted by name; the first invalid one raises."""
    return [load_config(p) for p in sorted(Path(folder).glob("*.yaml"))]


def load_valid(folder: Path | str) -> tuple[list[ModelConfig], dict[str, str]]:
    """Every valid ``*.yaml`` config in a folder, and the error of each invalid one by file stem.

    One broken file affects only its own model: the DAG factory and the overview load the rest."""
    configs, errors = [], {}
    for p in sorted(Path(folder).glob("*.yaml")):
        try:
            configs.append(load_config(p))
        except ConfigError as exc:
            errors[p.stem] = str(exc)
    return configs, errors


def find_config(name: str, folder: Path | str) -> ModelConfig:
    """The config of model ``name`` in ``folder``."""
    path = Path(folder) / f"{name}.yaml"
    if not path.exists():
        raise ConfigError(f"no config for model {name!r} in {folder}")
    return load_config(path)
