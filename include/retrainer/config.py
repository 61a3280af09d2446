"""Model configs: one YAML file per model, validated into typed objects.

Unknown keys and bad values are errors that name the file, the key and the problem. This module imports
only pydantic and yaml, so the DAG factory can load configs at parse time cheaply.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from retrainer.exceptions import ConfigError

DURATION_RE = re.compile(r"^(\d+)([DWH])$")
NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,62}$")

Duration = Annotated[str, Field(pattern=DURATION_RE.pattern, description="e.g. 56D, 8W, 12H")]
LOWER_IS_BETTER = {"rmse", "mae", "log_loss", "brier"}
TRIGGER_SIGNALS = ("data_drift", "prediction_drift", "performance", "flags", "error_detector", "cost")
METRICS = {
    "classification": {"accuracy", "f1", "balanced_accuracy", "roc_auc", "pr_auc", "log_loss", "brier"},
    "regression": {"rmse", "mae", "r2"},
}


def duration_hours(text: str) -> int:
    """Hours in a duration string such as ``8W``, ``56D`` or ``12H``."""
    m = DURATION_RE.match(text)
    if not m:
        raise ConfigError(f"not a duration: {text!r} (use e.g. 8W, 56D, 12H)")
    n, unit = int(m.group(1)), m.group(2)
    return n * {"H": 1, "D": 24, "W": 24 * 7}[unit]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FeatureSpec(_Strict):
    """One input column. Bounds and categories, when given, become expectations in the quality gate."""

    name: str
    type: Literal["numeric", "categorical"] = "numeric"
    min: float | None = None
    max: float | None = None
    categories: list[str] | None = None
    nullable: bool = False


class ImputeConfig(_Strict):
    """How missing values of ``nullable`` features are filled before the estimator sees them (features
    that are not nullable are never null: the quality gate rejects such batches)."""

    numeric: Literal["median", "mean", "constant"] = "median"
    numeric_fill: float = Field(0.0, description="the value used when numeric is 'constant'")
    categorical: Literal["most_frequent", "constant"] = "constant"
    categorical_fill: str = Field("missing", description="the category used when categorical is 'constant'")
    add_indicator: bool = Field(False, description="also give the model a was-missing column per feature")


class DataConfig(_Strict):
    time_column: str
    target: str
    features: list[FeatureSpec]
    id_column: str | None = Field(
        None, description="row id, unique across batches; the labels and flags feeds join on it"
    )
    min_batch_rows: int = Field(1, ge=1)
    max_future: Duration = "1D"  # times later than now + this are quarantined (clock skew allowance)
    impute: ImputeConfig = Field(default_factory=ImputeConfig)

    @field_validator("features", mode="before")
    @classmethod
    def _names_are_numeric_features(cls, value: Any) -> Any:
        if isinstance(value, list):  # a bare name is a numeric feature with no declared bounds
            return [{"name": v} if isinstance(v, str) else v for v in value]
        return value

    @model_validator(mode="after")
    def _distinct_columns(self) -> DataConfig:
        names = [f.name for f in self.features]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"duplicate feature names: {dupes}")
        for special in (self.time_column, self.target):
            if special in names:
                raise ValueError(f"{special!r} is the time column or target and cannot also be a feature")
        if self.id_column is not None and self.id_column in {*names, self.time_column, self.target}:
            raise ValueError(
                f"id_column {self.id_column!r} must be its own column, not a feature/time/target"
            )
        return self

    @property
    def feature_names(self) -> list[str]:
        return [f.name for f in self.features]

    @property
    def numeric(self) -> list[str]:
        return [f.name for f in self.features if f.type == "numeric"]

    @property
    def categorical(self) -> list[str]:
        return [f.name for f in self.features if f.type == "categorical"]

    @property
    def nullable(self) -> set[str]:
        return {f.name for f in self.features if f.nullable}


class ModelSpec(_Strict):
    estimator: str = Field(description="import path of a scikit-learn estimator class")
    params: dict[str, Any] = Field(default_factory=dict)
    scale_numeric: bool = True

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
    window: Duration = "8W"
    holdout: Duration = "1W"
    min_rows: int = Field(100, ge=10)


class DataDriftTrigger(_Strict):
    share: float = Field(0.3, gt=0, le=1, description="fire when this share of features drifted")
    column_threshold: float = Field(
        0.5, gt=0, description="per-column effect size: normed Wasserstein (in std units) / Jensen-Shannon"
    )
    num_method: str = "wasserstein"
    cat_method: str = "jensenshannon"


class PredictionDriftTrigger(_Strict):
    threshold: float = Field(0.15, gt=0, description="normed Wasserstein distance of predictions")
    method: str = "wasserstein"


class PerformanceTrigger(_Strict):
    """The champion's metric on labelled batches (and, optionally, its estimate on unlabelled ones).

    ``mode: relative`` fires when the batch metric is ``max_degradation`` (a fraction) worse than the
    champion's holdout metric. ``mode: control`` is a control chart calibrated on the stream: it fires
    when the batch metric is worse than the champion's own baseline (its first ``baseline_batches``
    labelled batches; the holdout metric until then) by more than ``z`` times the stream's batch-to-batch
    noise (a robust standard deviation of consecutive per-batch metrics of the same model over the last
    ``noise_batches``). Until ``min_noise_points`` differences are known it falls back to ``relative``.
    """

    mode: Literal["relative", "control"] = "relative"
    max_degradation: float = Field(0.2, gt=0, description="relative worsening vs the champion's validation")
    min_labelled_rows: int = Field(20, ge=1)
    z: float = Field(2.0, gt=0, description="control mode: limit in units of the stream's per-batch noise")
    baseline_batches: int = Field(1, ge=1, description="control mode: batches that set a champion's baseline")
    noise_batches: int = Field(26, ge=3, description="control mode: recent batches the noise is measured on")
    min_noise_points: int = Field(3, ge=1, description="control mode: differences needed before using it")
    use_estimate: bool = Field(
        False,
        description="also judge the estimated metric (CBPE / DLE) of each new batch before its labels arrive",
    )


class FlagsTrigger(_Strict):
    threshold: float = Field(0.05, gt=0, le=1, description="share of predictions flagged by people")


class ErrorDetectorTrigger(_Strict):
    """A change detector from ``river.drift`` on the champion's per-row error stream (labelled rows)."""

    method: Literal["adwin", "page_hinkley", "ddm"] = "adwin"
    params: dict[str, Any] = Field(default_factory=dict, description="constructor arguments of the detector")


