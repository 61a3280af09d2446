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

Duration = Annotated[
    str, Field(pattern=DURATION_RE.pattern, description="a number and a unit: H hours, D days, W weeks (8W)")
]
LOWER_IS_BETTER = {"rmse", "mae", "log_loss", "brier"}
TRIGGER_SIGNALS = (
    "data_drift",
    "prediction_drift",
    "performance",
    "flags",
    "error_detector",
    "cost",
    "benefit",
)
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
    """One input column. A bare name in `data.features` is a numeric feature without bounds. Bounds and
    categories, when given, become expectations in the quality gate."""

    name: str = Field(description="column name in the batches")
    type: Literal["numeric", "categorical"] = Field(
        "numeric",
        description="numeric features are scaled (`model.scale_numeric`), categorical ones one-hot encoded",
    )
    min: float | None = Field(
        None, description="numeric: smallest valid value (a gate expectation, see `validation.mostly`)"
    )
    max: float | None = Field(
        None, description="numeric: largest valid value (a gate expectation, see `validation.mostly`)"
    )
    categories: list[str] | None = Field(
        None,
        description="categorical: the valid values; unseen categories fail the gate (see `validation.mostly`)",
    )
    nullable: bool = Field(
        False,
        description="may be missing in some or all rows of a batch; gaps are filled by `data.impute`. "
        "A feature that is not nullable must never be null (the gate rejects such batches)",
    )


class ImputeConfig(_Strict):
    """How missing values of ``nullable`` features are filled before the estimator sees them (features
    that are not nullable are never null: the quality gate rejects such batches)."""

    numeric: Literal["median", "mean", "constant"] = Field(
        "median", description="how gaps of nullable numeric features are filled"
    )
    numeric_fill: float = Field(0.0, description="the value used when `numeric` is `constant`")
    categorical: Literal["most_frequent", "constant"] = Field(
        "constant", description="how gaps of nullable categorical features are filled"
    )
    categorical_fill: str = Field("missing", description="the category used when `categorical` is `constant`")
    add_indicator: bool = Field(
        False, description="also give the model a was-missing column for each nullable feature"
    )


def _name_or_feature(schema: dict[str, Any]) -> None:
    """JSON Schema of `data.features`: each item is a bare column name or a feature mapping."""
    schema["items"] = {"anyOf": [{"type": "string", "description": "a numeric feature"}, schema["items"]]}


class DataConfig(_Strict):
    """The columns of a batch: time, target, features and (optionally) a row id."""

    time_column: str = Field(description="timestamp column; batches and training windows are ordered by it")
    target: str = Field(
        description="label column; it may be missing or null in a batch (labels often arrive late)"
    )
    features: list[FeatureSpec] = Field(
        description="the model's inputs: column names (numeric) or mappings (see `data.features[]`)",
        json_schema_extra=_name_or_feature,
    )
    id_column: str | None = Field(
        None,
        description="row id, unique across batches; required by the labels and flags feeds (late labels and "
        "flags join on it). When set, the batch gate also checks that the column exists, is non-null "
        "and unique",
    )
    min_batch_rows: int = Field(1, ge=1, description="a batch with fewer rows fails the quality gate")
    max_future: Duration = Field(
        "1D",
        description="rows timed later than now + this are quarantined (an allowance for clock skew; such "
        "a row would otherwise anchor every later training window)",
    )
    max_batch_span: Duration | None = Field(
        None,
        description="a batch whose rows span more than this (newest minus oldest time) is quarantined: "
        "one mis-stamped row would otherwise anchor the next training window and leave the rest of the "
        "archive outside it. Default (null): `training.window`",
    )
    impute: ImputeConfig = Field(
        default_factory=ImputeConfig, description="how gaps of `nullable` features are filled"
    )

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


