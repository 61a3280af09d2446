"""The archive of one model and its time index.

Archived batches are training data: they leave the archive only through retention. The time index
(``state/<model>/archive_index.json``) records each archived batch's first and last time and the gate's
hash of its rows, so a retrain or gc opens only the files its window needs and a re-export of rows
already archived is recognised.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from retrainer.storage.claims import Claims
from retrainer.storage.io import listing, move_to_free_name, read_columns, sha256_file, write_json
from retrainer.storage.quarantine import reason_path
from retrainer.storage.rows import naive_time, to_utc_naive
from retrainer.storage.rules import BATCH_SUFFIXES, FLAGS_SUFFIX, check_batch_name, now_iso

if TYPE_CHECKING:
    from pathlib import Path

    import pandas as pd


class Archive(Claims):
    """Archived batches, their time index, and moves of a batch by name."""

    def archived(self) -> list[Path]:
        if not self.archive.exists():
            return []
        return [
            p
            for p in listing(self.archive)
            if p.name.endswith(BATCH_SUFFIXES) and not p.name.endswith(FLAGS_SUFFIX)
        ]

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
            out[path] = (naive_time(pd.Timestamp(entry["first"])), naive_time(pd.Timestamp(entry["last"])))
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
        with self.lock(self.state / "archive_index.lock"):
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

    def _move(self, batch: str, to_stage: str) -> Path:
        stage, src = self.locate(batch)
        dest_dir = self.dir(to_stage)
        dest_dir.mkdir(parents=True, exist_ok=True)
        dest = dest_dir / batch
        if stage == to_stage:
            return dest
        if dest.exists():  # never overwrite: keep both, the newcomer gets a suffix
            dest = dest_dir / f"{src.stem}.dup-{sha256_file(src)[:8]}{src.suffix}"
        dest = move_to_free_name(src, dest)
        self._move_flags(src, dest)
        self._release(batch)
        return dest

    def archive_batch(self, batch: str) -> Path:
        return self._move(batch, "archive")

    def quarantine_batch(self, batch: str, reason: dict[str, Any]) -> Path:
        """Move a batch to quarantine and write ``<file>.reason.json`` beside it."""
        dest = self._move(batch, "quarantine")
        payload = {"batch": batch, "quarantined_at": now_iso(), **reason}
        self._unrecorded(dest)
        write_json(reason_path(dest), payload)
        return dest

    def import_batch(self, df: pd.DataFrame, name: str, stage: str = "landing") -> Path:
        """Write a DataFrame as a batch file into ``stage`` (used to seed history and by the demo),
        following the delivery contract: written under a temporary name, then renamed."""
        check_batch_name(name)
        dest_dir = self.dir(stage)
        dest_dir.mkdir(parents=True, exist_ok=True)
        dest = dest_dir / name
        if name.endswith(".csv"):
            self.fs.write_atomic(dest, lambda fh: df.to_csv(fh, index=False))
        else:
            self.fs.write_atomic(dest, lambda fh: df.to_parquet(fh, index=False))
        return dest
