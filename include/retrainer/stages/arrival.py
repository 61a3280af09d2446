"""Batch arrival by announcement: which files in ``landing/<model>/`` to announce, and when.

The triggerer polls each model's landing folder through :class:`LandingWatch` (see
:mod:`retrainer.triggers`); every announcement becomes an Airflow asset event that starts one run of the
model's monitor DAG, whose first task claims a batch. The claim stays the single point of truth: an
announcement only says "there may be a batch to claim". A run that finds nothing to claim is skipped, so a
replayed or duplicate announcement never processes a batch twice.

What is announced (the delivery contract of :mod:`retrainer.storage.local` decides what is delivered):

* a delivered file (not temporary, settled for ``RETRAINER_SETTLE_SECONDS``) the watch has not announced
  yet, once per identity (name, size, modification time): a file that stays in landing is not announced
  again, one that is replaced (new size or time) is;
* after a run took an announced file out of landing, the oldest announced file still there, once: Airflow
  merges asset events that arrive while a run of the DAG is active into one run, so without this a second
  batch landing beside a first would wait for the next delivery;
* a batch in processing whose claim is older than ``RETRAINER_STUCK_AFTER_MINUTES`` (its run died), once
  per claim, so a run resumes it without waiting for the next delivery.

:func:`check_overdue` is the other side of arrival: the ``no_batch`` alert when nothing arrived for the
model's ``alerts.no_batch_within``.

The memory is the watch's own (in the triggerer's process): after a triggerer restart every delivered file
is announced once more, which costs one skipped run per file already claimed, nothing else.
"""

from __future__ import annotations

import contextlib
import json
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from retrainer import settings
from retrainer.config import duration_hours
from retrainer.storage import BATCH_SUFFIXES, FLAGS_SUFFIX, STAGES, DataRoot, write_json

if TYPE_CHECKING:
    from pathlib import Path

    from retrainer.config import ModelConfig

Identity = tuple[int, int]  # (size in bytes, modification time in ns)


@dataclass
class LandingWatch:
    """What one model's landing folder holds that has not been announced yet (see the module docstring)."""

    root: Path
    model: str
    settle: float | None = None  # None: RETRAINER_SETTLE_SECONDS, read at each poll
    announced: dict[str, Identity] = field(default_factory=dict)
    stuck_announced: set[tuple[str, str]] = field(default_factory=set)

    def poll(self) -> list[dict[str, Any]]:
        """The announcements due now, oldest file first; each is small JSON for the asset event's extra."""
        dr = DataRoot(self.root, self.model)
        seen = self._delivered(dr)
        gone = [name for name in self.announced if name not in seen]
        for name in gone:  # claimed (or removed): a new file under that name is a new batch
            del self.announced[name]
        out = []
        for name, ident in seen.items():
            before = self.announced.get(name)
            if before != ident:
                out.append(self._announce(name, ident, "landed" if before is None else "replaced"))
        fresh = {a["batch"] for a in out}
        waiting = [n for n in self.announced if n not in fresh]
        if gone and waiting:  # a run took a batch; the event of the next one may have merged into it
            oldest = min(waiting)
            out.append(self._announce(oldest, self.announced[oldest], "still waiting"))
        out.extend(self._stuck(dr))
        return sorted(out, key=lambda a: a["batch"])

    def _announce(self, name: str, ident: Identity, reason: str) -> dict[str, Any]:
        self.announced[name] = ident
        return {
            "model": self.model,
            "batch": name,
            "size": ident[0],
            "mtime_ns": ident[1],
            "reason": reason,
        }

    def _delivered(self, dr: DataRoot) -> dict[str, Identity]:
        """Delivered files in landing by name (the rules the claim applies), with their identity."""
        out = {}
        for p in dr._landed(self.settle):
            with contextlib.suppress(FileNotFoundError):  # claimed meanwhile
                st = p.lstat()
                out[p.name] = (st.st_size, st.st_mtime_ns)
        return out

    def _stuck(self, dr: DataRoot) -> list[dict[str, Any]]:
        out = []
        for row in dr.stuck():
            key = (row["batch"], str(row["claimed_by"]))
            if key not in self.stuck_announced:
                self.stuck_announced.add(key)
                out.append({"model": self.model, "batch": row["batch"], "reason": "stuck in processing"})
        return out


def last_arrival(dr: DataRoot) -> float | None:
    """When the newest batch arrived (its file's time, kept by the renames from landing on), or None."""
    newest = None
    for stage in STAGES:
        folder = dr.dir(stage)
        for p in folder.iterdir() if folder.exists() else []:
            if p.name.endswith(BATCH_SUFFIXES) and not p.name.endswith(FLAGS_SUFFIX):
                with contextlib.suppress(FileNotFoundError):
                    t = p.lstat().st_mtime
                    newest = t if newest is None or t > newest else newest
    return newest


def check_overdue(cfg: ModelConfig, now: float | None = None) -> dict[str, Any] | None:
    """The ``no_batch`` alert due for ``cfg`` now, or None: no batch arrived within
    ``alerts.no_batch_within``. Said once per silence: the last arrival it was said for is remembered in
    ``state/<model>/arrival_alert.json``, so the next alert waits for a batch and a new silence."""
    within = cfg.alerts.no_batch_within
    if within is None:
        return None
    dr = DataRoot(settings.data_root(), cfg.name)
    now = time.time() if now is None else now
    last = last_arrival(dr)
    since = last if last is not None else _first_seen(dr, now)
    if now - since < duration_hours(within) * 3600:
        return None
    marker = dr.state / "arrival_alert.json"
    with contextlib.suppress(OSError, ValueError):
        if json.loads(marker.read_text()).get("last_arrival") == last:
            return None  # already said for this silence
    write_json(marker, {"last_arrival": last, "alerted_at": now})
    when = "no batch has arrived yet" if last is None else f"the last batch arrived {_ago(now - last)} ago"
    return {"reason": f"no batch arrived within {within}: {when}", "last_arrival": last}


def check_interval_seconds(within: str) -> float:
    """How often the no-batch check runs: a quarter of the allowed silence, at least a minute, at most an hour."""
    return min(3600.0, max(60.0, duration_hours(within) * 3600 / 4))


def _first_seen(dr: DataRoot, now: float) -> float:
    """With no batch ever: count the silence from the first check (remembered beside the alert marker)."""
    path = dr.state / "arrival_first_check.json"
    with contextlib.suppress(OSError, ValueError):
        return float(json.loads(path.read_text())["at"])
    write_json(path, {"at": now})
    return now


def _ago(seconds: float) -> str:
    hours = seconds / 3600
    return f"{hours / 24:.1f} days" if hours >= 48 else f"{hours:.1f} hours"
