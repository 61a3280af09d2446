"""Retention: remove what no window, registered version, pending label or running task needs.

``retrainer gc MODEL [--dry-run]`` and the ``<model>__maintenance`` DAG call :func:`collect`. What it
removes, per the model's ``retention:`` config:

- archived batches that no future training window can read and that ``retention.archive`` no longer
  keeps (data time, so a re-run removes the same files): a batch goes when its newest row is at or before
  both (the newest labelled row - ``training.window``), where the next retrain's window starts whatever
  the label lag, and (the anchor - ``max(training.window, retention.archive)``). The anchor is the newest
  row of the second-newest batch (:func:`archive_anchor`), which no single row or batch stamped far
  ahead can move, and the labelled horizon never goes past it. Batches that still wait for labels
  (unlabelled rows, newer than anchor - ``retention.label_wait``) stay, and while no row is labelled
  nothing leaves the archive;
- snapshots that no registered model version references (``retrainer reproduce`` needs those, so they
  are never removed) and that no retrain has used for ``retention.snapshots``: each retrain step that
  reads a snapshot (or reuses it) renews its time, and a running retrain's ``register`` re-checks it;
- GX / Evidently reports older than ``retention.reports`` (MLflow keeps its own copy on each run),
  except the reports of batches in quarantine;
- stored predictions older than ``retention.predictions`` whose batch waits for no labels, and the
  predictions of batches removed from the archive; cached reference predictions of versions that are no
  longer champion or challenger;
- typed Parquet copies of batches (written by the gate) older than ``retention.records``;
- claim records older than ``retention.records`` whose batch is no longer in landing or processing (a
  re-run of such an old run then claims a new batch instead of finding its old one).

Never touched: landing, processing (in-flight and stuck batches), claim locks, quarantine, and anything
outside the data root. If the registry cannot be read, no snapshot is removed.
"""

from __future__ import annotations

import json
import logging
import re
import time
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from retrainer.config import duration_hours
from retrainer.ml.train import labelled
from retrainer.stages.feeds import apply_labels, latest_labels
from retrainer.storage import DataRoot, read_columns, to_utc_naive
from retrainer.storage import batch_stem as _stem
from retrainer.storage.snapshots import STALE_TEMP_HOURS, stale_temp
from retrainer.tracking import registry
from retrainer.tracking.runs import TAG, client

if TYPE_CHECKING:
    from retrainer.config import ModelConfig

log = logging.getLogger(__name__)


@dataclass
class Plan:
    """What gc removes (or would remove, on a dry run), by kind, with the reason for each."""

    model: str
    dry_run: bool
    remove: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    kept: dict[str, int] = field(default_factory=dict)

    def add(self, kind: str, path: Path, why: str) -> None:
        self.remove.setdefault(kind, []).append({"path": str(path), "why": why, "bytes": _size(path)})

    @property
    def bytes(self) -> int:
        return sum(e["bytes"] for entries in self.remove.values() for e in entries)

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "dry_run": self.dry_run,
            "remove": self.remove,
            "kept": self.kept,
            "bytes": self.bytes,
        }


