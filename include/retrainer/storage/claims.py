"""Claims: one batch to one orchestrator run, exclusively, resumable after a crash.

:meth:`Claims.claim` takes the oldest delivered batch for a run. The claim is exclusive: an in-flight lock
``state/<model>/inflight/<file>.json`` created with the backend's exclusive create (of two runs racing for
one file, exactly one creates the lock; the other moves on). It is recorded per run under
``state/<model>/claims/`` (a re-run of the same run gets the same claim back), and every later step finds
the file through the claim (:meth:`Claims.path_of`), never by looking in ``landing/`` again. A batch left
in processing by a run that died is resumed by the next run before any newer batch (one taker per
attempt, again by exclusive create), up to ``RETRAINER_MAX_BATCH_ATTEMPTS`` times, then quarantined.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from retrainer.exceptions import BatchError
from retrainer.storage.io import listing, move_to_free_name, sha256_file, write_json
from retrainer.storage.quarantine import Quarantine, reason_path
from retrainer.storage.rules import (
    BATCH_SUFFIXES,
    CLAIMED_STAGES,
    FLAGS_SUFFIX,
    check_batch_name,
    max_attempts,
    now_iso,
    safe_key,
    stuck_after,
)

if TYPE_CHECKING:
    from collections.abc import Callable
    from datetime import timedelta


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


class Claims(Quarantine):
    """Claims of one model's batches by orchestrator runs."""

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
        for lock in listing(self.inflight, "*.json"):
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
        claim = Claim(self.model, name, "", run_id, now_iso())
        if not self.fs.create_exclusive(lock, json.dumps(claim.to_dict())):
            return None  # claimed by another run, or a same-name batch is still in flight
        try:
            claim = replace(claim, sha256=sha256_file(self.inside(src)))
            identity = self._identity(name, claim.sha256)
            if identity != name:  # a redelivery under a name an earlier batch holds: it gets its own
                claim = replace(claim, batch=identity, delivered_as=name)
            write_json(lock, claim.to_dict())
            dest = self.processing / claim.batch
            self.processing.mkdir(parents=True, exist_ok=True)
            self.fs.move_no_overwrite(src, dest)
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
        if not self.fs.create_exclusive(marker):  # exclusive take-over: one run per attempt number
            return None
        if not processing.exists():  # the claiming run died between lock and move
            self.fs.move_no_overwrite(landed, processing)
            self._move_flags(landed, processing)
        elif landed.exists() and self.fs.same_file(landed, processing):  # died between link and unlink
            landed.unlink()
        claim = Claim(
            self.model,
            batch,
            old.sha256 or sha256_file(processing),
            run_id,
            now_iso(),
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
            p = self.path(data.get("path") or ".")
            if data.get("path") and p.exists() and data.get("stage") in CLAIMED_STAGES:
                return data["stage"], self.inside(p)
        for stage in CLAIMED_STAGES:  # a crash between a move and its record: find it by name and content
            d = self.dir(stage)
            candidates = [d / c.batch, *listing(d, f"{Path(c.batch).stem}.dup-*{Path(c.batch).suffix}")]
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
            "quarantined_at": now_iso(),
            **reason,
        }
        self._unrecorded(dest)
        write_json(reason_path(dest), payload)
        return dest

    def _move_claimed(self, claim: Claim | dict[str, Any], to_stage: str) -> Path:
        c = claim if isinstance(claim, Claim) else Claim.from_dict(claim)
        stage, src = self.path_of(c)
        if stage != to_stage:
            dest_dir = self.dir(to_stage)
            dest_dir.mkdir(parents=True, exist_ok=True)
            dest = dest_dir / c.batch
            if dest.exists() and self.fs.same_file(src, dest):  # a move a crash interrupted: finish it
                self.fs.move_no_overwrite(src, dest)
            else:
                if dest.exists():  # never overwrite: keep both, the newcomer suffixed
                    dest = dest_dir / f"{src.stem}.dup-{(c.sha256 or sha256_file(src))[:8]}{src.suffix}"
                dest = move_to_free_name(src, dest)
            self._move_flags(src, dest)
            src, stage = dest, to_stage
        self._save(c, stage, src)
        self._release(c.landed_as)
        return src

    def _release(self, batch: str) -> None:
        self._lock(batch).unlink(missing_ok=True)
        for marker in listing(self.inflight, f".{batch}.attempt-*"):
            marker.unlink(missing_ok=True)

    def in_processing(self) -> list[dict[str, Any]]:
        """Batches in processing: {batch, since (ISO), claimed_by (run id), attempt}, oldest name first.
        A file in processing without a claim (moved there by hand) shows ``claimed_by`` None."""
        out = []
        locked = set()
        for lock in listing(self.inflight, "*.json"):
            try:
                c = Claim.from_dict(json.loads(lock.read_text()))
            except (OSError, ValueError, TypeError):
                continue
            locked.add(c.batch)
            out.append(
                {"batch": c.batch, "since": c.claimed_at, "claimed_by": c.run_id, "attempt": c.attempt}
            )
        for p in listing(self.processing):
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
