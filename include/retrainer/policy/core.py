"""The trigger policy: per-signal thresholds, an error-stream change detector, a combination rule,
cooldown, hysteresis and an optional follow-up refit.

Pure functions over plain data, so the monitor DAG, the CLI and the backtest share one implementation:
:func:`step` is the single entry point both call per batch (feed the detector, decide, advance the state).
:func:`decide` returns a :class:`Decision` whose ``reasons`` say, in words, which signals crossed which
thresholds; ``suppressed_by`` says why a firing decision did not request a retrain.
"""

from __future__ import annotations

import base64
import copy
import math
import zlib
from dataclasses import asdict, dataclass, field, replace
from itertools import pairwise
from typing import TYPE_CHECKING, Any

from retrainer.config import TRIGGER_SIGNALS, PerformanceTrigger
from retrainer.exceptions import PolicyStateError
from retrainer.ml.metrics import worse_by, worse_by_units
from retrainer.policy.benefit import Benefit
from retrainer.policy.benefit import fired as benefit_vote

if TYPE_CHECKING:
    import numpy as np

    from retrainer.config import ErrorDetectorTrigger, TriggerConfig

SIGNALS = TRIGGER_SIGNALS
FOLLOW_UP = "follow_up"
MAX_AGE = "max_age"


@dataclass(frozen=True)
class Signals:
    """Everything measured on one batch (None = not measured)."""

    data_drift_share: float | None = None
    drifted_columns: tuple[str, ...] = ()
    prediction_drift: float | None = None
    metric_name: str | None = None
    metric_value: float | None = None
    metric_reference: float | None = None
    lower_is_better: bool = True
    labelled_rows: int = 0
    flagged_rate: float | None = None
    has_champion: bool = True
    error_change: bool | None = None  # the error-stream detector saw a change on this batch's labels
    error_change_detail: str = ""
    # the champion's estimated metric on this (possibly unlabelled) batch: CBPE / DLE
    estimated_value: float | None = None
    estimate_method: str = ""
    # filled in by step() from the policy state (control chart and cost-aware signals)
    metric_baseline: float | None = None  # the champion's own baseline (first labelled batches)
    metric_noise: float | None = None  # the stream's per-batch noise (robust standard deviation)
    estimate_baseline: float | None = None
    estimate_noise: float | None = None
    metric_cusum: float | None = None  # cusum mode: the champion's sum before this batch (noise units)
    drift_baseline: float | None = None  # prediction drift in control mode: the champion's first value
    drift_noise: float | None = None  # ... and the distance's batch-to-batch noise
    drift_above: tuple[int, int] | None = None  # auto mode: (recent batches at or above threshold, seen)
    previous_baseline: float | None = None  # the predecessor's first labelled batch (predecessor_z)
    requested_by_champion: bool = False  # a retrain was already requested while this champion served
    benefit: Benefit | None = None  # a candidate against the champion on the latest labels (benefit signal)


STATE_FORMAT = "retrainer.policy_state/2"
DETECTORS = ("adwin", "page_hinkley", "ddm")


