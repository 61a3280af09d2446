"""The trigger policy: per-signal thresholds, an error-stream change detector, a combination rule,
cooldown, hysteresis and an optional follow-up refit.

Pure functions over plain data, so the monitor DAG, the CLI and the backtest share one implementation:
:func:`step` is the single entry point both call per batch (feed the detector, decide, advance the state).
:func:`decide` returns a :class:`Decision` whose ``reasons`` say, in words, which signals crossed which
thresholds; ``suppressed_by`` says why a firing decision did not request a retrain.
"""

from __future__ import annotations

import copy
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from retrainer.config import TRIGGER_SIGNALS, PerformanceTrigger
from retrainer.ml.metrics import worse_by, worse_by_units
from retrainer.policy.benefit import fired as benefit_vote
from retrainer.policy.calibration import _watch, calibrate, cusum_step, remember
from retrainer.policy.detectors import new_detector
from retrainer.policy.judge import Verdict, backoff_batches, judge
from retrainer.policy.state import Decision, PolicyState, Signals

if TYPE_CHECKING:
    import numpy as np

    from retrainer.config import TriggerConfig

SIGNALS = TRIGGER_SIGNALS
FOLLOW_UP = "follow_up"
MAX_AGE = "max_age"


def evaluate_signals(s: Signals, t: TriggerConfig, details: dict[str, float] | None = None) -> dict[str, str]:
    """Signals that crossed their thresholds, each with a human-readable reason (the numbers behind the
    performance and cost signals go to ``details``)."""
    details = {} if details is None else details
    fired: dict[str, str] = {}
    if t.data_drift and s.data_drift_share is not None and s.data_drift_share >= t.data_drift.share:
        cols = ", ".join(s.drifted_columns[:6])
        fired["data_drift"] = f"data_drift {s.data_drift_share:.2f} >= {t.data_drift.share:.2f} ({cols})"
    pd = t.prediction_drift
    if pd and s.prediction_drift is not None:
        if _drift_calibrated(s, t) and s.drift_noise is not None and s.drift_baseline is not None:
            grown = s.prediction_drift - s.drift_baseline
            details.update(drift_baseline=s.drift_baseline, drift_noise=s.drift_noise)
            why = ""
            if pd.mode == "auto" and s.drift_above is not None:
                why = f" (at or above {pd.threshold:.3f} on {s.drift_above[0]} of the last {s.drift_above[1]} batches)"
            if grown > pd.z * s.drift_noise:
                fired["prediction_drift"] = (
                    f"prediction_drift {s.prediction_drift:.3f} vs champion baseline {s.drift_baseline:.3f}: "
                    f"{grown:+.3f} > {pd.z:g} x noise {s.drift_noise:.3g}{why}"
                )
        elif s.prediction_drift >= pd.threshold:
            fired["prediction_drift"] = f"prediction_drift {s.prediction_drift:.3f} >= {pd.threshold:.3f}"
    if t.performance:
        fired.update(_performance(s, t, details))
    if t.flags and s.flagged_rate is not None and s.flagged_rate >= t.flags.threshold:
        fired["flags"] = f"flagged_rate {s.flagged_rate:.1%} >= {t.flags.threshold:.1%}"
    if t.error_detector and s.error_change:
        fired["error_detector"] = f"{t.error_detector.method} detected a change in the error stream" + (
            f" ({s.error_change_detail})" if s.error_change_detail else ""
        )
    if t.cost:
        fired.update(_cost(s, t, details))
    if t.benefit:
        fired.update(benefit_vote(s.benefit, t.benefit, details))
    return fired


AUTO_MIN_BATCHES = 8  # auto mode: batches seen before the share above the threshold is trusted


def _drift_calibrated(s: Signals, t: TriggerConfig) -> bool:
    """Whether prediction drift is judged against the stream's own noise on this batch."""
    pd = t.prediction_drift
    if pd is None:
        return False
    if pd.mode == "control":
        return True
    if pd.mode == "auto" and s.drift_above is not None:
        above, seen = s.drift_above
        return seen >= AUTO_MIN_BATCHES and above >= pd.auto_share * seen
    return False


def _labelled_enough(s: Signals, t: TriggerConfig) -> bool:
    p = _watch(t)
    return s.labelled_rows >= (p.min_labelled_rows if p else 1)


