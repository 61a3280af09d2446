"""The data root on disk: landing, processing, archive, quarantine, snapshots, reports.

A batch moves ``landing -> processing -> archive`` (or ``-> quarantine`` with a ``.reason.json`` beside it).
Moves are renames within one file system that never overwrite, so a batch is always in exactly one place
and never lost.

Delivery contract (what a producer must do, what we promise):

* write the file elsewhere (or under a name starting with ``.`` or ending ``.tmp`` / ``.part``) and rename
  it into ``landing/<model>/`` when it is complete; such temporary names are never claimed;
* a file whose modification time is younger than ``RETRAINER_SETTLE_SECONDS`` (default 5) is still being
  written and is not claimed yet;
* ``.parquet`` and ``.csv`` (lower case) are batches; any other file (``.CSV``, ``.json``, a symbolic link,
  an unsafe name, a file above ``RETRAINER_MAX_BATCH_BYTES``) is moved to ``quarantine/<model>/`` with a
  reason, never deleted; sub-folders (such as a labels feed) are not batches;
* batches are taken oldest first by name: name them so they sort by time.

Claims: :meth:`DataRoot.claim` gives one batch to one orchestrator run. The claim is exclusive (a lock file
created with ``O_EXCL`` under ``state/<model>/inflight/``), recorded per run under ``state/<model>/claims/``
(a re-run of the same run gets the same claim back), and every later step finds the file through the claim
(:meth:`DataRoot.path_of`), never by looking in ``landing/`` again. A batch left in ``processing/`` by a run
that died is resumed by the next run before any newer batch, up to ``RETRAINER_MAX_BATCH_ATTEMPTS`` times.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import time
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from retrainer.exceptions import BatchError

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    import pandas as pd

BATCH_SUFFIXES = (".parquet", ".csv")
FLAGS_SUFFIX = ".flags.csv"
TEMP_SUFFIXES = (".tmp", ".part")  # delivery in progress: never claimed, never quarantined
SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,200}$")
STAGES = ("landing", "processing", "archive", "quarantine")
CLAIMED_STAGES = ("processing", "archive", "quarantine")  # where a claimed batch can be: never landing


def settle_seconds() -> float:
    """``RETRAINER_SETTLE_SECONDS``: a landed file must be unchanged this long before it is claimed."""
    return float(os.environ.get("RETRAINER_SETTLE_SECONDS", "5"))


def max_batch_bytes() -> int:
    """``RETRAINER_MAX_BATCH_BYTES`` (default 1 GiB): larger files are quarantined without being read."""
    return int(os.environ.get("RETRAINER_MAX_BATCH_BYTES", str(1 << 30)))


def max_attempts() -> int:
    """``RETRAINER_MAX_BATCH_ATTEMPTS`` (default 3): runs that may try a batch before it is quarantined."""
    return int(os.environ.get("RETRAINER_MAX_BATCH_ATTEMPTS", "3"))


def stuck_after() -> timedelta:
    """``RETRAINER_STUCK_AFTER_MINUTES`` (default 60): a batch in processing this long is shown as stuck."""
    return timedelta(minutes=float(os.environ.get("RETRAINER_STUCK_AFTER_MINUTES", "60")))


def batch_stem(batch: str) -> str:
    """A batch's file name without its suffix: the key of its reports and predictions."""
    return batch.rsplit(".", 1)[0]


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def safe_key(text: str) -> str:
    """A file-name-safe key for arbitrary text such as an Airflow run id."""
    slug = re.sub(r"[^A-Za-z0-9_-]+", "_", text)[:60]
    return f"{slug}-{hashlib.sha1(text.encode()).hexdigest()[:10]}"


def is_temporary(name: str) -> bool:
    """A name the delivery contract reserves for files still being written."""
    return name.startswith(".") or name.endswith(TEMP_SUFFIXES)


def check_batch_name(name: str) -> str:
    """Reject names that could escape the data root or that we cannot read."""
    if not SAFE_NAME.match(name) or ".." in name or name.endswith(FLAGS_SUFFIX):
        raise BatchError(f"unsafe or unsupported batch file name: {name!r}")
    if not name.endswith(BATCH_SUFFIXES):
        suffix = "." + name.rsplit(".", 1)[-1] if "." in name else "(none)"
        raise BatchError(
            f"unsupported batch format {name!r} (suffix {suffix}): use .parquet or .csv, lower case"
        )
    return name


@dataclass(frozen=True)
class Claim:
    """A batch owned by one orchestrator run.

    ``attempt`` counts the runs that took this batch (a resumed batch has ``attempt > 1`` and
    ``previous_runs``); ``notes`` holds what the run resolved once for all its tasks (e.g. the champion).
    """

    model: str
    batch: str
    sha256: str
    run_id: str
    claimed_at: str
    attempt: int = 1
    previous_runs: tuple[str, ...] = ()
    notes: dict[str, Any] = field(default_factory=dict, compare=False)
    delivered_as: str = ""  # the name it landed under, when another batch already holds that name

    @property
    def landed_as(self) -> str:
        """The file name in ``landing/`` (and of its in-flight lock)."""
        return self.delivered_as or self.batch

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["previous_runs"] = list(self.previous_runs)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Claim:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        known["previous_runs"] = tuple(known.get("previous_runs") or ())
        for key in ("model", "batch", "sha256", "run_id", "claimed_at"):  # partial dicts (callers, tests)
            known.setdefault(key, "")
        return cls(**known)


