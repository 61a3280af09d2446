"""Training-data snapshots: immutable, content-addressed, written atomically.

``snapshots/<model>/<sha256>/data.parquet`` + ``manifest.json``. The hash covers the schema and every
value (row order included, rows sorted by time first), so identical content always gives the same hash
and an existing snapshot is reused, never rewritten. :func:`load_snapshot` re-hashes before returning
data: a snapshot whose content no longer matches its name is refused.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from retrainer.exceptions import RetrainerError, SnapshotIntegrityError
from retrainer.storage.fs import fs_of
from retrainer.storage.io import write_parquet

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)


def content_hash(df: pd.DataFrame) -> str:
    """sha256 over the column names, dtypes and every value, in order."""
    import pandas as pd

    h = hashlib.sha256()
    schema = [[str(c), str(t)] for c, t in df.dtypes.items()]
    h.update(json.dumps(schema).encode())
    h.update(pd.util.hash_pandas_object(df, index=False).to_numpy().tobytes())
    return h.hexdigest()


STALE_TEMP_HOURS = 6.0  # a snapshot write older than this was killed: no live write takes hours


def stale_temp(folder: Path, now: float | None = None) -> list[Path]:
    """Unfinished snapshot writes (``.tmp-*`` folders) under ``folder`` untouched for
    :data:`STALE_TEMP_HOURS`: left by a process that was killed mid-write (the rename never happened)."""
    import time

    now = time.time() if now is None else now
    if not folder.exists():
        return []
    return [
        p
        for p in sorted(folder.glob(".tmp-*"))
        if p.is_dir()
        and now - max((q.stat().st_mtime for q in [p, *p.iterdir()]), default=0) > STALE_TEMP_HOURS * 3600
    ]


def remove_stale_temp(folder: Path, now: float | None = None) -> list[Path]:
    """Remove :func:`stale_temp` folders (a younger one may be a concurrent write: it stays)."""
    import shutil

    gone = stale_temp(folder, now)
    for p in gone:
        shutil.rmtree(p, ignore_errors=True)
        log.warning("removed %s: a snapshot write that never finished", p.name)
    return gone


@dataclass(frozen=True)
class Snapshot:
    sha256: str
    path: Path
    rows: int
    created: bool  # False when identical content already existed

    @property
    def data_path(self) -> Path:
        return self.path / "data.parquet"

    def to_dict(self) -> dict[str, Any]:
        return {"sha256": self.sha256, "path": str(self.path), "rows": self.rows, "created": self.created}


def create_snapshot(
    df: pd.DataFrame,
    folder: Path,
    *,
    time_column: str,
    sources: list[str],
    extra: dict[str, Any] | None = None,
) -> Snapshot:
    """Write ``df`` (sorted by time) as a snapshot under ``folder`` unless identical content exists."""
    if df.empty:
        raise RetrainerError("refusing to snapshot an empty training set")
    df = df.sort_values(time_column, kind="mergesort").reset_index(drop=True)  # stable: deterministic order
    digest = content_hash(df)
    final = folder / digest
    if (final / "manifest.json").exists():
        log.info("snapshot %s already exists (%d rows): reused, not rewritten", digest[:12], len(df))
        touch(folder, digest)  # in use again: gc ages unregistered snapshots from their last use
        return Snapshot(digest, final, len(df), created=False)
    manifest = {
        "sha256": digest,
        "rows": len(df),
        "schema": {str(c): str(t) for c, t in df.dtypes.items()},
        "time_range": [str(df[time_column].min()), str(df[time_column].max())],
        "source_batches": sorted(sources),
        "created_at": datetime.now(UTC).isoformat(),
        **(extra or {}),
    }
    text = json.dumps(manifest, indent=2, default=str)
    if not isinstance(folder, Path):  # object storage: no folder rename
        return _create_in_bucket(df, folder, digest, text, len(sources))
    folder.mkdir(parents=True, exist_ok=True)
    remove_stale_temp(folder)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=folder))
    df.to_parquet(tmp / "data.parquet", index=False)
    (tmp / "manifest.json").write_text(text)
    try:
        os.rename(tmp, final)  # atomic; fails if a concurrent writer got there first
    except OSError:
        if not (final / "manifest.json").exists():
            raise
        import shutil

        shutil.rmtree(tmp)  # identical content by definition: keep the first
        touch(folder, digest)
        return Snapshot(digest, final, len(df), created=False)
    log.info("snapshot %s written: %d rows from %d batches", digest[:12], len(df), len(sources))
    return Snapshot(digest, final, len(df), created=True)


def _create_in_bucket(df: pd.DataFrame, folder: Any, digest: str, manifest: str, sources: int) -> Snapshot:
    """A snapshot on object storage: the data object, then the manifest by exclusive create. The manifest
    marks the snapshot complete (readers look for it first); a concurrent writer of the same content wrote
    the same data object and loses the manifest race: the first one is kept."""
    final = folder / digest
    write_parquet(final / "data.parquet", df)
    if not fs_of(final).create_exclusive(final / "manifest.json", manifest):
        return Snapshot(digest, final, len(df), created=False)
    log.info("snapshot %s written: %d rows from %d batches", digest[:12], len(df), sources)
    return Snapshot(digest, final, len(df), created=True)


def touch(folder: Path, sha256: str) -> None:
    """Mark a snapshot as used now. ``retrainer gc`` removes a snapshot no registered version references
    only once it has gone unused for ``retention.snapshots``: each retrain step that reads or reuses it
    renews that time (its content is never touched)."""
    path = folder / sha256
    if not isinstance(path, Path):  # object storage has no folders: the manifest carries the time
        if (path / "manifest.json").exists():
            fs_of(path).touch(path / "manifest.json")
    elif path.is_dir():
        os.utime(path)


def read_manifest(folder: Path, sha256: str) -> dict[str, Any]:
    path = folder / sha256 / "manifest.json"
    if not path.exists():
        raise SnapshotIntegrityError(f"snapshot {sha256} not found under {folder}")
    return json.loads(path.read_text())


def load_snapshot(folder: Path, sha256: str) -> pd.DataFrame:
    """Load a snapshot and verify its content still matches its hash."""
    import pandas as pd

    read_manifest(folder, sha256)
    data = folder / sha256 / "data.parquet"
    if isinstance(data, Path):
        df = pd.read_parquet(data)
    else:
        with data.open("rb") as fh:
            df = pd.read_parquet(fh)
    actual = content_hash(df)
    if actual != sha256:
        raise SnapshotIntegrityError(
            f"snapshot {folder / sha256} has been modified: content hashes to {actual[:12]}…, not {sha256[:12]}…"
        )
    return df
