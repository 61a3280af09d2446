"""`triggers`: the signals of the trigger policy, how they combine, and their timing."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from retrainer.config.schema.base import TRIGGER_SIGNALS, _Strict


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