def degradation(s: Signals, t: TriggerConfig) -> tuple[float | None, str]:
    """The champion's worsening since its baseline in metric units (positive = worse), and its source.

    Realised (labelled batch) against the champion's baseline (control mode) or holdout metric; with
    ``performance.use_estimate`` the estimated metric against its own baseline too, whichever is worse.
    """
    found: list[tuple[float, str]] = []
    base = s.metric_baseline if s.metric_baseline is not None else s.metric_reference
    if s.metric_value is not None and base is not None and _labelled_enough(s, t):
        found.append((worse_by_units(s.metric_value, base, s.lower_is_better), "realised"))
    use_est = t.performance is not None and t.performance.use_estimate
    if use_est and s.estimated_value is not None and s.estimate_baseline is not None:
        found.append((worse_by_units(s.estimated_value, s.estimate_baseline, s.lower_is_better), "estimated"))
    if not found:
        return None, ""
    return max(found)


def _performance(s: Signals, t: TriggerConfig, details: dict[str, float]) -> dict[str, str]:
    p = t.performance
    assert p is not None
    name = s.metric_name or "metric"
    out: dict[str, str] = {}
    if s.metric_value is not None and s.metric_reference is not None and _labelled_enough(s, t):
        details["metric_value"] = s.metric_value
        details["metric_reference"] = s.metric_reference
        step = cusum_step(s, p)
        if step is not None:
            total, units = step
            details.update(
                metric_baseline=s.metric_baseline or 0.0,
                metric_noise=s.metric_noise or 0.0,
                worse_units=units,
                cusum=total,
            )
            if total > p.cusum_h:
                out["performance"] = (
                    f"{name} {s.metric_value:.4g} vs champion baseline {s.metric_baseline:.4g}: worsening "
                    f"summed over its batches {total:.2f} > {p.cusum_h:g} x stream noise {s.metric_noise:.3g}"
                )
        elif p.mode == "control" and s.metric_noise is not None and s.metric_baseline is not None:
            units = worse_by_units(s.metric_value, s.metric_baseline, s.lower_is_better)
            details.update(metric_baseline=s.metric_baseline, metric_noise=s.metric_noise, worse_units=units)
            if units > p.z * s.metric_noise:
                out["performance"] = (
                    f"{name} {s.metric_value:.4g} vs champion baseline {s.metric_baseline:.4g}: "
                    f"{units:+.4g} worse > {p.z:g} x stream noise {s.metric_noise:.3g}"
                )
        else:
            change = worse_by(s.metric_value, s.metric_reference, s.lower_is_better)
            details["worse_relative"] = change
            if change > p.max_degradation:
                out["performance"] = (
                    f"{name} {s.metric_value:.4g} vs champion {s.metric_reference:.4g}: "
                    f"{change:+.0%} worse > {p.max_degradation:.0%}"
                )
    if p.predecessor_z is not None and "performance" not in out:
        out.update(_behind_predecessor(s, p, details))
    if s.estimated_value is not None:
        details["estimated_value"] = s.estimated_value
    if (
        p.use_estimate
        and "performance" not in out
        and s.estimated_value is not None
        and s.estimate_baseline is not None
        and s.estimate_noise is not None
    ):
        units = worse_by_units(s.estimated_value, s.estimate_baseline, s.lower_is_better)
        details.update(estimate_baseline=s.estimate_baseline, estimate_noise=s.estimate_noise)
        if units > p.z * s.estimate_noise:
            out["performance"] = (
                f"estimated {name} ({s.estimate_method}) {s.estimated_value:.4g} vs its baseline "
                f"{s.estimate_baseline:.4g}: {units:+.4g} worse > {p.z:g} x noise {s.estimate_noise:.3g}"
            )
    return out


def _behind_predecessor(s: Signals, p: PerformanceTrigger, details: dict[str, float]) -> dict[str, str]:
    """``predecessor_z``: the champion's first labelled batch against its predecessor's first one."""
    assert p.predecessor_z is not None
    if s.requested_by_champion or None in (s.previous_baseline, s.metric_baseline, s.metric_noise):
        return {}
    assert s.previous_baseline is not None and s.metric_baseline is not None and s.metric_noise is not None
    behind = worse_by_units(s.metric_baseline, s.previous_baseline, s.lower_is_better)
    details.update(previous_baseline=s.previous_baseline, behind_predecessor=behind)
    if behind <= p.predecessor_z * s.metric_noise:
        return {}
    name = s.metric_name or "metric"
    return {
        "performance": f"{name} on the champion's first batch {s.metric_baseline:.4g} vs its predecessor's "
        f"{s.previous_baseline:.4g}: {behind:+.4g} worse > {p.predecessor_z:g} x stream noise "
        f"{s.metric_noise:.3g} (trained mostly before a change: refit on newer data)"
    }