class CostTrigger(_Strict):
    """Retrain when the expected gain of a retrain exceeds its cost.

    Expected gain = ``value_per_unit`` x the champion's degradation since its baseline (metric units,
    realised or, with ``performance.use_estimate``, estimated) x ``horizon_batches`` (the batches a new
    model is expected to serve). Costs and values are in any one currency (money, compute minutes).
    """

    retrain_cost: float = Field(gt=0, description="cost of one retrain")
    value_per_unit: float = Field(gt=0, description="value of one unit of the metric on one batch")
    horizon_batches: int = Field(4, ge=1, description="batches a fresh model is expected to serve")


class EstimationConfig(_Strict):
    """Performance estimation without labels: CBPE (classification) or DLE (regression)."""

    enabled: bool = Field(True, description="estimate the champion's metric on every batch and record it")
    min_reference_rows: int = Field(50, ge=10, description="holdout rows needed to fit the estimator")


class TriggerConfig(_Strict):
    """Signals, combination and timing of the trigger policy. The defaults are the ones the backtest
    chose on the shipped datasets (README, "Choosing the default trigger policy"): prediction drift or a
    performance drop, cooldown 2. Data drift is measured and recorded but does not vote unless configured:
    on seasonal data it fires on nearly every batch even with effect-size thresholds."""

    data_drift: DataDriftTrigger | None = None
    prediction_drift: PredictionDriftTrigger | None = Field(default_factory=PredictionDriftTrigger)
    performance: PerformanceTrigger | None = Field(default_factory=PerformanceTrigger)
    flags: FlagsTrigger | None = Field(default_factory=FlagsTrigger)
    error_detector: ErrorDetectorTrigger | None = None
    cost: CostTrigger | None = None
    estimation: EstimationConfig | None = Field(default_factory=EstimationConfig)
    combine: Literal["any", "k_of_n", "weighted"] = "any"
    k: int = Field(2, ge=1, description="signals needed when combine is k_of_n")
    weights: dict[str, float] = Field(default_factory=dict, description="per-signal weights when weighted")
    weighted_threshold: float = Field(1.0, gt=0)
    cooldown_batches: int = Field(
        2, ge=0, description="batches after a request during which new ones are suppressed"
    )
    hysteresis_batches: int = Field(
        0, ge=0, description="after a request, quiet batches needed before the trigger can fire again"
    )
    follow_up_refit: bool = Field(
        False, description="retrain once more on the batch after a triggered retrain"
    )
    label_delay_batches: int = Field(0, ge=0, description="batches until a batch's labels arrive (backtest)")
    poke_interval_seconds: int = Field(15, ge=1)
    sensor_timeout_hours: float = Field(24, gt=0)
    report_max_rows: int = Field(20_000, ge=100, description="rows sampled per side for the drift report")

    @model_validator(mode="after")
    def _weights_known(self) -> TriggerConfig:
        unknown = set(self.weights) - set(TRIGGER_SIGNALS)
        if unknown:
            raise ValueError(f"weights for unknown signals: {sorted(unknown)}")
        return self


class Floor(_Strict):
    min: float | None = None
    max: float | None = None


