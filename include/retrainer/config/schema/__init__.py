"""The model config's schema, one module per section: pydantic models, loading and validation.

This package imports only pydantic and yaml, so the DAG factory can load configs at parse time cheaply.
"""

from retrainer.config.schema.base import (
    ALERT_EVENTS,
    DURATION_RE,
    LOWER_IS_BETTER,
    METRICS,
    NAME_RE,
    RESERVED_POLICIES,
    TRIGGER_SIGNALS,
    Duration,
    duration_hours,
)
from retrainer.config.schema.data import DataConfig, FeatureSpec, ImputeConfig
from retrainer.config.schema.model import BASE_TRUSTED, ModelSpec, TrainingConfig, import_object
from retrainer.config.schema.operation import (
    AlertChannel,
    AlertsConfig,
    BacktestConfig,
    PromotionConfig,
    RetentionConfig,
)
from retrainer.config.schema.root import (
    ModelConfig,
    find_config,
    load_all,
    load_config,
    load_valid,
    parse_config,
)
from retrainer.config.schema.triggers import (
    BenefitTrigger,
    CostTrigger,
    DataDriftTrigger,
    ErrorDetectorTrigger,
    EstimationConfig,
    FlagsTrigger,
    JudgeTrigger,
    PerformanceTrigger,
    PredictionDriftTrigger,
    TriggerConfig,
)
from retrainer.config.schema.validation import (
    BehaviourConfig,
    Floor,
    InvarianceCheck,
    PredictionRangeCheck,
    SliceCheck,
    ValidationConfig,
)

__all__ = [
    "ALERT_EVENTS",
    "BASE_TRUSTED",
    "DURATION_RE",
    "LOWER_IS_BETTER",
    "METRICS",
    "NAME_RE",
    "RESERVED_POLICIES",
    "TRIGGER_SIGNALS",
    "AlertChannel",
    "AlertsConfig",
    "BacktestConfig",
    "BehaviourConfig",
    "BenefitTrigger",
    "CostTrigger",
    "DataConfig",
    "DataDriftTrigger",
    "Duration",
    "ErrorDetectorTrigger",
    "EstimationConfig",
    "FeatureSpec",
    "FlagsTrigger",
    "Floor",
    "ImputeConfig",
    "InvarianceCheck",
    "JudgeTrigger",
    "ModelConfig",
    "ModelSpec",
    "PerformanceTrigger",
    "PredictionDriftTrigger",
    "PredictionRangeCheck",
    "PromotionConfig",
    "RetentionConfig",
    "SliceCheck",
    "TrainingConfig",
    "TriggerConfig",
    "ValidationConfig",
    "duration_hours",
    "find_config",
    "import_object",
    "load_all",
    "load_config",
    "load_valid",
    "parse_config",
]
