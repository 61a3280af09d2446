"""The local backend: the data root is a folder, and the primitives the data root needs are the POSIX ones.

* an exclusive create is ``open(O_CREAT | O_EXCL)``: of two processes creating the same name, one wins;
* a move that never overwrites is ``link`` then ``unlink`` (``link`` fails if the name exists), and a move
  killed between the two leaves the same file under both names, which the next move finishes;
* an atomic write is a uniquely named temporary file beside the target, then ``rename``: a reader sees
  the old file or the new one, and two concurrent writers never write into one temporary file;
* a lock is ``flock`` on a lock file (released by the kernel when its process dies).

All of it needs one file system under the whole data root (renames and links do not cross devices).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import shutil
from typing import IO, TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path


class LocalFileSystem:
    """The :class:`~retrainer.storage.fs.FileSystem` of a data root on a local (or mounted) folder."""

    name = "local"

    def create_exclusive(self, path: Path, text: str = "") -> bool:
        """Create ``path`` with ``text`` unless it exists; True when this call created it."""
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        return True

    def move_no_overwrite(self, src: Path, dest: Path) -> None:
        """Move ``src`` to ``dest``, failing (FileExistsError) rather than replacing an existing file."""
        _move_no_overwrite(src, dest)

    def same_file(self, a: Path, b: Path) -> bool:
        """Whether two names are one file (a move killed between its link and its unlink)."""
        try:
            return os.path.samefile(a, b)
        except OSError:
            return False

    def write_atomic(self, path: Path, write: Callable[[IO[bytes]], None]) -> Path:
        """Write ``path`` through ``write(binary file)``: a temporary name unique to this writer, then a
        rename; the temporary file is removed when ``write`` fails."""
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")
        try:
            with tmp.open("wb") as fh:
                write(fh)
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return path

    @contextlib.contextmanager
    def lock(self, path: Path) -> Iterator[None]:
        """Hold an exclusive lock named ``path`` (one holder at a time across processes)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def touch(self, path: Path) -> None:
        """Set ``path``'s modification time to now (create it if missing)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()

    def remove(self, path: Path) -> None:
        """Remove a file, or a folder as a whole (renamed aside first: a reader never sees half of it)."""
        if path.is_dir() and not path.is_symlink():
            trash = path.with_name(f".gc-{path.name}")
            os.replace(path, trash)
            shutil.rmtree(trash)
        else:
            path.unlink(missing_ok=True)


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


LOCAL = LocalFileSystem()