class SliceCheck(_Strict):
    """The primary metric on each value of a categorical column, candidate vs champion."""

    column: str
    max_degradation: float = Field(0.25, ge=0, description="relative worsening allowed per slice")
    min_rows: int = Field(20, ge=1, description="slices with fewer holdout rows are not judged")


class InvarianceCheck(_Strict):
    """Small noise on features that should barely matter must barely move the predictions."""

    features: list[str]
    noise: float = Field(0.05, gt=0, description="noise scale, in standard deviations of each feature")
    tolerance: float = Field(
        0.1,
        gt=0,
        description="regression: mean |change| / std of predictions; classification: share of flipped labels",
    )


class PredictionRangeCheck(_Strict):
    """Predictions must be finite and inside [min, max] (default: the training target's range widened)."""

    min: float | None = None
    max: float | None = None
    slack: float = Field(0.5, ge=0, description="widening of the training target's range, as a share of it")


class BehaviourConfig(_Strict):
    invariance: InvarianceCheck | None = None
    prediction_range: PredictionRangeCheck | None = Field(default_factory=PredictionRangeCheck)
    min_prediction_spread: bool = Field(
        True, description="minimum functionality: a model that predicts one value for every row fails"
    )


class ValidationConfig(_Strict):
    metric: str | None = Field(None, description="primary metric; default rmse or f1 by task")
    max_degradation: float = Field(0.0, ge=0, lt=1, description="relative margin the candidate may lose")
    floors: dict[str, Floor] = Field(default_factory=dict)
    range_tolerance: float = Field(
        0.5, ge=0, description="slack on reference ranges, as a share of the range"
    )
    mostly: float = Field(0.99, gt=0, le=1, description="share of rows that must satisfy value expectations")
    slices: list[SliceCheck] = Field(default_factory=list)
    behaviour: BehaviourConfig = Field(default_factory=BehaviourConfig)


class PromotionConfig(_Strict):
    """How a validated candidate reaches the ``champion`` alias."""

    mode: Literal["immediate", "shadow", "approval"] = "immediate"
    shadow_batches: int = Field(3, ge=1, description="labelled batches the challenger must hold up on")
    margin: float = Field(
        0.05, ge=0, lt=1, description="relative amount the challenger may trail the champion on a batch"
    )
    rollback_batches: int = Field(
        0, ge=0, description="watch a new champion against the previous one on this many batches; 0: off"
    )
    approval_timeout: str = Field(
        "24H",
        pattern=r"^[0-9]+[SMHD]$",
        description="approval mode: how long a request waits for a person (e.g. 90S, 30M, 24H, 2D); "
        "then the challenger is rejected and retired, recorded as a timeout",
    )
    approvers: list[str] = Field(
        default_factory=list,
        description="approval mode: Airflow user names who may answer; empty: anyone allowed to edit the DAG",
    )

    @property
    def approval_timeout_seconds(self) -> int:
        n, unit = int(self.approval_timeout[:-1]), self.approval_timeout[-1]
        return n * {"S": 1, "M": 60, "H": 3600, "D": 86400}[unit]


ALERT_EVENTS = (
    "quarantine",  # a batch failed the data gate and was quarantined
    "rejected",  # a retrained candidate failed validation (or was rejected / timed out in approval)
    "promotion",  # a new champion
    "rollback",  # the champion moved back (manually or automatically)
    "approval_waiting",  # a challenger waits for a person
    "stuck_batch",  # a claimed batch is not moving
    "task_failed",  # any task of the model's DAGs failed for good
)


class AlertChannel(_Strict):
    """Where alerts go: ``smtp`` (the SMTP provider, installed); ``slack`` / ``apprise`` need their Airflow
    provider installed (optional extras)."""

    type: Literal["smtp", "slack", "apprise"] = "smtp"
    to: list[str] = Field(default_factory=list, description="smtp: recipients")
    conn_id: str | None = Field(
        None,
        description="Airflow connection holding the server and credentials "
        "(default smtp_default / slack_api_default / apprise_default)",
    )
    from_email: str | None = Field(None, description="smtp: sender; default: the connection's from_email")
    channel: str | None = Field(None, description="slack: channel, e.g. #ml-alerts")

    @model_validator(mode="after")
    def _target(self) -> AlertChannel:
        if self.type == "smtp" and not self.to:
            raise ValueError("an smtp channel needs `to` (a list of addresses)")
        return self


class AlertsConfig(_Strict):
    """Per-model alerts: which events go to which channels."""

    channels: list[AlertChannel] = Field(default_factory=list, description="empty: no alerts")
    events: list[Literal[ALERT_EVENTS]] = Field(  # type: ignore[valid-type]
        default_factory=lambda: list(ALERT_EVENTS), description="events to send; default: all"
    )


