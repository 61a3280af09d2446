"""`validation`: the quality gate's tolerances and the checks a candidate must pass."""

from __future__ import annotations

from pydantic import Field, model_validator

from retrainer.config.schema.base import _module_path, _Strict


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

    @model_validator(mode="after")
    def _custom_metric_direction(self) -> ValidationConfig:
        custom = self.metric is not None and ":" in self.metric
        if custom:
            _module_path(self.metric or "", "acme_metrics.costs:delay_cost")
        if custom and self.greater_is_better is None:
            raise ValueError(
                f"validation.metric {self.metric!r} is your own metric: declare validation.greater_is_better"
            )
        if not custom and self.greater_is_better is not None:
            raise ValueError(
                "validation.greater_is_better is only for a metric of your own (package.module:f)"
            )
        return self

    metric: str | None = Field(
        None,
        description="primary metric, also the one the performance and cost signals watch; default `rmse` "
        "(regression) or `f1` (classification). Regression: `rmse`, `mae`, `r2`; classification: "
        "`accuracy`, `f1` (macro), `balanced_accuracy`, and for classifiers with `predict_proba`: "
        "`roc_auc`, `pr_auc` (average precision), `log_loss`, `brier` (one-vs-rest macro for more than "
        "two classes). Or your own: an import path `package.module:function` to `f(y_true, y_pred) -> "
        "float` (with `greater_is_better`); it is reported under the function's name",
    )
    greater_is_better: bool | None = Field(
        None,
        description="required with a metric of your own (`metric: package.module:function`): whether a "
        "higher value is better. Not allowed with a built-in metric (their direction is known)",
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