class DataRoot:
    """Paths and batch moves for one model under the data root."""

    def __init__(self, root: Path | str, model: str):
        self.root = Path(root).resolve()
        self.model = model

    # -- layout ---------------------------------------------------------------------------------------
    def dir(self, stage: str) -> Path:
        return self.root / stage / self.model

    @property
    def landing(self) -> Path:
        return self.dir("landing")

    @property
    def archive(self) -> Path:
        return self.dir("archive")

    @property
    def quarantine(self) -> Path:
        return self.dir("quarantine")

    @property
    def processing(self) -> Path:
        return self.dir("processing")

    @property
    def snapshots(self) -> Path:
        return self.dir("snapshots")

    @property
    def reports(self) -> Path:
        return self.dir("reports")

    @property
    def predictions(self) -> Path:
        return self.dir("predictions")

    @property
    def state(self) -> Path:
        return self.root / "state" / self.model

    @property
    def claims(self) -> Path:
        return self.state / "claims"

    @property
    def inflight(self) -> Path:
        return self.state / "inflight"

    def feed_state(self, kind: str) -> Path:
        """Bookkeeping of a feed (``labels``, ``flags``): its delivery index, rows and per-step records."""
        return self.state / "feeds" / kind

    # -- generated files of a batch (``batch`` is its file name; the stem keys them) --------------------
    def gx_dir(self, name: str) -> Path:
        """GX result and Data Docs of a gate run: a batch's stem or ``snapshot-<sha256[:12]>``."""
        return self.reports / "gx" / name

    def evidently_report(self, batch: str) -> Path:
        return self.reports / "evidently" / f"{batch_stem(batch)}.html"

    @property
    def report_dirs(self) -> tuple[Path, Path]:
        """Where gate results and drift reports are written (what retention ages out)."""
        return self.reports / "gx", self.reports / "evidently"

    def batch_predictions(self, batch: str, version: Any) -> Path:
        """The champion ``version``'s stored predictions of ``batch``."""
        return self.predictions / f"{batch_stem(batch)}.v{version}.parquet"

    def all_batch_predictions(self, batch: str) -> list[Path]:
        """Every stored prediction file of ``batch`` (one per model version that scored it), oldest first."""
        return sorted(
            self.predictions.glob(f"{batch_stem(batch)}.v*.parquet"), key=lambda p: p.stat().st_mtime
        )

    def reference_predictions(self, version: Any) -> Path:
        """The champion ``version``'s predictions on its own training snapshot (the drift reference)."""
        return self.predictions / f"reference-v{version}.parquet"

    def ensure(self) -> DataRoot:
        for stage in (*STAGES, "snapshots", "reports", "predictions"):
            self.dir(stage).mkdir(parents=True, exist_ok=True)
        self.claims.mkdir(parents=True, exist_ok=True)
        self.inflight.mkdir(parents=True, exist_ok=True)
        return self

    def inside(self, path: Path) -> Path:
        """Resolve ``path`` and refuse anything outside the data root (symlinks included)."""
        resolved = path.resolve()
        if not resolved.is_relative_to(self.root):
            raise BatchError(f"{path} resolves outside the data root {self.root}")
        return resolved

    # -- landing --------------------------------------------------------------------------------------
    def _landed(self, settle: float | None = None) -> list[Path]:
        """Files in landing the contract says are delivered: not temporary, not a folder, settled."""
        if not self.landing.exists():
            return []
        settle = settle_seconds() if settle is None else settle
        now = time.time()
        out = []
        for p in sorted(self.landing.iterdir()):
            if is_temporary(p.name) or p.name.endswith(FLAGS_SUFFIX):
                continue
            if p.is_symlink():
                out.append(p)
                continue
            if not p.is_file():  # a feed folder such as labels/, not a batch
                continue
            with contextlib.suppress(FileNotFoundError):  # claimed by someone else meanwhile
                if now - p.stat().st_mtime >= settle:  # still growing otherwise: come back later
                    out.append(p)
        return out

    def pending(self, settle: float | None = None) -> list[str]:
        """Delivered batch files waiting in landing, oldest first by name (unsupported ones excluded)."""
        return [
            p.name
            for p in self._landed(settle)
            if not p.is_symlink() and p.name.endswith(BATCH_SUFFIXES) and SAFE_NAME.match(p.name)
        ]

    def sweep_landing(self, settle: float | None = None) -> list[Path]:
        """Quarantine delivered files that can never be a batch; returns their ``.reason.json`` paths."""
        out = []
        for p in self._landed(settle):
            try:
                check_batch_name(p.name)
                if p.is_symlink():  # a link could point anywhere: accept real files only
                    raise BatchError(f"{p.name} is a symbolic link; drop the file itself into landing/")
                size = p.stat().st_size
                if size > max_batch_bytes():
                    raise BatchError(
                        f"{p.name} is {size:,} bytes, above RETRAINER_MAX_BATCH_BYTES={max_batch_bytes():,}: "
                        "split it into smaller batches"
                    )
            except BatchError as exc:  # quarantined (the link itself, never its target), not lost
                with contextlib.suppress(FileNotFoundError):
                    out.append(self._quarantine_raw(p.name, str(exc)))
        return out

    def _quarantine_raw(self, name: str, reason: str) -> Path:
        src = self.landing / name
        safe = Path(re.sub(r"[^A-Za-z0-9._-]", "_", name).lstrip(".") or "unnamed")
        self.quarantine.mkdir(parents=True, exist_ok=True)
        dest = _free_name(self.quarantine / safe.name)
        _move_no_overwrite(src, dest)
        message = f"file {name} of model {self.model} rejected: {reason}"
        self._unrecorded(dest)
        return write_json(
            dest.with_name(dest.name + ".reason.json"),
            {
                "batch": dest.name,
                "delivered_as": name,
                "quarantined_at": _now(),
                "message": message,
                "reason": message,  # older readers
                "failures": [],
            },
        )

    # -- claims ---------------------------------------------------------------------------------------
    def _record(self, run_id: str) -> Path:
        return self.claims / f"{safe_key(run_id)}.json"

    def _lock(self, batch: str) -> Path:
        return self.inflight / f"{batch}.json"

    def claim(self, run_id: str, *, owner_alive: Callable[[Claim], bool] | None = None) -> Claim | None:
        """Claim a batch for ``run_id``: the same run gets the same claim back; otherwise a batch left in
        processing by a run that is no longer alive comes first (oldest name first), then the oldest
        delivered batch. ``owner_alive(claim)`` says whether a claim's run may still be working on it
        (default: claimed less than ``RETRAINER_STUCK_AFTER_MINUTES`` ago)."""
        self.ensure()
        record = self._record(run_id)
        if record.exists():
            return Claim.from_dict(json.loads(record.read_text()))
        alive = owner_alive or self._recent
        for lock in sorted(self.inflight.glob("*.json")):
            resumed = self._resume(lock, run_id, alive)
            if resumed is not None:
                return resumed
        self.sweep_landing()
        for name in self.pending():
            taken = self._take(name, run_id)
            if taken is not None:
                return taken
        return None

    @staticmethod
    def _recent(claim: Claim) -> bool:
        return datetime.now(UTC) - datetime.fromisoformat(claim.claimed_at) < stuck_after()

    def _take(self, name: str, run_id: str) -> Claim | None:
        """Move one landed batch into processing for ``run_id``; None if someone else holds that name."""
        src = self.landing / name
        lock = self._lock(name)
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:  # claimed by another run, or a same-name batch is still in flight
            return None
        claim = Claim(self.model, name, "", run_id, _now())
        with os.fdopen(fd, "w") as fh:
            json.dump(claim.to_dict(), fh)
        try:
            claim = replace(claim, sha256=sha256_file(self.inside(src)))
            identity = self._identity(name, claim.sha256)
            if identity != name:  # a redelivery under a name an earlier batch holds: it gets its own
                claim = replace(claim, batch=identity, delivered_as=name)
            write_json(lock, claim.to_dict())
            dest = self.processing / claim.batch
            self.processing.mkdir(parents=True, exist_ok=True)
            _move_no_overwrite(src, dest)
        except (FileNotFoundError, FileExistsError):  # gone meanwhile, or an orphan with that name
            lock.unlink(missing_ok=True)
            return None
        self._move_flags(src, dest)
        return self._save(claim, "processing", dest)

    def _identity(self, name: str, sha256: str) -> str:
        """The name a landed batch is known by from its claim on (its file in processing, archive or
        quarantine, and the key of its predictions, reports and label records): ``name`` itself, or
        ``<stem>.dup-<sha256[:8]><suffix>`` when an earlier batch already holds ``name``, so nothing the
        first batch produced is ever overwritten by the second."""
        stem, suffix = Path(name).stem, Path(name).suffix
        taken = ("archive", "quarantine")  # an orphan in processing keeps its name (not claimed)
        candidate, n = name, 0
        while any((self.dir(s) / candidate).exists() for s in taken) or (
            candidate != name and self._lock(candidate).exists()
        ):
            n += 1
            candidate = f"{stem}.dup-{sha256[:8]}{'' if n == 1 else f'-{n}'}{suffix}"
        return candidate

    def _resume(self, lock: Path, run_id: str, alive: Callable[[Claim], bool]) -> Claim | None:
        """Take over a batch whose claiming run is gone; finish a move a crash interrupted."""
        try:
            old = Claim.from_dict(json.loads(lock.read_text()))
        except (OSError, ValueError, TypeError):
            return None
        if old.run_id == run_id or alive(old):
            return None
        batch = old.batch
        landed, processing = self.landing / old.landed_as, self.processing / batch
        if not processing.exists() and not landed.exists():  # the batch moved on: only the lock was left
            lock.unlink(missing_ok=True)
            return None
        marker = self.inflight / f".{old.landed_as}.attempt-{old.attempt + 1}"
        try:  # exclusive take-over: one run per attempt number
            os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
        except FileExistsError:
            return None
        if not processing.exists():  # the claiming run died between lock and move
            _move_no_overwrite(landed, processing)
            self._move_flags(landed, processing)
        elif landed.exists() and os.path.samefile(landed, processing):  # died between link and unlink
            landed.unlink()
        claim = Claim(
            self.model,
            batch,
            old.sha256 or sha256_file(processing),
            run_id,
            _now(),
            attempt=old.attempt + 1,
            previous_runs=(*old.previous_runs, old.run_id),
            delivered_as=old.delivered_as,
        )
        write_json(lock, claim.to_dict())
        if claim.attempt > max_attempts():
            runs = ", ".join(claim.previous_runs)
            self._save(claim, "processing", processing)
            self.quarantine_claim(
                claim,
                {
                    "message": (
                        f"batch {batch} of model {self.model} rejected: processing did not finish after "
                        f"{claim.attempt - 1} attempt(s) (runs {runs}); see those runs' logs"
                    ),
                    "failures": [],
                    "run_id": run_id,
                },
            )
            return None
        return self._save(claim, "processing", processing)

    def _save(self, claim: Claim, stage: str, path: Path) -> Claim:
        """Record where the claimed batch is; notes tasks added to the record since are kept."""
        record = self._record(claim.run_id)
        data = claim.to_dict()
        if record.exists() and claim.run_id:
            with contextlib.suppress(OSError, ValueError, AttributeError):
                data["notes"] = {**(json.loads(record.read_text()).get("notes") or {}), **claim.notes}
        write_json(record, {**data, "stage": stage, "path": str(path)})
        return claim

    def annotate(self, claim: Claim | dict[str, Any], **notes: Any) -> Claim:
        """Add notes to a run's claim record (what a run resolves once and every task reuses)."""
        c = claim if isinstance(claim, Claim) else Claim.from_dict(claim)
        record = self._record(c.run_id)
        data = json.loads(record.read_text()) if record.exists() else {**c.to_dict(), "stage": "processing"}
        data["notes"] = {**(data.get("notes") or {}), **notes}
        write_json(record, data)
        return Claim.from_dict(data)

    def claim_notes(self, claim: Claim | dict[str, Any]) -> dict[str, Any]:
        """The notes of a run's claim record as they are now (tasks add to them after the claim)."""
        c = claim if isinstance(claim, Claim) else Claim.from_dict(claim)
        record = self._record(c.run_id)
        try:
            data = json.loads(record.read_text()) if c.run_id and record.exists() else {}
        except (OSError, ValueError):
            data = {}
        return {**c.notes, **(data.get("notes") or {})}

    def path_of(self, claim: Claim | dict[str, Any]) -> tuple[str, Path]:
        """Where a claimed batch is now: (stage, path). Never looks in ``landing/``: a same-name file
        delivered later is another batch."""
        c = claim if isinstance(claim, Claim) else Claim.from_dict(claim)
        check_batch_name(c.batch)
        record = self._record(c.run_id)
        if record.exists():
            data = json.loads(record.read_text())
            p = Path(data.get("path", ""))
            if data.get("path") and p.exists() and data.get("stage") in CLAIMED_STAGES:
                return data["stage"], self.inside(p)
        for stage in CLAIMED_STAGES:  # a crash between a move and its record: find it by name and content
            d = self.dir(stage)
            candidates = [d / c.batch, *sorted(d.glob(f"{Path(c.batch).stem}.dup-*{Path(c.batch).suffix}"))]
            for p in candidates:
                if p.is_file() and (stage == "processing" or not c.sha256 or sha256_file(p) == c.sha256):
                    return stage, self.inside(p)
        raise BatchError(
            f"batch {c.batch!r} claimed by run {c.run_id!r} of model {self.model!r} is in none of "
            f"{CLAIMED_STAGES} under {self.root}"
        )

    def archive_claim(self, claim: Claim | dict[str, Any]) -> Path:
        """Move a claimed batch into archive (a no-op if it is there); releases the claim."""
        return self._move_claimed(claim, "archive")

    def quarantine_claim(self, claim: Claim | dict[str, Any], reason: dict[str, Any]) -> Path:
        """Move a claimed batch to quarantine with ``<file>.reason.json``; an archived batch stays put
        (training data is never moved out of archive) and :class:`BatchError` says so."""
        c = claim if isinstance(claim, Claim) else Claim.from_dict(claim)
        stage, _ = self.path_of(c)
        if stage == "archive":
            raise BatchError(f"batch {c.batch} is already archived: not moving training data to quarantine")
        dest = self._move_claimed(c, "quarantine")
        payload = {
            "batch": c.batch,
            **({"delivered_as": c.delivered_as} if c.delivered_as else {}),
            "batch_sha256": c.sha256,
            "quarantined_at": _now(),
            **reason,
        }
        self._unrecorded(dest)
        write_json(dest.with_name(dest.name + ".reason.json"), payload)
        return dest

    def _unrecorded(self, dest: Path) -> None:
        """Note a quarantined file whose decision record is still to be written (by the monitor)."""
        queue = self.state / "unrecorded"
        queue.mkdir(parents=True, exist_ok=True)
        (queue / dest.name).touch()

    def unrecorded_quarantines(self) -> list[Path]:
        """``.reason.json`` files of quarantined batches without a decision record yet, oldest name first."""
        queue = self.state / "unrecorded"
        if not queue.exists():
            return []
        out = []
        for marker in sorted(queue.iterdir()):
            reason = self.quarantine / f"{marker.name}.reason.json"
            if reason.exists():
                out.append(reason)
            else:
                marker.unlink(missing_ok=True)
        return out

    def mark_recorded(self, reason_file: Path) -> None:
        (self.state / "unrecorded" / reason_file.name.removesuffix(".reason.json")).unlink(missing_ok=True)

    def _move_claimed(self, claim: Claim | dict[str, Any], to_stage: str) -> Path:
        c = claim if isinstance(claim, Claim) else Claim.from_dict(claim)
        stage, src = self.path_of(c)
        if stage != to_stage:
            dest_dir = self.dir(to_stage)
            dest_dir.mkdir(parents=True, exist_ok=True)
            dest = dest_dir / c.batch
            if dest.exists() and not os.path.samefile(src, dest):  # never overwrite: keep both, suffixed
                dest = _free_name(
                    dest_dir / f"{src.stem}.dup-{(c.sha256 or sha256_file(src))[:8]}{src.suffix}"
                )
            _move_no_overwrite(src, dest)
            self._move_flags(src, dest)
            src, stage = dest, to_stage
        self._save(c, stage, src)
        self._release(c.landed_as)
        return src

    def _release(self, batch: str) -> None:
        self._lock(batch).unlink(missing_ok=True)
        for marker in self.inflight.glob(f".{batch}.attempt-*"):
            marker.unlink(missing_ok=True)

    def in_processing(self) -> list[dict[str, Any]]:
        """Batches in processing: {batch, since (ISO), claimed_by (run id), attempt}, oldest name first.
        A file in processing without a claim (moved there by hand) shows ``claimed_by`` None."""
        out = []
        locked = set()
        for lock in sorted(self.inflight.glob("*.json")) if self.inflight.exists() else []:
            try:
                c = Claim.from_dict(json.loads(lock.read_text()))
            except (OSError, ValueError, TypeError):
                continue
            locked.add(c.batch)
            out.append(
                {"batch": c.batch, "since": c.claimed_at, "claimed_by": c.run_id, "attempt": c.attempt}
            )
        for p in sorted(self.processing.iterdir()) if self.processing.exists() else []:
            if p.name not in locked and p.name.endswith(BATCH_SUFFIXES) and not p.name.endswith(FLAGS_SUFFIX):
                since = datetime.fromtimestamp(p.stat().st_mtime, UTC).isoformat()
                out.append({"batch": p.name, "since": since, "claimed_by": None, "attempt": 0})
        return sorted(out, key=lambda r: r["batch"])

    def stuck(self, older_than: timedelta | None = None) -> list[dict[str, Any]]:
        """Batches in processing for longer than ``older_than`` (default ``RETRAINER_STUCK_AFTER_MINUTES``)."""
        limit = datetime.now(UTC) - (stuck_after() if older_than is None else older_than)
        return [
            {"batch": r["batch"], "since": r["since"], "claimed_by": r["claimed_by"]}
            for r in self.in_processing()
            if datetime.fromisoformat(r["since"]) <= limit
        ]

    # -- by name (tools, tests and the demo; the monitor goes through its claim) ----------------------
    def archived(self) -> list[Path]:
        if not self.archive.exists():
            return []
        return [
            p
            for p in sorted(self.archive.iterdir())
            if p.name.endswith(BATCH_SUFFIXES) and not p.name.endswith(FLAGS_SUFFIX)
        ]

    @property
    def typed(self) -> Path:
        return self.state / "typed"

    def typed_copy(self, sha256: str) -> Path:
        """Where the gate keeps the validated, typed Parquet copy of the batch with this content."""
        return self.typed / f"{sha256}.parquet"

    @property
    def archive_index(self) -> Path:
        return self.state / "archive_index.json"

    def archive_ranges(self, time_column: str) -> dict[Path, tuple[Any, Any]]:
        """(first, last) time of every archived batch, oldest name first.

        Kept in ``state/<model>/archive_index.json`` (keyed by name, size and modification time, so a
        replaced file is read again). The monitor's archive step records each batch as it archives it
        (:meth:`index_archived`), so a retrain or gc lists the archive and reads this small file: it opens
        only the files its window needs, and finding them reads no data. A file missing from the index
        (archived by hand, or before the index existed) has its time column read once and is added.
        """
        import pandas as pd

        index = self._read_index()
        out, changed, present = {}, {}, set()
        for path in self.archived():
            present.add(path.name)
            key = self._index_key(path, time_column)
            entry = index.get(path.name)
            if not entry or entry.get("key") != key:
                entry = changed[path.name] = self._index_entry(path, time_column, key)
            out[path] = (_naive(pd.Timestamp(entry["first"])), _naive(pd.Timestamp(entry["last"])))
        if changed or set(index) - present:
            self._update_index(changed)
        return out

    def index_archived(
        self, path: Path, time_column: str, source: Path | None = None, rows_hash: str | None = None
    ) -> None:
        """Record an archived batch's (first, last) time in the archive index, read from ``source`` (a
        file with the same rows, such as the gate's typed Parquet copy: one column read) or the batch,
        and the gate's hash of its rows (:func:`rows_sha256`) when given."""
        key = self._index_key(path, time_column)
        entry = self._read_index().get(path.name, {})
        if entry.get("key") == key and (rows_hash is None or entry.get("rows_sha256") == rows_hash):
            return
        if entry.get("key") != key:
            entry = self._index_entry(source or path, time_column, key)
        self._update_index({path.name: {**entry, **({"rows_sha256": rows_hash} if rows_hash else {})}})

    def archived_with_rows(self, rows_hash: str, exclude: Path | None = None) -> str | None:
        """The archived batch whose rows the gate hashed to ``rows_hash`` (:func:`rows_sha256`), other
        than ``exclude``: a re-export of rows already archived. Batches archived without a recorded hash
        (by hand, or before the hash was kept) are compared by bytes only."""
        for name, entry in self._read_index().items():
            same = isinstance(entry, dict) and entry.get("rows_sha256") == rows_hash
            if same and (self.archive / name).is_file() and (exclude is None or exclude.name != name):
                return name
        return None

    @staticmethod
    def _index_key(path: Path, time_column: str) -> str:
        st = path.stat()
        return f"{time_column}:{st.st_size}:{st.st_mtime_ns}"

    @staticmethod
    def _index_entry(path: Path, time_column: str, key: str) -> dict[str, str]:
        import pandas as pd

        times = to_utc_naive(read_columns(path, [time_column]).get(time_column, pd.Series([])))
        return {"key": key, "first": str(times.min()), "last": str(times.max())}

    def _read_index(self) -> dict[str, Any]:
        try:
            index = json.loads(self.archive_index.read_text())
        except (OSError, ValueError):
            return {}
        return index if isinstance(index, dict) else {}

    def _update_index(self, entries: dict[str, dict[str, str]]) -> None:
        """Merge ``entries`` into the index and drop files no longer archived, under a lock (the archive
        steps of parallel runs add entries concurrently; none is lost)."""
        import fcntl

        self.state.mkdir(parents=True, exist_ok=True)
        with open(self.state / "archive_index.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            index = {**self._read_index(), **entries}
            write_json(self.archive_index, {n: e for n, e in index.items() if (self.archive / n).is_file()})

    def archived_with_hash(
        self, sha256: str, size: int | None = None, exclude: Path | None = None
    ) -> Path | None:
        """An archived batch with exactly this content, other than ``exclude`` (files of another ``size``
        are not hashed)."""
        candidates = (
            p
            for p in self.archived()
            if (size is None or p.stat().st_size == size) and (exclude is None or p.resolve() != exclude)
        )
        return next((p for p in candidates if sha256_file(p) == sha256), None)

    def locate(self, batch: str) -> tuple[str, Path]:
        """Where a batch of this name is now: (stage, path); a claimed stage wins over landing."""
        check_batch_name(batch)
        for stage in (*CLAIMED_STAGES, "landing"):
            p = self.dir(stage) / batch
            if p.exists():
                return stage, self.inside(p)
        raise BatchError(f"batch {batch!r} of model {self.model!r} is in none of {STAGES} under {self.root}")

    def flags_path(self, batch_path: Path) -> Path:
        return batch_path.with_name(batch_path.name.rsplit(".", 1)[0] + FLAGS_SUFFIX)

    def _move_flags(self, src: Path, dest: Path) -> None:
        flags = self.flags_path(src)
        if flags.exists():
            target = self.flags_path(dest)
            if not target.exists():
                os.replace(flags, target)

    def _move(self, batch: str, to_stage: str) -> Path:
        stage, src = self.locate(batch)
        dest_dir = self.dir(to_stage)
        dest_dir.mkdir(parents=True, exist_ok=True)
        dest = dest_dir / batch
        if stage == to_stage:
            return dest
        if dest.exists():  # never overwrite: keep both, the newcomer gets a suffix
            dest = _free_name(dest_dir / f"{src.stem}.dup-{sha256_file(src)[:8]}{src.suffix}")
        _move_no_overwrite(src, dest)
        self._move_flags(src, dest)
        self._release(batch)
        return dest

    def archive_batch(self, batch: str) -> Path:
        return self._move(batch, "archive")

    def quarantine_batch(self, batch: str, reason: dict[str, Any]) -> Path:
        """Move a batch to quarantine and write ``<file>.reason.json`` beside it."""
        dest = self._move(batch, "quarantine")
        payload = {"batch": batch, "quarantined_at": _now(), **reason}
        self._unrecorded(dest)
        write_json(dest.with_name(dest.name + ".reason.json"), payload)
        return dest

    def quarantine_reason(self, batch: str) -> dict[str, Any] | None:
        p = self.quarantine / f"{batch}.reason.json"
        return json.loads(p.read_text()) if p.exists() else None

    def quarantine_sidecar(self, batch_path: Path, batch_sha256: str, message: str) -> dict[str, Any]:
        """Move the flags sidecar of the batch at ``batch_path`` to quarantine with its reason (the batch
        itself stays where it is); returns the reason written beside it."""
        src = self.flags_path(batch_path)
        self.quarantine.mkdir(parents=True, exist_ok=True)
        dest = _free_name(self.quarantine / src.name)
        _move_no_overwrite(src, dest)
        payload = {
            "batch": dest.name,
            "sidecar_of": batch_path.name,
            "batch_sha256": batch_sha256,
            "quarantined_at": _now(),
            "message": message,
            "reason": message,  # older readers
            "quarantined_as": str(dest),
        }
        write_json(dest.with_name(dest.name + ".reason.json"), payload)
        return payload

    def quarantined_sidecar(self, batch_path: Path, batch_sha256: str) -> dict[str, Any] | None:
        """The reason a flags sidecar of this batch (by content hash) was quarantined, if it was."""
        if not self.quarantine.exists():
            return None
        stem = self.flags_path(batch_path).name.removesuffix(".csv")
        for p in sorted(self.quarantine.glob(f"{stem}*.csv.reason.json")):
            with contextlib.suppress(OSError, ValueError):
                reason = json.loads(p.read_text())
                if reason.get("batch_sha256") == batch_sha256 and reason.get("sidecar_of"):
                    return dict(reason)
        return None

    def import_batch(self, df: pd.DataFrame, name: str, stage: str = "landing") -> Path:
        """Write a DataFrame as a batch file into ``stage`` (used to seed history and by the demo),
        following the delivery contract: written under a temporary name, then renamed."""
        check_batch_name(name)
        dest_dir = self.dir(stage)
        dest_dir.mkdir(parents=True, exist_ok=True)
        dest = dest_dir / name
        tmp = dest_dir / f".{name}.tmp"
        if name.endswith(".csv"):
            df.to_csv(tmp, index=False)
        else:
            df.to_parquet(tmp, index=False)
        os.replace(tmp, dest)
        return dest


def read_batch(path: Path, columns: list[str] | None = None) -> pd.DataFrame:
    """Read a CSV or Parquet batch (all columns, or ``columns``); unreadable files raise
    :class:`BatchError` saying why."""
    import pandas as pd

    try:
        if path.suffix == ".csv":
            return pd.read_csv(path, usecols=columns)
        return pd.read_parquet(path, columns=columns)
    except Exception as exc:  # pandas/pyarrow raise many types for a corrupt file
        raise BatchError(f"cannot read {path.name}: {type(exc).__name__}: {exc}") from exc


# a time written with a UTC offset: ...T12:00Z, ...12:00:00+01:00, ...12:00-0500, ...12:00 UTC
_OFFSET = re.compile(r"\d:\d\d(?::\d\d(?:[.,]\d+)?)?\s*(?:Z|UTC|GMT|[+-]\d\d(?::?\d\d)?)$", re.IGNORECASE)


def has_offset(values: pd.Series) -> pd.Series | None:
    """Which values of a time column carry a UTC offset (``Z``, ``+01:00``, ...): a boolean Series for
    text and object columns, None for a typed datetime column (one time zone, or none, for all rows)."""
    import pandas as pd

    if pd.api.types.is_datetime64_any_dtype(values) or pd.api.types.is_numeric_dtype(values):
        return None
    return values.map(
        lambda v: (
            bool(_OFFSET.search(v.strip())) if isinstance(v, str) else getattr(v, "tzinfo", None) is not None
        )
    )


def to_utc_naive(values: pd.Series) -> pd.Series:
    """The time rule, the same for the gate, every task, the archive index and the backtest: times with
    a UTC offset are converted to UTC and kept without the offset; times without one are taken as they
    are (read as UTC where they are compared with the clock). A column mixing both raises
    :class:`ValueError`: its order is ambiguous, and the gate quarantines such a batch."""
    import warnings

    import pandas as pd

    if isinstance(values.dtype, pd.DatetimeTZDtype):
        return values.dt.tz_convert("UTC").dt.tz_localize(None)
    if pd.api.types.is_datetime64_dtype(values):
        return values
    try:
        with warnings.catch_warnings():  # mixed offsets: handled below, the same in every pandas
            warnings.simplefilter("ignore", FutureWarning)
            parsed = pd.to_datetime(values, utc=False)
    except (ValueError, TypeError):
        offset = has_offset(values)
        if offset is not None and offset[values.notna()].nunique() > 1:
            raise ValueError(mixed_offsets_message(values, offset)) from None
        raise
    if isinstance(parsed.dtype, pd.DatetimeTZDtype):  # one offset for every row
        return parsed.dt.tz_convert("UTC").dt.tz_localize(None)
    if parsed.dtype == object:  # several offsets (a week across a daylight-saving change), or a mix
        offset = has_offset(values)
        if offset is not None and offset[values.notna()].nunique() > 1:
            raise ValueError(mixed_offsets_message(values, offset))
        return pd.to_datetime(values, utc=True).dt.tz_localize(None)
    return parsed


def mixed_offsets_message(values: pd.Series, offset: pd.Series) -> str:
    """What is wrong with a time column mixing values with and without a UTC offset, with examples."""
    present = values.notna()
    with_, without = values[present & offset], values[present & ~offset]
    return (
        f"{len(with_)} value(s) carry a UTC offset and {len(without)} do not, e.g. "
        f"{[str(v) for v in with_.head(2)]} and {[str(v) for v in without.head(2)]}: write every time "
        "with its offset, or every time in one zone without it"
    )


def rows_sha256(df: pd.DataFrame) -> str:
    """A hash of a batch's rows as the model reads them (``df`` prepared: times in UTC, categories as
    text), whatever the file format, column order, row order or number formatting (numbers compared to
    about 11 significant digits, what a text export keeps): a re-export of the same rows hashes the same."""
    import numpy as np
    import pandas as pd

    cols = sorted(df.columns, key=str)
    norm = pd.DataFrame(index=range(len(df)))
    for col in cols:
        values = df[col].reset_index(drop=True)
        if pd.api.types.is_datetime64_any_dtype(values):
            norm[str(col)] = to_utc_naive(values).astype("int64").where(values.notna(), -1)
        elif pd.api.types.is_bool_dtype(values) or pd.api.types.is_numeric_dtype(values):
            number = pd.to_numeric(values, errors="coerce").astype("float64").to_numpy()
            mantissa, exponent = np.frexp(number)  # 11 decimals of the mantissa: text exports round
            norm[str(col)] = np.ldexp(np.round(mantissa, 11), exponent)
        else:
            norm[str(col)] = values.astype("string").fillna("\x00<NA>")
    h = hashlib.sha256(",".join(str(c) for c in cols).encode())
    if cols:  # one hash per row, sorted: the order rows were written in does not count
        h.update(np.sort(pd.util.hash_pandas_object(norm, index=False).to_numpy()).tobytes())
    return h.hexdigest()


CHUNK_ROWS = 100_000  # rows per chunk when a task streams a batch: memory follows columns, not rows


def batch_columns(path: Path) -> list[str]:
    """The column names of a batch file, read from its header / Parquet footer only."""
    import pandas as pd
    import pyarrow.parquet as pq

    try:
        if path.suffix == ".csv":
            return list(pd.read_csv(path, nrows=0).columns)
        return list(pq.read_schema(path).names)
    except Exception as exc:  # a corrupt file: say which
        raise BatchError(f"cannot read {path.name}: {type(exc).__name__}: {exc}") from exc


def read_columns(path: Path, columns: list[str]) -> pd.DataFrame:
    """Only ``columns`` of a batch (those it has); Parquet reads nothing else from disk."""
    present = set(batch_columns(path))
    wanted = [c for c in dict.fromkeys(columns) if c in present]
    return read_batch(path, wanted)


def iter_chunks(
    path: Path, columns: list[str] | None = None, rows: int | None = None
) -> Iterator[pd.DataFrame]:
    """A batch in chunks of ``rows`` rows (default :data:`CHUNK_ROWS`; only ``columns`` when given), in
    file order."""
    import pandas as pd
    import pyarrow.parquet as pq

    rows = rows or CHUNK_ROWS

    try:
        if path.suffix == ".csv":
            yield from pd.read_csv(path, usecols=columns, chunksize=rows)
            return
        for rb in pq.ParquetFile(path).iter_batches(batch_size=rows, columns=columns):
            yield rb.to_pandas()
    except BatchError:
        raise
    except Exception as exc:  # pandas/pyarrow raise many types for a corrupt file
        raise BatchError(f"cannot read {path.name}: {type(exc).__name__}: {exc}") from exc


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _naive(t: Any) -> Any:
    """A time from the archive index by the time rule (entries written before it may carry an offset)."""
    return t.tz_convert("UTC").tz_localize(None) if getattr(t, "tzinfo", None) is not None else t


def _free_name(path: Path) -> Path:
    """``path``, or ``<stem>.dup-<n><suffix>`` for the first n that is free."""
    dest, n = path, 1
    while dest.exists() or dest.is_symlink():
        dest, n = path.with_name(f"{path.stem}.dup-{n}{path.suffix}"), n + 1
    return dest


def _move_no_overwrite(src: Path, dest: Path) -> None:
    """Rename ``src`` to ``dest``, failing (FileExistsError) rather than replacing an existing file."""
    if src.is_symlink():  # move the link itself; links cannot be hard-linked portably
        if dest.exists() or dest.is_symlink():
            raise FileExistsError(dest)
        os.rename(src, dest)
        return
    try:
        os.link(src, dest)  # atomic and exclusive: fails if dest exists
    except FileExistsError:
        if not os.path.samefile(src, dest):
            raise
        # the same file under both names: a move killed between link and unlink; finish it
    os.unlink(src)


def write_parquet(path: Path, df: pd.DataFrame) -> Path:
    """Write ``df`` as Parquet atomically (temporary name, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    df.to_parquet(tmp, index=False)
    os.replace(tmp, path)
    return path


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_text(path: Path, text: str) -> Path:
    """Write ``text`` atomically (temporary name, then rename): a reader sees the old file or the new one."""
    _atomic_write(path, text)
    return path


def write_json(path: Path, payload: Any) -> Path:
    _atomic_write(path, json.dumps(payload, indent=2, default=str))
    return path