@dataclass(frozen=True)
class PolicyState:
    """What the policy remembers between batches.

    ``batches_since_request``: batches after the last retrain request (None = never); ``armed``: False
    after a request until ``hysteresis_batches`` consecutive quiet batches were seen (``quiet_batches``);
    ``follow_up_due``: the next batch refits once more; ``served``: batches the current champion has been
    in service, this one included (``max_age_batches``); ``detector``: the river detector watching the
    errors of model ``detector_model`` (a new model gets a fresh detector). ``detector_spec`` (method and
    params) and the detector's own statistics (:func:`detector_stats`: a few numbers, or ADWIN's
    compressed window, whatever the number of errors it was fed) rebuild the detector exactly, so the
    stored state is plain JSON of bounded size: restoring it never executes code.
    """

    batches_since_request: int | None = None
    armed: bool = True
    quiet_batches: int = 0
    follow_up_due: bool = False
    served: int = 0
    detector: Any = field(default=None, compare=False, repr=False)
    detector_model: str | None = None
    requested_model: str | None = None  # the model in service when the last request was made
    # control chart: recent (model, metric) per labelled batch, and the current champion's baseline
    metric_log: tuple[tuple[str, float], ...] = ()
    baseline_model: str | None = None
    baseline_values: tuple[float, ...] = ()
    previous_baseline: float | None = None  # the first labelled batch of the champion before this one
    estimate_log: tuple[tuple[str, float], ...] = ()
    estimate_baseline_values: tuple[float, ...] = ()
    cusum: float = 0.0  # cusum mode: the champion's running sum of noise-scaled worsening
    credits: float | None = None  # retrain budget: credits saved (None = not started: one credit)
    drift_log: tuple[tuple[str, float], ...] = ()  # prediction drift in control mode: (model, distance)
    drift_baseline_values: tuple[float, ...] = ()
    detector_spec: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON form stored with each monitor decision (the detector as its spec plus its statistics)."""
        out = {k: v for k, v in asdict(self).items() if k not in ("detector", "detector_spec")}
        for k in LOG_FIELDS:
            out[k] = [list(v) if isinstance(v, tuple) else v for v in out[k]]
        out["format"] = STATE_FORMAT
        detector = None
        if self.detector_spec is not None:
            fresh = self.detector is None  # a spec without a detector: nothing fed yet
            live = build_detector(**self.detector_spec) if fresh else self.detector
            detector = {**self.detector_spec, "stats": detector_stats(self.detector_spec["method"], live)}
        out["detector"] = detector
        return out

    @classmethod
    def from_dict(cls, data: Any) -> PolicyState:
        """Inverse of :meth:`to_dict`. Anything else (an older pickled detector, unknown keys, wrong
        types) raises :class:`PolicyStateError`: the content is checked, never executed."""
        if not isinstance(data, dict) or data.get("format") != STATE_FORMAT:
            raise PolicyStateError(f"not a {STATE_FORMAT} document (format {_peek(data, 'format')!r})")
        data = dict(data)
        data.pop("format")
        blob = data.pop("detector", None)
        unknown = sorted(set(data) - set(cls.__dataclass_fields__))
        if unknown:
            raise PolicyStateError(f"unknown keys {unknown}")
        _check_types(data)
        data = _logs_from_json(data)
        if blob is None:
            return cls(**data)
        if not isinstance(blob, dict) or set(blob) not in ({"method", "params", "stats"}, LEGACY_DETECTOR):
            raise PolicyStateError("detector must be {method, params, stats}")
        method, params = blob["method"], blob["params"]
        if method not in DETECTORS:
            raise PolicyStateError(f"unknown detector method {method!r}")
        if not isinstance(params, dict) or not all(
            isinstance(k, str) and isinstance(v, int | float | bool) for k, v in params.items()
        ):
            raise PolicyStateError("detector params must be a mapping of names to numbers")
        spec = {"method": method, "params": params}
        if "stats" in blob:
            detector = restore_detector(method, params, blob["stats"])
        else:  # states written before the statistics: the whole error stream, replayed once
            detector = build_detector(method, params)
            for e in _legacy_errors(blob):
                detector.update(float(e))
        return cls(**data, detector=detector, detector_spec=spec)


LEGACY_DETECTOR = {"method", "params", "errors", "n"}


def _legacy_errors(blob: dict[str, Any]) -> np.ndarray:
    import numpy as np

    try:
        raw = zlib.decompress(base64.b64decode(blob["errors"], validate=True))
        errors = np.frombuffer(raw, dtype="<f8").astype(float)
    except (ValueError, TypeError, zlib.error) as exc:
        raise PolicyStateError(f"detector errors unreadable: {exc}") from exc
    if errors.size != blob["n"]:
        raise PolicyStateError(f"detector error stream has {errors.size} values, expected {blob['n']}")
    return errors


def _peek(data: Any, key: str) -> Any:
    return data.get(key) if isinstance(data, dict) else type(data).__name__


def _check_types(data: dict[str, Any]) -> None:
    expected = {
        "batches_since_request": (int, type(None)),
        "armed": (bool,),
        "quiet_batches": (int,),
        "follow_up_due": (bool,),
        "served": (int,),
        "detector_model": (str, type(None)),
        "requested_model": (str, type(None)),
        "baseline_model": (str, type(None)),
        "cusum": (int, float),
        "previous_baseline": (int, float, type(None)),
        "credits": (int, float, type(None)),
        **{k: (list, tuple) for k in LOG_FIELDS},
    }
    for key, value in data.items():
        if not isinstance(value, expected[key]):
            raise PolicyStateError(f"{key} has type {type(value).__name__}")


LOG_FIELDS = (
    "metric_log",
    "estimate_log",
    "baseline_values",
    "estimate_baseline_values",
    "drift_log",
    "drift_baseline_values",
)


def _logs_from_json(data: dict[str, Any]) -> dict[str, Any]:
    """The control-chart logs as tuples, each entry checked: (model, number) pairs or numbers."""
    out = dict(data)
    try:
        for k in ("metric_log", "estimate_log", "drift_log"):
            if k in out:
                out[k] = tuple((_str(m), _num(v)) for m, v in out[k])
        for k in ("baseline_values", "estimate_baseline_values", "drift_baseline_values"):
            if k in out:
                out[k] = tuple(_num(v) for v in out[k])
    except (TypeError, ValueError) as exc:
        raise PolicyStateError(f"control-chart log unreadable: {exc}") from exc
    return out


def _str(v: Any) -> str:
    if not isinstance(v, str):
        raise TypeError(f"expected a model id, got {type(v).__name__}")
    return v


def _num(v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise TypeError(f"expected a number, got {type(v).__name__}")
    return float(v)


@dataclass
class Decision:
    retrain: bool
    reasons: list[str] = field(default_factory=list)
    fired: list[str] = field(default_factory=list)
    suppressed_by: str | None = None
    score: float = 0.0
    rule_met: bool = False  # the combination rule fired (before cooldown and hysteresis)
    details: dict[str, float] = field(default_factory=dict)  # the numbers behind the performance/cost signals

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def verdict(self) -> str:
        if self.retrain:
            return "retrain"
        return "suppressed" if self.suppressed_by else "no_retrain"


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
    if fires and in_cooldown:
        decision.retrain = False
        decision.suppressed_by = (
            f"cooldown: batch {gap} after the last request, within cooldown_batches={t.cooldown_batches}"
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
    if t.max_age_batches is not None and not decision.retrain and not in_cooldown and age > t.max_age_batches:
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


# -- error-stream change detection (river) ----------------------------------------------------------
def error_stream(task: str, y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    """Per-row errors fed to the detector: 0/1 misclassification, or absolute error for regression."""
    import numpy as np

    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if task == "classification":
        return (y_true != y_pred).astype(float)
    return np.abs(y_true.astype(float) - y_pred.astype(float))


def build_detector(method: str, params: dict[str, Any]) -> Any:
    """A fresh river detector (``river.drift.ADWIN``, ``PageHinkley``, ``binary.DDM``)."""
    from river import drift
    from river.drift import binary

    klass = {"adwin": drift.ADWIN, "page_hinkley": drift.PageHinkley, "ddm": binary.DDM}[method]
    return klass(**params)


def new_detector(cfg: ErrorDetectorTrigger) -> Any:
    """A fresh river detector as configured."""
    return build_detector(cfg.method, dict(cfg.params))


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


# what each detector needs to go on exactly where it stopped: its running statistics (river's attributes;
# each detector starts afresh on the update after a change, so nothing older matters)
DETECTOR_FIELDS = {
    "page_hinkley": ("_sum_increase", "_sum_decrease", "_min_increase", "_max_decrease"),
    "ddm": ("_warning_detected", "_p_min", "_s_min", "_ps_min"),
    "adwin": (),
}
DETECTOR_MEAN = {"page_hinkley": "_x_mean", "ddm": "_p"}  # a running mean: (count, value)
ADWIN_MAX_BYTES = 1 << 20  # ADWIN's window is O(log n) buckets: ~1.3 kB after millions of errors


def _json_num(v: Any) -> Any:
    """A float as JSON: non-finite values as strings (JSON has no infinity)."""
    return v if not isinstance(v, float) or math.isfinite(v) else repr(v)


def detector_stats(method: str, detector: Any) -> dict[str, Any]:
    """The detector's statistics as plain JSON, bounded whatever it was fed (see :func:`restore_detector`)."""
    out: dict[str, Any] = {"drift_detected": bool(detector._drift_detected)}
    out.update({f.lstrip("_"): _json_num(getattr(detector, f)) for f in DETECTOR_FIELDS[method]})
    if method in DETECTOR_MEAN:
        mean = getattr(detector, DETECTOR_MEAN[method])
        out["mean"] = [_json_num(float(mean.n)), _json_num(float(mean._mean))]
    if method == "adwin":  # the Rust window's own serialised form (buckets of sums and variances)
        out["window"] = base64.b64encode(zlib.compress(detector._helper.__getstate__())).decode()
    return out