class DataDriftTrigger(_Strict):
    """Data drift (Evidently) of the batch's features against the champion's training snapshot. Measured
    and recorded on every batch; it votes only when this section is set. Off by default: on seasonal
    data it fires on nearly every batch."""

    share: float = Field(0.3, gt=0, le=1, description="fire when this share of the features drifted")
    column_threshold: float = Field(
        0.5,
        gt=0,
        description="a feature drifted when its distance is at least this effect size: normed Wasserstein "
        "(in standard deviations) for numeric features, Jensen-Shannon for categorical ones",
    )
    num_method: str = Field("wasserstein", description="Evidently's drift method for numeric features")
    cat_method: str = Field("jensenshannon", description="Evidently's drift method for categorical features")


class PredictionDriftTrigger(_Strict):
    """Distance between the champion's predictions on the batch and on its training data.

    ``mode: absolute`` fires when the distance reaches ``threshold``. ``mode: control`` calibrates on the
    stream instead: it fires when the distance has grown since the champion's first batch by more than
    ``z`` times its batch-to-batch noise (as the performance control chart; the absolute threshold until
    the noise is known). Use it where the distance is large on every batch (trending or seasonal
    predictions), which makes a fixed threshold fire always. ``mode: auto`` is ``absolute`` until the
    distance was at least ``threshold`` on ``auto_share`` of the last 26 batches (at least 8 seen), and
    ``control`` while it is: a threshold the stream exceeds nearly always carries no information.
    """

    mode: Literal["absolute", "control", "auto"] = Field(
        "absolute", description="`absolute`, `control` or `auto` (above)"
    )
    auto_share: float = Field(
        0.8,
        gt=0,
        le=1,
        description="auto mode: share of recent batches at or above `threshold` that switches to control",
    )
    threshold: float = Field(
        0.15,
        gt=0,
        description="fire when the normed Wasserstein distance of the predictions is at least this",
    )
    z: float = Field(
        2.0, gt=0, description="control mode: limit in units of the distance's batch-to-batch noise"
    )
    method: str = Field(
        "wasserstein",
        description="Evidently's drift method for a regressor's predictions; a classifier's predicted labels "
        "use `data_drift.cat_method`",
    )


class PerformanceTrigger(_Strict):
    """The champion's metric on labelled batches (and, optionally, its estimate on unlabelled ones).

    ``mode: relative`` fires when the batch metric is ``max_degradation`` (a fraction) worse than the
    champion's holdout metric. ``mode: control`` is a control chart calibrated on the stream: it fires
    when the batch metric is worse than the champion's own baseline (its first ``baseline_batches``
    labelled batches; the holdout metric until then) by more than ``z`` times the stream's batch-to-batch
    noise (a robust standard deviation of consecutive per-batch metrics of the same model over the last
    ``noise_batches``). Until ``min_noise_points`` differences are known it falls back to ``relative``.
    ``mode: cusum`` accumulates the same noise-scaled worsening over the champion's labelled batches
    (a one-sided CUSUM: each batch adds its worsening minus ``cusum_k`` noise units, never below 0) and
    fires when the sum exceeds ``cusum_h``: a small lasting decay fires after a few batches, a large
    one at once, and batch-to-batch noise does not add up.
    """

    mode: Literal["relative", "control", "cusum"] = Field(
        "relative", description="`relative`, `control` or `cusum` (above)"
    )
    max_degradation: float = Field(
        0.2,
        gt=0,
        description="relative mode (and control mode's fallback): fire when the batch metric is worse than "
        "the champion's holdout metric by more than this fraction",
    )
    min_labelled_rows: int = Field(
        20,
        ge=1,
        description="batches with fewer labelled rows are not judged; when not set, at most "
        "`data.min_batch_rows` (if that is set)",
    )
    z: float = Field(2.0, gt=0, description="control mode: limit in units of the stream's per-batch noise")
    baseline_batches: int = Field(1, ge=1, description="control mode: batches that set a champion's baseline")
    noise_batches: int = Field(26, ge=3, description="control mode: recent batches the noise is measured on")
    min_noise_points: int = Field(3, ge=1, description="control mode: differences needed before using it")
    cusum_k: float = Field(
        0.5, ge=0, description="cusum mode: noise units each batch's worsening must exceed to add up"
    )
    cusum_h: float = Field(4.0, gt=0, description="cusum mode: fire when the sum exceeds this (noise units)")
    predecessor_z: float | None = Field(
        None,
        gt=0,
        description="control and cusum modes: fire when the champion's first labelled batch was worse than "
        "its predecessor's first one by more than this many noise units: a model retrained just after a "
        "change learnt mostly from the old data, and a refit once the window holds more of the new data "
        "brings back the level a fresh model reached before (at most one request per champion; "
        "null = off)",
    )
    use_estimate: bool = Field(
        False,
        description="also judge the estimated metric (CBPE / DLE) of each new batch before its labels arrive",
    )