def _size(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size if path.exists() else 0


def _age_hours(path: Path, now: float) -> float:
    return (now - path.stat().st_mtime) / 3600


def registered_snapshots(model: str) -> set[str]:
    """sha256 of every snapshot a registered version of ``model`` was trained on (any version, any alias)."""
    from mlflow.exceptions import MlflowException

    c = client()
    try:
        versions = c.search_model_versions(f"name = '{model}'")
    except MlflowException as exc:
        raise RuntimeError(f"cannot list the registered versions of {model}: {exc}") from exc
    return {mv.tags[f"{TAG}snapshot_sha256"] for mv in versions if mv.tags.get(f"{TAG}snapshot_sha256")}


def _aliased_versions(model: str) -> set[int]:

    out = set()
    for alias in (registry.CHAMPION, registry.CHALLENGER):
        held = registry.aliased(model, alias)
        if held is not None:
            out.add(held.version)
    return out


@dataclass(frozen=True)
class Extent:
    """What retention needs to know of one archived batch (its data time, not its file time)."""

    newest: Any  # its newest row
    labelled: Any  # its newest labelled row (the labels feed included); None when no row is labelled
    pending: bool  # some rows still wait for their label


def _batch_extent(cfg: ModelConfig, path: Path, late: Any) -> Extent:
    """The :class:`Extent` of an archived batch, with the labels the feed has delivered since."""

    key = [cfg.data.time_column, cfg.data.target, *([cfg.data.id_column] if cfg.data.id_column else [])]
    df = read_columns(path, key)
    df[cfg.data.time_column] = to_utc_naive(df[cfg.data.time_column])
    if late is not None and len(late):
        df = apply_labels(cfg, df, late)
    done = labelled(cfg, df)[cfg.data.time_column]
    pending = cfg.data.target not in df or bool(df[cfg.data.target].isna().any())
    return Extent(df[cfg.data.time_column].max(), done.max() if len(done) else None, pending)


def archive_anchor(extents: list[Extent]) -> Any:
    """The data time retention measures the archive from: the newest row of the second-newest batch
    (of the only batch, when there is one). Neither one row nor one whole batch stamped far ahead can move
    it; in a regular stream it lags the newest row by one batch, so gc keeps at most one batch more."""
    ends = sorted((e.newest for e in extents), reverse=True)
    return ends[min(1, len(ends) - 1)]


_PREDICTIONS = re.compile(r"^(?P<stem>.+)\.v(?P<version>\d+)\.parquet$")


def predictions_batch(name: str) -> str | None:
    """The batch stem of a stored predictions file ``<stem>.v<version>.parquet`` (a stem may contain
    ``.v`` itself); None for a name of another form."""
    m = _PREDICTIONS.match(name)
    return m.group("stem") if m else None


def collect(cfg: ModelConfig, *, dry_run: bool = False, now: float | None = None) -> Plan:
    """Work out what the retention rules allow to remove, and remove it unless ``dry_run``."""
    dr = DataRoot.for_model(cfg)
    now = time.time() if now is None else now
    plan = Plan(cfg.name, dry_run)
    removed, pending = _plan_archive(cfg, dr, plan)
    _plan_snapshots(cfg, dr, plan, now)
    _plan_predictions(cfg, dr, plan, now, removed, pending)
    _plan_reports(cfg, dr, plan, now)
    _plan_records(cfg, dr, plan, now)
    if not dry_run:
        _apply(dr, plan)
    log.info(
        "gc %s: %s %d files/folders, %.1f MB",
        cfg.name,
        "would remove" if dry_run else "removed",
        sum(len(v) for v in plan.remove.values()),
        plan.bytes / 1e6,
    )
    return plan


def _archive_cut(cfg: ModelConfig, anchor: Any, labelled_times: list[Any]) -> Any:
    """The data time at or before which an archived batch is outside every future training window; None
    while nothing is labelled (the first retrain's window is not known: the archive stays whole)."""
    if not labelled_times:
        return None
    # a retrain's window ends at the newest labelled row, which only moves later: nothing before
    # (that row - training.window) can be read again. Whichever horizon keeps more wins.
    ret = cfg.retention
    window = timedelta(hours=duration_hours(cfg.training.window))
    keep = timedelta(hours=max(duration_hours(cfg.training.window), duration_hours(ret.archive)))
    return min(min(anchor, max(labelled_times)) - window, anchor - keep)


def _plan_archive(cfg: ModelConfig, dr: DataRoot, plan: Plan) -> tuple[set[str], set[str]]:
    """Archived batches (data time) no future window reads; returns the stems of the batches removed and
    of those still waiting for labels."""
    ret = cfg.retention
    archived = dr.archived()
    late = latest_labels(cfg) if cfg.data.id_column and archived else None
    extents = {p: _batch_extent(cfg, p, late) for p in archived}
    removed: set[str] = set()
    pending: set[str] = set()
    if extents:
        anchor = archive_anchor(list(extents.values()))
        label_cut = anchor - timedelta(hours=duration_hours(ret.label_wait))
        cut = _archive_cut(cfg, anchor, [e.labelled for e in extents.values() if e.labelled is not None])
        for p, e in extents.items():
            if e.pending and e.newest > label_cut:
                pending.add(_stem(p.name))
            elif cut is not None and e.newest <= cut:
                plan.add(
                    "archive",
                    p,
                    f"newest row {e.newest} is at or before {cut}: outside every future training window "
                    f"(training.window={cfg.training.window} before the newest labelled row) and "
                    f"retention.archive={ret.archive}",
                )
                removed.add(_stem(p.name))
                if dr.flags_path(p).exists():
                    plan.add("archive", dr.flags_path(p), "flags of a batch that leaves the archive")
        if cut is None:
            log.info("gc %s: no archived row is labelled yet: the archive is kept whole", cfg.name)
    plan.kept["archive"] = len(archived) - len(removed)
    return removed, pending


def _plan_snapshots(cfg: ModelConfig, dr: DataRoot, plan: Plan, now: float) -> None:
    """Snapshots no registered version references and no retrain used for ``retention.snapshots``."""
    if not dr.snapshots.exists():
        return
    needed = registered_snapshots(cfg.name)  # raises when the registry cannot be read: remove nothing
    snaps = [p for p in dr.snapshots.iterdir() if p.is_dir() and not p.name.startswith(".")]
    for p in snaps:
        if p.name in needed:
            continue
        if _age_hours(p, now) < duration_hours(cfg.retention.snapshots):
            continue  # may belong to a retrain that has not registered yet
        plan.add("snapshots", p, "no registered version was trained on it")
    for p in stale_temp(dr.snapshots, now):
        plan.add("snapshots", p, f"unfinished snapshot write, untouched for {STALE_TEMP_HOURS:g} h")
    plan.kept["snapshots"] = len(snaps) - len(
        [e for e in plan.remove.get("snapshots", []) if not Path(e["path"]).name.startswith(".")]
    )


def _plan_predictions(
    cfg: ModelConfig, dr: DataRoot, plan: Plan, now: float, removed: set[str], pending: set[str]
) -> None:
    """Stored predictions whose batch leaves or waits for no labels and aged out; reference predictions
    of versions no longer aliased."""
    if not dr.predictions.exists():
        return
    ret = cfg.retention
    aliased = _aliased_versions(cfg.name)
    for p in sorted(dr.predictions.glob("*.parquet")):
        if p.name.startswith("reference-v"):
            version = int(p.stem.removeprefix("reference-v"))
            if version not in aliased:
                plan.add("predictions", p, f"reference predictions of v{version}, no longer aliased")
            continue
        batch = predictions_batch(p.name)
        if batch is None:
            continue  # not a file we wrote: leave it for a person
        if batch in removed:
            plan.add("predictions", p, "its batch leaves the archive")
        elif batch not in pending and _age_hours(p, now) > duration_hours(ret.predictions):
            plan.add("predictions", p, f"older than {ret.predictions} and no labels pending")


def _plan_reports(cfg: ModelConfig, dr: DataRoot, plan: Plan, now: float) -> None:
    """GX / Evidently reports older than ``retention.reports``, except those of quarantined batches."""
    ret = cfg.retention
    quarantined = {_stem(p.name) for p in dr.quarantine.glob("*")} if dr.quarantine.exists() else set()
    limit = duration_hours(ret.reports)
    for folder in dr.report_dirs:
        if not folder.exists():
            continue
        for p in sorted(folder.iterdir()):
            if _stem(p.name) in quarantined or p.name in quarantined:
                continue  # the evidence of a rejected batch stays while the batch does
            if _age_hours(p, now) > limit:
                plan.add("reports", p, f"older than {ret.reports}")


def _plan_records(cfg: ModelConfig, dr: DataRoot, plan: Plan, now: float) -> None:
    """Claim records of batches no longer in flight, and the gate's typed copies, older than
    ``retention.records``."""
    ret = cfg.retention
    if dr.claims.exists():
        in_flight = {
            p.name
            for stage in ("landing", "processing")
            if dr.dir(stage).exists()
            for p in dr.dir(stage).iterdir()
        }
        if dr.inflight.exists():  # a claimed batch's lock: its run may still be working on it
            in_flight |= {p.name.removesuffix(".json") for p in dr.inflight.glob("*.json")}
        for p in sorted(dr.claims.glob("*.json")):
            try:
                record = json.loads(p.read_text())
            except (OSError, ValueError):
                continue  # unreadable: leave it for a person
            batch = record.get("batch")
            if batch in in_flight or record.get("stage") == "processing":
                continue
            if _age_hours(p, now) > duration_hours(ret.records):
                plan.add("records", p, f"claim of {batch}, older than {ret.records}")
    # typed copies (the gate's Parquet of a batch; tasks fall back to the delivered file)
    if dr.typed.exists():
        for p in sorted(dr.typed.glob("*.parquet")):
            if _age_hours(p, now) > duration_hours(ret.records):
                plan.add("typed", p, f"typed copy older than {ret.records}")


def _apply(dr: DataRoot, plan: Plan) -> None:
    for entries in plan.remove.values():
        for e in entries:
            dr.remove(Path(e["path"]))  # refuses anything outside the data root; a folder goes as a whole