class BacktestConfig(_Strict):
    """Defaults of ``retrainer backtest`` for this model (the command line overrides them)."""

    batch_freq: Duration | None = Field(None, description="batch length of the replay; default 7D")
    warmup_batches: int | None = Field(
        None, ge=1, description="batches used to train the first model; default: the training window"
    )
    max_k: int = Field(8, ge=2, le=52, description="largest k of the every_k schedule frontier")
    alternatives: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="named trigger policies to compare: overrides of `triggers`"
    )

    @model_validator(mode="after")
    def _alternatives_valid(self) -> BacktestConfig:
        for name, override in self.alternatives.items():
            if not NAME_RE.match(name) or name in RESERVED_POLICIES or name.startswith("every_"):
                raise ValueError(f"alternative name {name!r}: use lower case, not a built-in policy name")
            try:
                TriggerConfig.model_validate(override)
            except ValidationError as exc:
                raise ValueError(f"alternative {name!r}: {_format_errors('triggers', exc)}") from exc
        return self


RESERVED_POLICIES = {"never", "every_batch", "trigger", "baseline"}


class RetentionConfig(_Strict):
    """What ``retrainer gc`` (and the ``<model>__maintenance`` DAG) may remove. Never removed: batches in
    landing, processing or quarantine, snapshots of registered versions, archived batches inside the
    training window, and predictions the current champion or challenger uses."""

    archive: Duration = Field(
        "26W",
        description="archived batches are kept while their newest row is within this (or the training "
        "window, if longer) of the newest archived row",
    )
    label_wait: Duration = Field(
        "8W", description="archived batches with unlabelled rows are kept this long (data time) for labels"
    )
    snapshots: Duration = Field(
        "7D", description="snapshots no registered version uses are kept this long after they were written"
    )
    reports: Duration = Field("30D", description="GX and Evidently reports are kept this long")
    predictions: Duration = Field(
        "30D", description="stored batch predictions are kept this long, and while their labels are pending"
    )
    records: Duration = Field("30D", description="claim records of finished batches are kept this long")
    schedule: str | None = Field(
        "0 4 * * 0", description="cron of the <model>__maintenance DAG that runs gc; null for no DAG"
    )

    @field_validator("schedule")
    @classmethod
    def _cron(cls, value: str | None) -> str | None:
        return ModelConfig._cron(value)


class ModelConfig(_Strict):
    name: str
    task: Literal["classification", "regression"]
    description: str = ""
    data: DataConfig
    model: ModelSpec
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    schedule: str | None = Field("0 3 * * 1", description="cron for scheduled retrains; null for none")
    triggers: TriggerConfig = Field(default_factory=TriggerConfig)
    validation: ValidationConfig = Field(default_factory=ValidationConfig)
    promotion: PromotionConfig = Field(default_factory=PromotionConfig)
    alerts: AlertsConfig = Field(default_factory=AlertsConfig)
    backtest: BacktestConfig = Field(default_factory=BacktestConfig)
    retention: RetentionConfig = Field(default_factory=RetentionConfig)
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
        if value is not None and value.startswith("@"):
            return value
        from croniter import croniter  # light, and already required by Airflow

        if value is not None and (len(value.split()) != 5 or not croniter.is_valid(value)):
            raise ValueError("must be a valid 5-field cron expression, an @preset, or null")
        return value

    @model_validator(mode="after")
    def _metrics_fit_task(self) -> ModelConfig:
        allowed = METRICS[self.task]
        bad = [m for m in [self.validation.metric, *self.validation.floors] if m and m not in allowed]
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
    def _detector_fits_task(self) -> ModelConfig:
        det = self.triggers.error_detector
        if det is not None and det.method == "ddm" and self.task == "regression":
            raise ValueError("triggers.error_detector: ddm watches a 0/1 error stream (classification only)")
        return self

    @property
    def metric(self) -> str:
        return self.validation.metric or ("rmse" if self.task == "regression" else "f1")

    @property
    def lower_is_better(self) -> bool:
        return self.metric in LOWER_IS_BETTER

    @property
    def trigger_metric(self) -> str:
        """The metric the performance and cost signals watch: the validation metric."""
        return self.metric

    @property
    def fingerprint(self) -> str:
        """Hash of everything that changes what a retrain produces."""
        payload = self.model_dump(mode="json", include={"task", "data", "model", "training", "validation"})
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def _format_errors(path: Path | str, err: ValidationError) -> str:
    lines = [f"{path}: invalid config"]
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"]) or "<root>"
        if e["type"] == "extra_forbidden":
            lines.append(f"  - unknown key '{loc}' (not a recognised setting; check spelling)")
        elif e["type"] == "missing":
            lines.append(f"  - missing required key '{loc}'")
        else:
            lines.append(f"  - {loc}: {e['msg']} (got {e.get('input')!r})")
    return "\n".join(lines)


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