class FlagsTrigger(_Strict):
    """Predictions people flagged as wrong (a `<batch>.flags.csv` sidecar, or the flags feed)."""

    threshold: float = Field(
        0.05, gt=0, le=1, description="fire when this share of a batch's predictions was flagged by people"
    )


class ErrorDetectorTrigger(_Strict):
    """A change detector from ``river.drift`` on the champion's per-row error stream (labelled rows: 0/1
    errors for classification, absolute errors for regression). It fires when it sees a change point in
    the batch's labelled rows. Its state is kept with each decision and reset when the champion changes."""

    method: Literal["adwin", "page_hinkley", "ddm"] = Field(
        "adwin", description="`adwin`, `page_hinkley`, or `ddm` (classification only)"
    )
    params: dict[str, Any] = Field(default_factory=dict, description="constructor arguments of the detector")


class CostTrigger(_Strict):
    """Retrain when the expected gain of a retrain exceeds its cost.

    Expected gain = ``value_per_unit`` x the champion's degradation since its baseline (metric units,
    realised or, with ``performance.use_estimate``, estimated) x ``horizon_batches`` (the batches a new
    model is expected to serve). Costs and values are in any one currency (money, compute minutes). Every
    decision records the degradation, the gain and the cost.
    """

    retrain_cost: float = Field(gt=0, description="cost of one retrain")
    value_per_unit: float = Field(gt=0, description="value of one unit of the metric on one batch")
    horizon_batches: int = Field(4, ge=1, description="batches a fresh model is expected to serve")


class BenefitTrigger(_Strict):
    """The measured benefit of retraining now: a candidate trained on the training window that ends just
    before the latest labelled batch, against the champion, on that batch (rows neither was trained on).
    The per-row losses are paired (squared error for `rmse`, absolute error for other regression metrics,
    0/1 errors for classification) and the signal fires when the candidate's mean loss is lower by more
    than `z` standard errors of the paired difference and by at least `min_gain` of the champion's. Not
    measured while the champion was trained on that same window (no newer labels). Measured by
    `retrainer backtest` and `retrainer tune` (which share the replay's fits); the monitor DAG does not
    fit a candidate: there the signal is not measured and does not vote."""

    z: float = Field(
        2.0, gt=0, description="fire when the paired difference exceeds this many standard errors"
    )
    min_gain: float = Field(
        0.05,
        ge=0,
        description="and when the candidate's mean loss is lower by at least this share of the champion's (two "
        "models of the same concept differ by a few percent, consistently enough to pass the test alone)",
    )
    min_labelled_rows: int = Field(20, ge=2, description="batches with fewer labelled rows are not judged")


class JudgeTrigger(_Strict):
    """Each promotion judged by the labelled batches that followed it: the new champion against the model it
    replaced, on the same rows. A promotion that did worse on them (mean over up to `batches` batches) lost;
    after `backoff_after` losing promotions in a row the policy backs off (retrain requests held for a span
    that doubles with each further loss, recorded as `suppressed`); a winning promotion ends the back-off.
    Measured by `retrainer backtest` and `retrainer tune`; the monitor DAG does not score the replaced model
    for the policy yet (its rollback watch, `promotion.rollback_batches`, does for rollbacks)."""

    batches: int = Field(3, ge=1, description="labelled batches after a promotion on which it is judged")
    backoff_after: int = Field(2, ge=1, description="losing promotions in a row before the policy backs off")
    rollback: bool = Field(
        False,
        description="a promotion judged as losing goes back to the model it replaced (off: it only counts)",
    )
    max_backoff_batches: int = Field(52, ge=1, description="the longest back-off, in batches")


