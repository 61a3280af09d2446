"""What the policy reads and returns: the signals of one batch, the decision, and the state it keeps
between batches (plain JSON of bounded size when stored; restoring it never executes code)."""

from __future__ import annotations

import base64
import zlib
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from retrainer.exceptions import PolicyStateError
from retrainer.policy.detectors import DETECTORS, build_detector, detector_stats, restore_detector

if TYPE_CHECKING:
    import numpy as np

    from retrainer.policy.benefit import Benefit


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
    # the champion's metric minus the model it replaced on this batch's labels (metric units, positive =
    # worse); None when the champion was not promoted over another or did not serve the labelled batch
    versus_replaced: float | None = None


STATE_FORMAT = "retrainer.policy_state/2"


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
    # promotions judged (judge): the champion being judged, its gaps so far, losing promotions in a row
    judge_model: str | None = None
    judge_gaps: tuple[float, ...] = ()
    losing_streak: int = 0

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
        "judge_model": (str, type(None)),
        "losing_streak": (int,),
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
    "judge_gaps",
)


def _logs_from_json(data: dict[str, Any]) -> dict[str, Any]:
    """The control-chart logs as tuples, each entry checked: (model, number) pairs or numbers."""
    out = dict(data)
    try:
        for k in ("metric_log", "estimate_log", "drift_log"):
            if k in out:
                out[k] = tuple((_str(m), _num(v)) for m, v in out[k])
        for k in ("baseline_values", "estimate_baseline_values", "drift_baseline_values", "judge_gaps"):
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
    rollback: bool = False  # the champion's promotion was judged as losing: go back to the model it replaced

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def verdict(self) -> str:
        if self.retrain:
            return "retrain"
        return "suppressed" if self.suppressed_by else "no_retrain"
