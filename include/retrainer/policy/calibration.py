"""The control chart: the champion's baseline and the stream's per-batch noise, from the policy state
(:func:`calibrate` before a decision, :func:`remember` after it), and the cusum mode's running sum."""

from __future__ import annotations

from dataclasses import replace
from itertools import pairwise
from typing import TYPE_CHECKING, Any

from retrainer.config import PerformanceTrigger
from retrainer.ml.metrics import worse_by_units

if TYPE_CHECKING:
    from retrainer.config import TriggerConfig
    from retrainer.policy.state import PolicyState, Signals


def cusum_step(s: Signals, p: PerformanceTrigger) -> tuple[float, float] | None:
    """cusum mode on a labelled batch: (the champion's sum after this batch, this batch's worsening in
    metric units), or None when the mode is off or the noise and the champion's own baseline are not
    known yet (the batch that sets the baseline adds nothing; the relative fallback judges it)."""
    if p.mode != "cusum" or s.metric_value is None or s.metric_noise is None or s.metric_baseline is None:
        return None
    if s.metric_cusum is None or s.labelled_rows < p.min_labelled_rows:
        return None
    units = worse_by_units(s.metric_value, s.metric_baseline, s.lower_is_better)
    return max(0.0, s.metric_cusum + units / s.metric_noise - p.cusum_k), units


def noise(log: tuple[tuple[str, float], ...], window: int) -> tuple[float | None, int]:
    """Robust standard deviation of a per-batch metric, from differences of consecutive batches scored by
    the same model over the last ``window`` entries (a trend cancels out of the differences' median
    absolute deviation): (sigma, number of differences)."""
    import numpy as np

    recent = log[-window:]
    diffs = [b[1] - a[1] for a, b in pairwise(recent) if a[0] == b[0]]
    if not diffs:
        return None, 0
    d = np.asarray(diffs, dtype=float)
    mad = float(np.median(np.abs(d - np.median(d))))
    sigma = 1.4826 * mad / np.sqrt(2.0)
    scale = float(np.median(np.abs([v for _, v in recent]))) or 1.0
    return max(sigma, 1e-3 * scale), len(diffs)  # a floor: identical batches must not make any change fire


def _watch(t: TriggerConfig) -> PerformanceTrigger | None:
    """How the metric is watched: ``performance``, or its defaults when only ``cost`` needs the metric."""
    return t.performance or (PerformanceTrigger() if t.cost is not None else None)


def calibrate(signals: Signals, t: TriggerConfig, state: PolicyState, model_id: str | None) -> Signals:
    """The control-chart numbers for this batch (baselines and noise), from the state before it."""
    signals = _calibrate_drift(signals, t, state, model_id)
    p = _watch(t)
    if p is None:
        return signals
    same = state.baseline_model == model_id
    base_vals = state.baseline_values if same else ()
    est_vals = state.estimate_baseline_values if same else ()
    out: dict[str, Any] = {}
    if p.mode != "relative" or t.cost is not None:
        sigma, n = noise(state.metric_log, p.noise_batches)
        out["metric_noise"] = sigma if n >= p.min_noise_points else None
        enough = len(base_vals) >= p.baseline_batches
        out["metric_baseline"] = (
            sum(base_vals[: p.baseline_batches]) / p.baseline_batches if enough else signals.metric_reference
        )
        if p.mode == "cusum":  # the sum starts once the champion's own baseline is known
            out["metric_cusum"] = (state.cusum if same else 0.0) if enough else None
        if p.predecessor_z is not None and enough and same:
            out["previous_baseline"] = state.previous_baseline
            out["requested_by_champion"] = state.requested_model == model_id
    if p.use_estimate and signals.estimated_value is not None:
        sigma, n = noise(state.estimate_log, p.noise_batches)
        out["estimate_noise"] = sigma if n >= p.min_noise_points else None
        # the estimate's own level on the champion's first batches (estimates and realised values differ)
        out["estimate_baseline"] = (
            sum(est_vals[: p.baseline_batches]) / len(est_vals[: p.baseline_batches]) if est_vals else None
        )
    return replace(signals, **out)


DRIFT_NOISE_BATCHES = 26  # recent batches the prediction drift's noise is measured on (control mode)


def _calibrate_drift(signals: Signals, t: TriggerConfig, state: PolicyState, model_id: str | None) -> Signals:
    """Prediction drift in control mode: the champion's first distance and the distance's noise."""
    pd = t.prediction_drift
    if pd is None or pd.mode == "absolute" or signals.prediction_drift is None:
        return signals
    sigma, n = noise(state.drift_log, DRIFT_NOISE_BATCHES)
    same = state.baseline_model == model_id
    base = state.drift_baseline_values[0] if same and state.drift_baseline_values else None
    recent = [v for _, v in state.drift_log]
    above = (sum(v >= pd.threshold for v in recent), len(recent))
    return replace(signals, drift_noise=sigma if n >= 3 else None, drift_baseline=base, drift_above=above)


def _remember_drift(state: PolicyState, signals: Signals, t: TriggerConfig, model_id: str) -> PolicyState:
    pd = t.prediction_drift
    if pd is None or pd.mode == "absolute" or signals.prediction_drift is None:
        return state
    same = state.baseline_model == model_id
    base = state.drift_baseline_values if same else ()
    value = float(signals.prediction_drift)
    return replace(
        state,
        drift_log=(*state.drift_log, (model_id, value))[-DRIFT_NOISE_BATCHES:],
        drift_baseline_values=base or (value,),
    )


def remember(state: PolicyState, signals: Signals, t: TriggerConfig, model_id: str | None) -> PolicyState:
    """Append this batch's realised / estimated metric (and prediction drift, in control mode) to the logs
    and the champion's baselines."""
    if model_id is None:
        return state
    drifted = _remember_drift(state, signals, t, model_id)
    p = _watch(t)
    if p is None:
        return replace(drifted, baseline_model=model_id)
    state = drifted
    same = state.baseline_model == model_id
    base_vals = state.baseline_values if same else ()
    est_vals = state.estimate_baseline_values if same else ()
    keep = max(p.noise_batches, 2)
    metric_log, estimate_log = state.metric_log, state.estimate_log
    step = cusum_step(signals, p)
    cusum = step[0] if step is not None else (state.cusum if same else 0.0)
    if signals.metric_value is not None and signals.labelled_rows >= p.min_labelled_rows:
        metric_log = (*metric_log, (model_id, float(signals.metric_value)))[-keep:]
        if len(base_vals) < p.baseline_batches:
            base_vals = (*base_vals, float(signals.metric_value))
    if signals.estimated_value is not None:
        estimate_log = (*estimate_log, (model_id, float(signals.estimated_value)))[-keep:]
        if len(est_vals) < p.baseline_batches:
            est_vals = (*est_vals, float(signals.estimated_value))
    previous = state.previous_baseline
    if not same and state.baseline_values:
        previous = state.baseline_values[0]
    return replace(
        state,
        metric_log=metric_log,
        estimate_log=estimate_log,
        previous_baseline=previous,
        baseline_model=model_id,
        baseline_values=base_vals,
        estimate_baseline_values=est_vals,
        cusum=cusum,
    )