class EstimationConfig(_Strict):
    """Performance estimation without labels: CBPE (classification) or DLE (regression)."""

    enabled: bool = Field(
        True,
        description="estimate the champion's metric on every batch (CBPE for classifiers with "
        "`predict_proba`, DLE for regressors), fitted on its holdout; recorded on every monitor decision "
        "(`estimated_<metric>`, `decision.json` -> `estimate`)",
    )
    min_reference_rows: int = Field(50, ge=10, description="holdout rows needed to fit the estimator")


class TriggerConfig(_Strict):
    """Signals, combination and timing of the trigger policy. Without this section (or without its
    `prediction_drift`, `performance`, `cooldown_batches` keys) a model gets the default the backtest
    chose on four real streams (docs/backtest/default-policy.md): prediction drift
    0.15 (judged against the stream's own noise once 0.15 fires on nearly every batch), or a performance
    drop beyond 2 x the stream's per-batch noise below the champion's first batch (a control chart; a 25%
    drop against the holdout until the noise is known), any, cooldown 3, and a retrain after 8 batches
    without a request (`max_age_batches`). Data drift
    is measured and recorded but does not vote unless configured: on seasonal data it fires on nearly
    every batch even with effect-size thresholds."""

    data_drift: DataDriftTrigger | None = Field(
        None, description="data drift signal; `null`: measured and recorded, no vote"
    )
    prediction_drift: PredictionDriftTrigger | None = Field(
        default_factory=lambda: PredictionDriftTrigger(mode="auto", z=3.0),
        description="prediction drift signal; `null` disables. Default: `{mode: auto, threshold: 0.15, z: 3}` "
        "(the tuned default; the fields' own defaults apply when you write the section)",
    )
    performance: PerformanceTrigger | None = Field(
        default_factory=lambda: PerformanceTrigger(mode="control", z=2.0, max_degradation=0.25),
        description="performance signal; `null` disables. Default: `{mode: control, z: 2, "
        "max_degradation: 0.25}` (the tuned default; the fields' own defaults apply when you write the "
        "section)",
    )
    flags: FlagsTrigger | None = Field(
        default_factory=FlagsTrigger, description="human flags signal; `null` disables"
    )
    error_detector: ErrorDetectorTrigger | None = Field(
        None, description="change detector on the champion's error stream; `null`: off"
    )
    cost: CostTrigger | None = Field(None, description="cost-aware retraining; `null`: off")
    benefit: BenefitTrigger | None = Field(
        None,
        description="the measured gain of a candidate over the champion on the latest labels; `null`: off",
    )
    estimation: EstimationConfig | None = Field(
        default_factory=EstimationConfig, description="performance estimation without labels; `null` disables"
    )
    judge: JudgeTrigger | None = Field(
        None,
        description="judge each promotion by the batches after it, back off when they keep losing; `null`: off",
    )
    combine: Literal["any", "k_of_n", "weighted"] = Field(
        "any",
        description="how the signals that fired make a decision: `any` one, `k_of_n` (at least `k`), or "
        "`weighted` (the sum of `weights` of the signals that fired reaches `weighted_threshold`)",
    )
    k: int = Field(2, ge=1, description="signals needed when `combine` is `k_of_n`")
    weights: dict[str, float] = Field(
        default_factory=dict,
        description="per-signal weights when `combine` is `weighted`; keys: " + ", ".join(TRIGGER_SIGNALS),
    )
    weighted_threshold: float = Field(
        1.0, gt=0, description="fire when the weights of the signals that fired add up to this"
    )
    cooldown_batches: int = Field(
        3,
        ge=0,
        description="after a request, this many batches cannot request again (recorded as `suppressed`)",
    )
    hysteresis_batches: int = Field(
        0,
        ge=0,
        description="after a request, this many consecutive quiet batches (rule not met) are needed before "
        "the trigger can fire again (one drift event, one retrain); it does not hold back while the "
        "request has not replaced the champion",
    )
    budget_share: float | None = Field(
        None,
        gt=0,
        le=1,
        description="a retrain budget: at most this share of batches may request a retrain in the long run "
        "(credits accrue by this much per batch, one request spends one); unlike a cooldown it lets "
        "requests come close together after quiet batches. `null`: no budget",
    )
    budget_burst: float = Field(
        2.0, ge=1, description="with `budget_share`: the most credits saved up (requests in quick succession)"
    )
    max_age_batches: int | None = Field(
        8,
        ge=1,
        description="a floor under the signals: request a retrain once the champion has served more than "
        "this many batches with no request (a change the signals cannot see, e.g. in P(y | x) with a "
        "small metric drop, is still picked up); it does not wait for the combination rule, hysteresis "
        "or the retrain budget. Counted in batches: with daily batches 8 means at least every 9 days; "
        "null = off",
    )
    follow_up_refit: bool = Field(
        False,
        description="retrain once more on the batch after a triggered retrain (the first window still mixed "
        "regimes after an abrupt change); bypasses the cooldown",
    )
    label_delay_batches: int = Field(
        0, ge=0, description="batches until a batch's labels arrive; the backtest's default `--label-delay`"
    )
    poke_interval_seconds: int = Field(15, ge=1, description="how often the sensor looks for a new batch")
    sensor_timeout_hours: float = Field(
        24,
        gt=0,
        description="a monitor run with no batch by then is skipped (soft fail) and the next run starts",
    )
    report_max_rows: int = Field(
        20_000, ge=100, description="rows sampled (seeded) per side for drift and the Evidently report"
    )

    @model_validator(mode="after")
    def _weights_known(self) -> TriggerConfig:
        unknown = set(self.weights) - set(TRIGGER_SIGNALS)
        if unknown:
            raise ValueError(f"weights for unknown signals: {sorted(unknown)}")
        return self