def _stat(value: Any, name: str) -> Any:
    if isinstance(value, str) and value in ("inf", "-inf", "nan"):
        return float(value)
    if value is None or isinstance(value, bool | int | float):
        return value
    raise PolicyStateError(f"detector statistic {name} has type {type(value).__name__}")


def restore_detector(method: str, params: dict[str, Any], stats: Any) -> Any:
    """Inverse of :func:`detector_stats`: a detector that goes on exactly as the one that was stored.
    Values are checked, never executed; anything else raises :class:`PolicyStateError`."""
    names = {"drift_detected", *(f.lstrip("_") for f in DETECTOR_FIELDS[method])}
    names |= {"mean"} if method in DETECTOR_MEAN else {"window"} if method == "adwin" else set()
    if not isinstance(stats, dict) or set(stats) != names:
        raise PolicyStateError(f"{method} statistics must have the keys {sorted(names)}")
    detector = build_detector(method, params)
    detector._drift_detected = bool(_stat(stats["drift_detected"], "drift_detected"))
    for f in DETECTOR_FIELDS[method]:
        setattr(detector, f, _stat(stats[f.lstrip("_")], f))
    if method in DETECTOR_MEAN:
        pair = stats["mean"]
        if not isinstance(pair, list) or len(pair) != 2:
            raise PolicyStateError("detector mean must be [count, value]")
        mean = getattr(detector, DETECTOR_MEAN[method])
        mean.n, mean._mean = (float(_stat(v, "mean")) for v in pair)
    if method == "adwin":
        _restore_window(detector, stats["window"])
    return detector


