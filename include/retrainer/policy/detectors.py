"""Error-stream change detection (river): the per-row errors, the detectors, and their statistics as
bounded plain JSON (so a stored policy state restores a detector exactly and never executes code)."""

from __future__ import annotations

import base64
import math
import zlib
from typing import TYPE_CHECKING, Any

from retrainer.exceptions import PolicyStateError

if TYPE_CHECKING:
    import numpy as np

    from retrainer.config import ErrorDetectorTrigger

DETECTORS = ("adwin", "page_hinkley", "ddm")


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