class Floor(_Strict):
    """An absolute bound on one holdout metric of a candidate, e.g. `r2: {min: 0.3}`."""

    min: float | None = Field(None, description="the metric must be at least this")
    max: float | None = Field(None, description="the metric must be at most this")


class SliceCheck(_Strict):
    """The primary metric on each value of a column, candidate vs champion on the same holdout rows."""

    column: str = Field(description="a feature; every value of it is a slice")
    max_degradation: float = Field(0.25, ge=0, description="relative worsening allowed per slice")
    min_rows: int = Field(20, ge=1, description="slices with fewer holdout rows are not judged")


class InvarianceCheck(_Strict):
    """Small noise on features that should barely matter must barely move the predictions."""

    features: list[str] = Field(description="features whose small changes should barely move the predictions")
    noise: float = Field(0.05, gt=0, description="noise scale, in standard deviations of each feature")
    tolerance: float = Field(
        0.1,
        gt=0,
        description="regression: mean |change| / std of predictions; classification: share of flipped labels",
    )


class PredictionRangeCheck(_Strict):
    """Predictions must be finite and inside [min, max] (default: the training target's range widened)."""

    min: float | None = Field(
        None, description="lowest allowed prediction; default: from the training target"
    )
    max: float | None = Field(
        None, description="highest allowed prediction; default: from the training target"
    )
    slack: float = Field(0.5, ge=0, description="widening of the training target's range, as a share of it")


class BehaviourConfig(_Strict):
    """Behavioural checks of a candidate on the holdout (model tests, not data tests)."""

    invariance: InvarianceCheck | None = Field(None, description="invariance check; `null`: off")
    prediction_range: PredictionRangeCheck | None = Field(
        default_factory=PredictionRangeCheck,
        description="predictions finite and in range (for classification: only labels seen in training); "
        "`null` disables",
    )
    min_prediction_spread: bool = Field(
        True, description="minimum functionality: a model that predicts one value for every row fails"
    )