def _cost(s: Signals, t: TriggerConfig, details: dict[str, float]) -> dict[str, str]:
    c = t.cost
    assert c is not None
    worse, source = degradation(s, t)
    if worse is None:
        return {}
    gain = c.value_per_unit * max(worse, 0.0) * c.horizon_batches
    details.update(
        degradation_units=worse, expected_gain=gain, retrain_cost=c.retrain_cost, horizon=c.horizon_batches
    )
    if gain <= c.retrain_cost:
        return {}
    return {
        "cost": f"expected gain {gain:.4g} = {max(worse, 0):.4g} {s.metric_name or 'metric'} units "
        f"({source}) x {c.value_per_unit:g} per unit x {c.horizon_batches} batches > retrain cost "
        f"{c.retrain_cost:g}"
    }


def combine(fired: dict[str, str], t: TriggerConfig) -> tuple[bool, float]:
    """Apply the combination rule: (fires, score)."""
    if t.combine == "weighted":
        score = sum(t.weights.get(name, 1.0) for name in fired)
        return score >= t.weighted_threshold, score
    enabled = [n for n in SIGNALS if getattr(t, n) is not None]
    need = 1 if t.combine == "any" else min(t.k, max(len(enabled), 1))
    return len(fired) >= need, float(len(fired))


def decide(s: Signals, t: TriggerConfig, state: PolicyState | None = None) -> Decision:
    """Decide whether this batch should request a retrain."""
    state = state or PolicyState()
    if not s.has_champion:
        return Decision(True, ["no champion model yet: train the first one"], ["no_champion"], rule_met=True)
    details: dict[str, float] = {}
    fired = evaluate_signals(s, t, details)
    fires, score = combine(fired, t)
    decision = Decision(
        fires, list(fired.values()), list(fired), score=score, rule_met=fires, details=details
    )
    gap = None if state.batches_since_request is None else state.batches_since_request + 1
    in_cooldown = gap is not None and gap <= t.cooldown_batches
    hold = backoff_batches(state, t)
    in_backoff = gap is not None and gap <= hold
    if fires and in_cooldown:
        decision.retrain = False
        decision.suppressed_by = (
            f"cooldown: batch {gap} after the last request, within cooldown_batches={t.cooldown_batches}"
        )
    elif fires and in_backoff:
        decision.retrain = False
        decision.suppressed_by = (
            f"back-off: the last {state.losing_streak} promotions lost to the models they replaced on the "
            f"batches after them; requests held for {hold} batches after the last one (this is batch {gap})"
        )
    elif fires and t.budget_share is not None and _credits(state, t) < 1:
        decision.retrain = False
        decision.suppressed_by = (
            f"retrain budget: {_credits(state, t):.2f} credits, one needed "
            f"(budget_share={t.budget_share:g} per batch)"
        )
    elif fires and not state.armed:
        decision.retrain = False
        decision.suppressed_by = (
            f"hysteresis: {state.quiet_batches} quiet batches since the last request, "
            f"need hysteresis_batches={t.hysteresis_batches} before firing again"
        )
    age = _age(state)
    held = in_cooldown or in_backoff
    if t.max_age_batches is not None and not decision.retrain and not held and age > t.max_age_batches:
        decision.retrain = True
        decision.suppressed_by = None
        decision.fired.append(MAX_AGE)
        decision.reasons.append(
            f"max age: {age} batches without a retrain request > max_age_batches={t.max_age_batches}"
        )
    if state.follow_up_due and not decision.retrain:  # refit once more: the last window mixed regimes
        decision.retrain = True
        decision.suppressed_by = None
        decision.fired.append(FOLLOW_UP)
        decision.reasons.append("follow-up refit one batch after a triggered retrain (follow_up_refit)")
    return decision


def _age(state: PolicyState) -> int:
    """Batches since the champion took over or since the last request, whichever is fewer (this batch
    included)."""
    if state.batches_since_request is None:
        return state.served
    return min(state.served, state.batches_since_request + 1)


def _credits(state: PolicyState, t: TriggerConfig) -> float:
    """Retrain-budget credits available on this batch (this batch's share included)."""
    assert t.budget_share is not None
    saved = 1.0 - t.budget_share if state.credits is None else state.credits
    return min(t.budget_burst, saved + t.budget_share)


