"""Reading and writing files under the data root: batches (CSV or Parquet, whole or in chunks), atomic
Parquet / JSON / text writes, content hashes, and moves to a free name that never overwrite."""

from __future__ import annotations

import contextlib
import hashlib
import json
import pathlib
from typing import IO, TYPE_CHECKING, Any

from retrainer.exceptions import BatchError
from retrainer.storage.fs import fs_of

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    import pandas as pd

CHUNK_ROWS = 100_000  # rows per chunk when a task streams a batch: memory follows columns, not rows


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# -- writes: a reader sees the old file or the new one, never a part ---------------------------------------
def write_parquet(path: Path, df: pd.DataFrame) -> Path:
    """Write ``df`` as Parquet atomically (a temporary name unique to this writer, then a rename)."""
    fs_of(path).write_atomic(path, lambda fh: df.to_parquet(fh, index=False))
    return path


def write_text(path: Path, text: str) -> Path:
    """Write ``text`` atomically (temporary name, then rename): a reader sees the old file or the new one."""
    data = text.encode()

    def write(fh: IO[bytes]) -> None:
        fh.write(data)

    fs_of(path).write_atomic(path, write)
    return path


def write_json(path: Path, payload: Any) -> Path:
    return write_text(path, json.dumps(payload, indent=2, default=str))


def is_link(path: Path) -> bool:
    """Whether ``path`` is a symbolic link (object stores have none: not asked there, it costs a request)."""
    return isinstance(path, pathlib.Path) and path.is_symlink()


def listing(folder: Path, pattern: str = "*") -> list[Path]:
    """The entries of ``folder`` matching ``pattern``, sorted; empty when the folder is gone (on object
    storage a prefix disappears with its last object, possibly between a look and a listing)."""
    try:
        return sorted(folder.glob(pattern), key=str)
    except (FileNotFoundError, NotADirectoryError):
        return []


# -- moves that never overwrite ----------------------------------------------------------------------------
def free_name(path: Path) -> Path:
    """``path``, or ``<stem>.dup-<n><suffix>`` for the first n that is free (a dangling link counts as
    taken)."""
    dest, n = path, 1
    while dest.exists() or is_link(dest):
        dest, n = path.with_name(f"{path.stem}.dup-{n}{path.suffix}"), n + 1
    return dest


def move_to_free_name(src: Path, dest: Path) -> Path:
    """Move ``src`` to :func:`free_name` of ``dest`` and return where it went; a name taken by a
    concurrent mover between the look and the move is skipped, never overwritten."""
    fs = fs_of(src)
    for _ in range(1000):
        target = free_name(dest)
        try:
            fs.move_no_overwrite(src, target)
        except FileExistsError:
            continue
        return target
    raise FileExistsError(f"no free name beside {dest}")


# -- batches -------------------------------------------------------------------------------------------------
@contextlib.contextmanager
def _source(path: Path) -> Iterator[Any]:
    """What pandas and pyarrow read ``path`` from: the path of a local file, an open file otherwise."""
    if isinstance(path, pathlib.Path):
        yield path
        return
    with path.open("rb") as fh:
        yield fh


def read_parquet(path: Path, columns: list[str] | None = None) -> pd.DataFrame:
    """A Parquet file we wrote (records, steps, predictions), on any backend; errors as pandas raises them."""
    import pandas as pd

    with _source(path) as src:
        return pd.read_parquet(src, columns=columns)


def read_batch(path: Path, columns: list[str] | None = None) -> pd.DataFrame:
    """Read a CSV or Parquet batch (all columns, or ``columns``); unreadable files raise
    :class:`BatchError` saying why."""
    import pandas as pd

    try:
        with _source(path) as src:
            if path.suffix == ".csv":
                return pd.read_csv(src, usecols=columns)
            return pd.read_parquet(src, columns=columns)
    except Exception as exc:  # pandas/pyarrow raise many types for a corrupt file
        raise BatchError(f"cannot read {path.name}: {type(exc).__name__}: {exc}") from exc


def batch_columns(path: Path) -> list[str]:
    """The column names of a batch file, read from its header / Parquet footer only."""
    import pandas as pd
    import pyarrow.parquet as pq

    try:
        with _source(path) as src:
            if path.suffix == ".csv":
                return list(pd.read_csv(src, nrows=0).columns)
            return list(pq.read_schema(src).names)
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
        with _source(path) as src:
            if path.suffix == ".csv":
                yield from pd.read_csv(src, usecols=columns, chunksize=rows)
                return
            for rb in pq.ParquetFile(src).iter_batches(batch_size=rows, columns=columns):
                yield rb.to_pandas()
    except BatchError:
        raise
    except Exception as exc:  # pandas/pyarrow raise many types for a corrupt file
        raise BatchError(f"cannot read {path.name}: {type(exc).__name__}: {exc}") from exc
