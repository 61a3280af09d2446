"""The one interface between the data root and where its files live.

Everything under the data root reads and lists files through path objects (:class:`pathlib.Path` for a
folder); the few operations whose guarantees differ between backends go through a :class:`FileSystem`:
an exclusive create (claims), a move that never overwrites (batch moves), an atomic write (records,
indexes, Parquet), a lock (index and feed bookkeeping), touching and removing. A backend is one module
implementing it; :func:`fs_of` picks the backend of a path.
"""

from __future__ import annotations

import pathlib
from typing import IO, TYPE_CHECKING, Any, Protocol

from retrainer import settings
from retrainer.storage.local import LOCAL
from retrainer.storage.objectstore import ObjectStoreFileSystem

if TYPE_CHECKING:
    from collections.abc import Callable
    from contextlib import AbstractContextManager


class FileSystem(Protocol):
    """What a data-root backend provides beyond reading and listing."""

    name: str

    def create_exclusive(self, path: Any, text: str = "") -> bool:
        """Create ``path`` holding ``text`` unless it exists; True only for the one caller that created it."""
        ...

    def move_no_overwrite(self, src: Any, dest: Any) -> None:
        """Move ``src`` to ``dest``; FileExistsError (and ``src`` kept) when ``dest`` exists."""
        ...

    def same_file(self, a: Any, b: Any) -> bool:
        """Whether ``a`` and ``b`` are one file (an interrupted move left it under both names)."""
        ...

    def write_atomic(self, path: Any, write: Callable[[IO[bytes]], None]) -> Any:
        """Write ``path`` so that a reader sees the old content or the new, never a part."""
        ...

    def lock(self, path: Any) -> AbstractContextManager[None]:
        """An exclusive lock named ``path`` across processes (and machines, for a shared backend)."""
        ...

    def touch(self, path: Any) -> None:
        """Set ``path``'s modification time to now, creating it if missing."""
        ...

    def remove(self, path: Any) -> None:
        """Remove a file or a whole folder."""
        ...


_REMOTE: dict[int, ObjectStoreFileSystem] = {}  # one backend per fsspec filesystem instance


def fs_of(path: Any) -> FileSystem:
    """The backend holding ``path``: local for a :class:`pathlib.Path`, object storage for a
    ``upath.UPath`` on a remote filesystem."""
    if isinstance(path, pathlib.Path) or getattr(path, "protocol", "file") in ("", "file", "local"):
        return LOCAL
    fs = path.fs
    backend = _REMOTE.get(id(fs))
    if backend is None or backend.fs is not fs:
        backend = _REMOTE[id(fs)] = ObjectStoreFileSystem(fs)
    return backend


def as_root(root: Any) -> Any:
    """A data root as a path object: a local folder as an absolute :class:`pathlib.Path`, a URL
    (``s3://bucket/prefix``, any fsspec protocol) as the ``upath.UPath`` it already is or is parsed to."""
    if isinstance(root, pathlib.Path):
        return root.resolve()
    if isinstance(root, str):
        return settings.data_root_at(root)
    return root