def next_state(state: PolicyState, decision: Decision, t: TriggerConfig | None = None) -> PolicyState:
    """State after a batch: a request resets the counters (and disarms under hysteresis); any other
    batch advances them."""
    hysteresis = t.hysteresis_batches if t is not None else 0
    keep = {
        "detector": state.detector,
        "detector_model": state.detector_model,
        "requested_model": state.requested_model,
        "metric_log": state.metric_log,
        "baseline_model": state.baseline_model,
        "baseline_values": state.baseline_values,
        "previous_baseline": state.previous_baseline,
        "estimate_log": state.estimate_log,
        "estimate_baseline_values": state.estimate_baseline_values,
        "cusum": state.cusum,
        "drift_log": state.drift_log,
        "drift_baseline_values": state.drift_baseline_values,
        "credits": None if t is None or t.budget_share is None else _credits(state, t) - decision.retrain,
        "detector_spec": state.detector_spec,
        "judge_model": state.judge_model,
        "judge_gaps": state.judge_gaps,
        "losing_streak": state.losing_streak,
    }
    if decision.retrain:
        follow_up = bool(t and t.follow_up_refit) and FOLLOW_UP not in decision.fired
        follow_up = follow_up and "no_champion" not in decision.fired
        return PolicyState(batches_since_request=0, armed=hysteresis == 0, follow_up_due=follow_up, **keep)
    quiet = 0 if decision.rule_met else state.quiet_batches + 1
    return PolicyState(
        batches_since_request=None
        if state.batches_since_request is None
        else state.batches_since_request + 1,
        armed=state.armed or quiet >= hysteresis,
        quiet_batches=quiet,
        **keep,
    )


def _judged(decision: Decision, verdict: Verdict, t: TriggerConfig, metric: str, streak: int) -> None:
    """A promotion judged on this batch: its numbers in the details; a lost one (still serving) rolled back
    when the judge says so, instead of any retrain on this batch."""
    decision.details.update(
        promotion_gap=verdict.mean_gap, promotion_lost=float(verdict.lost), losing_streak=streak
    )
    if not (verdict.current and verdict.lost and t.judge is not None and t.judge.rollback):
        return
    text = f"rollback: {verdict.describe(metric)}"
    if decision.retrain:
        decision.suppressed_by = f"{text}: back to that model instead of a retrain"
    decision.retrain = False
    decision.rollback = True
    decision.reasons.append(text)


def feed_detector(
    state: PolicyState, t: TriggerConfig, errors: np.ndarray | None, model_id: str | None
) -> tuple[bool | None, str, Any]:
    """Feed this batch's errors to the detector of ``model_id``: (change seen, detail, detector)."""
    if t.error_detector is None:
        return None, "", None
    if state.detector is None or state.detector_model != model_id:
        detector = new_detector(t.error_detector)
    else:
        detector = copy.deepcopy(state.detector)  # states are values: never mutate the previous one
    if errors is None or len(errors) == 0:
        return None, "", detector
    changes = 0
    for e in errors:
        detector.update(float(e))
        changes += bool(detector.drift_detected)
    return changes > 0, f"{changes} change point(s) in {len(errors)} labelled rows", detector


def step(
    signals: Signals,
    t: TriggerConfig,
    state: PolicyState,
    *,
    errors: np.ndarray | None = None,
    model_id: str | None = None,
) -> tuple[Decision, PolicyState, Signals]:
    """One batch through the policy, as the monitor DAG and the backtest both run it.

    Feeds ``errors`` (labelled rows of ``model_id``'s predictions) to the change detector, adds the
    control-chart numbers (the champion's baseline, the stream's noise) from the state, decides, and
    returns (decision, next state, the signals including the detector's verdict and those numbers).
    """
    if not state.armed and model_id is not None and state.requested_model == model_id:
        # the request did not replace the model (rejected, or not finished): the event is not handled
        # yet, so hysteresis must not hold the trigger back (cooldown still spaces the requests)
        state = replace(state, armed=True)
    state = replace(state, served=(state.served if state.baseline_model == model_id else 0) + 1)
    change, detail, detector = feed_detector(state, t, errors, model_id)
    signals = replace(signals, error_change=change, error_change_detail=detail)
    signals = calibrate(signals, t, state, model_id)
    state, verdict = judge(state, signals, t, model_id)
    decision = decide(signals, t, state)
    if verdict is not None:
        _judged(decision, verdict, t, signals.metric_name or "metric", state.losing_streak)
    new = next_state(remember(state, signals, t, model_id), decision, t)
    if t.error_detector is not None:
        spec = {"method": t.error_detector.method, "params": dict(t.error_detector.params)}
        new = replace(new, detector=detector, detector_model=model_id, detector_spec=spec)
    new = replace(new, served=state.served)
    if decision.retrain:
        new = replace(new, requested_model=model_id)
    return decision, new, signals