def _restore_window(detector: Any, window: Any) -> None:
    try:  # bounded: a crafted blob cannot inflate to more than we would ever write
        raw = zlib.decompressobj().decompress(base64.b64decode(window, validate=True), ADWIN_MAX_BYTES + 1)
    except (ValueError, TypeError, zlib.error) as exc:
        raise PolicyStateError(f"ADWIN window unreadable: {exc}") from exc
    if len(raw) > ADWIN_MAX_BYTES:
        raise PolicyStateError(f"ADWIN window of {len(raw)} bytes: not one we wrote")
    try:
        detector._helper.__setstate__(raw)
    except BaseException as exc:  # river's Rust side panics (PanicException) on bytes it cannot read
        if type(exc).__name__ != "PanicException" and not isinstance(exc, Exception):
            raise
        raise PolicyStateError(f"ADWIN window unreadable: {str(exc)[:200]}") from None
    if detector._helper.__getstate__() != raw:  # the form reads back as written, or it is not ours
        raise PolicyStateError("ADWIN window does not read back as it was written")


# -- control chart: the champion's baseline and the stream's per-batch noise ------------------------------
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
    decision = decide(signals, t, state)
    new = next_state(remember(state, signals, t, model_id), decision, t)
    if t.error_detector is not None:
        spec = {"method": t.error_detector.method, "params": dict(t.error_detector.params)}
        new = replace(new, detector=detector, detector_model=model_id, detector_spec=spec)
    new = replace(new, served=state.served)
    if decision.retrain:
        new = replace(new, requested_model=model_id)
    return decision, new, signals
