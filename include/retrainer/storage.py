"""The data root on disk: landing, processing, archive, quarantine, snapshots, reports.

A batch moves ``landing -> processing -> archive`` (or ``-> quarantine`` with a ``.reason.json`` beside it).
Moves are renames within one file system, so a batch is always in exactly one place and never lost.
A claim record keyed by the orchestrator's run id makes a re-run of the same run pick up the same batch.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from retrainer.exceptions import BatchError

if TYPE_CHECKING:
    from collections.abc import Iterator

    import pandas as pd

BATCH_SUFFIXES = (".parquet", ".csv")
FLAGS_SUFFIX = ".flags.csv"
SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,200}$")
STAGES = ("landing", "processing", "archive", "quarantine")


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


def check_batch_name(name: str) -> str:
    """Reject names that could escape the data root or that we cannot read."""
    if not SAFE_NAME.match(name) or ".." in name or name.endswith(FLAGS_SUFFIX):
        raise BatchError(f"unsafe or unsupported batch file name: {name!r}")
    if not name.endswith(BATCH_SUFFIXES):
        raise BatchError(f"unsupported batch format {name!r}: use .parquet or .csv")
    return name


@dataclass(frozen=True)
class Claim:
    """A batch owned by one orchestrator run."""

    model: str
    batch: str
    sha256: str
    run_id: str
    claimed_at: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


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
    def claims(self) -> Path:
        return self.root / "state" / self.model / "claims"

    def ensure(self) -> DataRoot:
        for stage in (*STAGES, "snapshots", "reports", "predictions"):
            self.dir(stage).mkdir(parents=True, exist_ok=True)
        self.claims.mkdir(parents=True, exist_ok=True)
        return self

    def inside(self, path: Path) -> Path:
        """Resolve ``path`` and refuse anything outside the data root (symlinks included)."""
        resolved = path.resolve()
        if not resolved.is_relative_to(self.root):
            raise BatchError(f"{path} resolves outside the data root {self.root}")
        return resolved

    # -- batches --------------------------------------------------------------------------------------
    def pending(self) -> list[str]:
        """Batch files waiting in landing, oldest first (by name: name batches so they sort by time)."""
        if not self.landing.exists():
            return []
        names = []
        for p in sorted(self.landing.iterdir()):
            if (
                (p.is_file() or p.is_symlink())
                and p.name.endswith(BATCH_SUFFIXES)
                and not p.name.endswith(FLAGS_SUFFIX)
            ):
                names.append(p.name)
        return names

    def archived(self) -> list[Path]:
        if not self.archive.exists():
            return []
        return [
            p
            for p in sorted(self.archive.iterdir())
            if p.name.endswith(BATCH_SUFFIXES) and not p.name.endswith(FLAGS_SUFFIX)
        ]

    def archived_with_hash(self, sha256: str, size: int | None = None) -> Path | None:
        """An archived batch with exactly this content, if any (files of another ``size`` are not hashed)."""
        candidates = (p for p in self.archived() if size is None or p.stat().st_size == size)
        return next((p for p in candidates if sha256_file(p) == sha256), None)

    def locate(self, batch: str) -> tuple[str, Path]:
        """Where a batch is now: (stage, path)."""
        check_batch_name(batch)
        for stage in STAGES:
            p = self.dir(stage) / batch
            if p.exists():
                return stage, self.inside(p)
        raise BatchError(f"batch {batch!r} of model {self.model!r} is in none of {STAGES} under {self.root}")

    def flags_path(self, batch_path: Path) -> Path:
        return batch_path.with_name(batch_path.name.rsplit(".", 1)[0] + FLAGS_SUFFIX)

    def _move(self, batch: str, to_stage: str) -> Path:
        stage, src = self.locate(batch)
        dest_dir = self.dir(to_stage)
        dest_dir.mkdir(parents=True, exist_ok=True)
        dest = dest_dir / batch
        if stage == to_stage:
            return dest
        if dest.exists():  # never overwrite: keep both, the newcomer gets a suffix
            dest = dest_dir / f"{src.stem}.dup-{sha256_file(src)[:8]}{src.suffix}"
        flags = self.flags_path(src)
        os.replace(src, dest)
        if flags.exists():
            os.replace(flags, self.flags_path(dest))
        return dest

    def claim(self, run_id: str) -> Claim | None:
        """Claim the oldest landed batch for ``run_id``; the same run gets the same claim back."""
        self.ensure()
        record = self.claims / f"{safe_key(run_id)}.json"
        if record.exists():
            return Claim(**json.loads(record.read_text()))
        for name in self.pending():
            try:
                check_batch_name(name)
                if (self.landing / name).is_symlink():  # a link could point anywhere: accept real files only
                    raise BatchError(f"{name} is a symbolic link; drop the file itself into landing/")
            except BatchError as exc:  # quarantined (the link itself, never its target), not lost
                self._quarantine_raw(name, str(exc))
                continue
            src = self.inside(self.landing / name)
            claim = Claim(self.model, name, sha256_file(src), run_id, datetime.now(UTC).isoformat())
            _atomic_write(record, json.dumps(claim.to_dict(), indent=2))
            self._move(name, "processing")
            return claim
        return None

    def _quarantine_raw(self, name: str, reason: str) -> None:
        src = self.landing / name
        safe = Path(re.sub(r"[^A-Za-z0-9._-]", "_", name).lstrip(".") or "unnamed")
        dest, n = self.quarantine / safe, 1
        while dest.exists():  # never overwrite: distinct unsafe names can sanitise to the same name
            dest, n = self.quarantine / f"{safe.stem}.dup-{n}{safe.suffix}", n + 1
        self.quarantine.mkdir(parents=True, exist_ok=True)
        os.replace(src, dest)
        _atomic_write(dest.with_name(dest.name + ".reason.json"), json.dumps({"reason": reason}, indent=2))

    def archive_batch(self, batch: str) -> Path:
        return self._move(batch, "archive")

    def quarantine_batch(self, batch: str, reason: dict[str, Any]) -> Path:
        """Move a batch to quarantine and write ``<file>.reason.json`` beside it."""
        dest = self._move(batch, "quarantine")
        payload = {"batch": batch, "quarantined_at": datetime.now(UTC).isoformat(), **reason}
        _atomic_write(dest.with_name(dest.name + ".reason.json"), json.dumps(payload, indent=2, default=str))
        return dest

    def quarantine_reason(self, batch: str) -> dict[str, Any] | None:
        p = self.quarantine / f"{batch}.reason.json"
        return json.loads(p.read_text()) if p.exists() else None

    def import_batch(self, df: pd.DataFrame, name: str, stage: str = "landing") -> Path:
        """Write a DataFrame as a batch file into ``stage`` (used to seed history and by the demo)."""
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
    path: Path, columns: list[str] | None = None, rows: int = CHUNK_ROWS
) -> Iterator[pd.DataFrame]:
    """A batch in chunks of ``rows`` rows (only ``columns`` when given), in file order."""
    import pandas as pd
    import pyarrow.parquet as pq

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


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_json(path: Path, payload: Any) -> Path:
    _atomic_write(path, json.dumps(payload, indent=2, default=str))
    return path


def clear_tree(path: Path) -> None:
    """Remove a generated folder (demo/test state only; never used on batches)."""
    if path.exists():
        shutil.rmtree(path)
