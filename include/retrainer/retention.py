"""Retention: remove what no window, registered version, pending label or running task needs.

``retrainer gc MODEL [--dry-run]`` and the ``<model>__maintenance`` DAG call :func:`collect`. What it
removes, per the model's ``retention:`` config:

- archived batches whose newest row is older than ``max(training.window, retention.archive)`` before the
  newest archived row (data time, so a re-run removes the same files), unless they still wait for labels
  (unlabelled rows, newer than ``retention.label_wait``);
- snapshots that no registered model version references (``retrainer reproduce`` needs those, so they
  are never removed) and that are older than ``retention.snapshots`` (a retrain that is still running
  has not registered its snapshot yet);
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
import os
import shutil
import time
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from retrainer import settings
from retrainer.config import duration_hours
from retrainer.snapshot import STALE_TEMP_HOURS, stale_temp
from retrainer.storage import DataRoot
from retrainer.storage import batch_stem as _stem

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

    from retrainer.tracking import TAG, client

    c = client()
    try:
        versions = c.search_model_versions(f"name = '{model}'")
    except MlflowException as exc:
        raise RuntimeError(f"cannot list the registered versions of {model}: {exc}") from exc
    return {mv.tags[f"{TAG}snapshot_sha256"] for mv in versions if mv.tags.get(f"{TAG}snapshot_sha256")}


def _aliased_versions(model: str) -> set[int]:
    from retrainer import registry

    out = set()
    for alias in (registry.CHAMPION, registry.CHALLENGER):
        held = registry.aliased(model, alias)
        if held is not None:
            out.add(held.version)
    return out


def _batch_extent(cfg: ModelConfig, path: Path) -> tuple[Any, bool]:
    """(newest row time, whether some rows still wait for their label) of an archived batch."""
    import pandas as pd

    from retrainer.storage import read_columns

    df = read_columns(path, [cfg.data.time_column, cfg.data.target])
    newest = pd.to_datetime(df[cfg.data.time_column]).max()
    pending = cfg.data.target not in df or bool(df[cfg.data.target].isna().any())
    return newest, pending


def collect(cfg: ModelConfig, *, dry_run: bool = False, now: float | None = None) -> Plan:
    """Work out what the retention rules allow to remove, and remove it unless ``dry_run``."""
    dr = DataRoot(settings.data_root(), cfg.name)
    ret = cfg.retention
    now = time.time() if now is None else now
    plan = Plan(cfg.name, dry_run)

    # -- archive (data time) ------------------------------------------------------------------------------
    archived = dr.archived()
    extents = {p: _batch_extent(cfg, p) for p in archived}
    removed_batches: set[str] = set()
    pending_batches: set[str] = set()
    if extents:
        newest = max(t for t, _ in extents.values())
        keep_h = max(duration_hours(cfg.training.window), duration_hours(ret.archive))
        cut = newest - timedelta(hours=keep_h)
        label_cut = newest - timedelta(hours=duration_hours(ret.label_wait))
        for p, (t, pending) in extents.items():
            if pending and t > label_cut:
                pending_batches.add(_stem(p.name))
                continue
            if t <= cut:
                plan.add(
                    "archive", p, f"newest row {t} is more than {keep_h} h before the newest archived row"
                )
                removed_batches.add(_stem(p.name))
                if dr.flags_path(p).exists():
                    plan.add("archive", dr.flags_path(p), "flags of a batch that leaves the archive")
    plan.kept["archive"] = len(archived) - len(removed_batches)

    # -- snapshots -------------------------------------------------------------------------------------
    if dr.snapshots.exists():
        needed = registered_snapshots(cfg.name)  # raises when the registry cannot be read: remove nothing
        snaps = [p for p in dr.snapshots.iterdir() if p.is_dir() and not p.name.startswith(".")]
        for p in snaps:
            if p.name in needed:
                continue
            if _age_hours(p, now) < duration_hours(ret.snapshots):
                continue  # may belong to a retrain that has not registered yet
            plan.add("snapshots", p, "no registered version was trained on it")
        for p in stale_temp(dr.snapshots, now):
            plan.add("snapshots", p, f"unfinished snapshot write, untouched for {STALE_TEMP_HOURS:g} h")
        plan.kept["snapshots"] = len(snaps) - len(
            [e for e in plan.remove.get("snapshots", []) if not Path(e["path"]).name.startswith(".")]
        )

    # -- predictions ----------------------------------------------------------------------------------------
    if dr.predictions.exists():
        aliased = _aliased_versions(cfg.name)
        for p in sorted(dr.predictions.glob("*.parquet")):
            if p.name.startswith("reference-v"):
                version = int(p.stem.removeprefix("reference-v"))
                if version not in aliased:
                    plan.add("predictions", p, f"reference predictions of v{version}, no longer aliased")
                continue
            batch = p.name.split(".v")[0]
            if batch in removed_batches:
                plan.add("predictions", p, "its batch leaves the archive")
            elif batch not in pending_batches and _age_hours(p, now) > duration_hours(ret.predictions):
                plan.add("predictions", p, f"older than {ret.predictions} and no labels pending")

    # -- reports ------------------------------------------------------------------------------------------
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

    # -- claim records -------------------------------------------------------------------------------------
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

    # -- typed copies (the gate's Parquet of a batch; tasks fall back to the delivered file) ----------------
    if dr.typed.exists():
        for p in sorted(dr.typed.glob("*.parquet")):
            if _age_hours(p, now) > duration_hours(ret.records):
                plan.add("typed", p, f"typed copy older than {ret.records}")

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


def _apply(dr: DataRoot, plan: Plan) -> None:
    for entries in plan.remove.values():
        for e in entries:
            path = dr.inside(Path(e["path"]))  # refuses anything outside the data root
            if path.is_dir():
                trash = path.with_name(f".gc-{path.name}")
                os.replace(path, trash)  # atomic: a reader never sees half a snapshot
                shutil.rmtree(trash)
            elif path.exists():
                path.unlink()