class ValidationConfig(_Strict):
    """The quality gate's tolerances, and what a candidate must pass before it is registered."""

    metric: str | None = Field(
        None,
        description="primary metric, also the one the performance and cost signals watch; default `rmse` "
        "(regression) or `f1` (classification). Regression: `rmse`, `mae`, `r2`; classification: "
        "`accuracy`, `f1` (macro), `balanced_accuracy`, and for classifiers with `predict_proba`: "
        "`roc_auc`, `pr_auc` (average precision), `log_loss`, `brier` (one-vs-rest macro for more than "
        "two classes)",
    )
    max_degradation: float = Field(
        0.0,
        ge=0,
        lt=1,
        description="how much worse (relative) than the champion a candidate may be and still pass",
    )
    floors: dict[str, Floor] = Field(
        default_factory=dict,
        description="absolute floors per metric, e.g. `{r2: {min: 0.3}, rmse: {max: 80}}`",
    )
    range_tolerance: float = Field(
        0.5,
        ge=0,
        description="numeric features without declared bounds: the reference range widened by this share of "
        "itself is what the gate accepts",
    )
    mostly: float = Field(
        0.99,
        gt=0,
        le=1,
        description="share of rows that must satisfy value expectations (ranges, categories)",
    )
    slices: list[SliceCheck] = Field(
        default_factory=list,
        description="per-slice checks, e.g. `[{column: weathersit, max_degradation: 0.25, min_rows: 20}]`",
    )
    behaviour: BehaviourConfig = Field(default_factory=BehaviourConfig, description="behavioural checks")


class PromotionConfig(_Strict):
    """How a validated candidate reaches the ``champion`` alias."""

    mode: Literal["immediate", "shadow", "approval"] = Field(
        "immediate",
        description="`immediate`: the candidate becomes `champion`; `shadow`: it becomes `challenger` and is "
        "scored beside the champion on the next labelled batches; `approval`: it becomes `challenger` "
        "and a person approves or rejects it",
    )
    shadow_batches: int = Field(
        3,
        ge=1,
        description="shadow mode: labelled batches the challenger must be non-inferior on before it is promoted",
    )
    margin: float = Field(
        0.05,
        ge=0,
        lt=1,
        description="shadow mode: how much worse (relative) than the champion the challenger may be on a "
        "batch; also the automatic-rollback margin",
    )
    rollback_batches: int = Field(
        0,
        ge=0,
        description="automatic rollback: batches after a promotion on which the new champion is compared "
        "with the previous one (moved back if worse by more than `margin`); `0` disables",
    )
    min_labelled_rows: int = Field(
        30,
        ge=1,
        description="shadow mode and automatic rollback: labelled rows (the batch's own and late labels for "
        "the batches seen since the promotion or the staging) needed before the two models are compared; "
        "with fewer the decision waits for more labels",
    )
    approval_timeout: str = Field(
        "24H",
        pattern=r"^[0-9]+[SMHD]$",
        description="approval mode: how long a request waits for a person (e.g. 90S, 30M, 24H, 2D); "
        "then the challenger is rejected and retired, recorded as a timeout",
    )
    approvers: list[str] = Field(
        default_factory=list,
        description="approval mode: Airflow user names who may answer (the human-in-the-loop operator's "
        "`assigned_users`); empty: anyone allowed to edit the DAG",
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

    type: Literal["smtp", "slack", "apprise"] = Field("smtp", description="the Airflow notifier to use")
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
        default_factory=lambda: list(ALERT_EVENTS), description="which events are sent; default: all"
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
        "window, if longer) of the second-newest batch's newest row; whatever this says, gc keeps every "
        "batch the next training window (which ends at the newest labelled row) can read",
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
        payload = self.model_dump(
            mode="json",
            include={"task", "data", "model", "training", "validation"},
            exclude={"data": {"max_batch_span"}},  # a gate bound: what an accepted batch trains is unchanged
        )
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
