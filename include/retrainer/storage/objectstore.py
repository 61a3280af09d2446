"""The object-storage backend: the data root is a URL (``s3://bucket/prefix``) read through fsspec.

Object stores have no rename and no hard link, so the primitives that make claims and moves safe are
built on S3's conditional writes (``If-None-Match: *``: the write succeeds only if no object has that key;
of two writers racing for one key exactly one succeeds, the other gets ``412 Precondition Failed``):

* an exclusive create is a ``PutObject`` with ``If-None-Match: *``;
* a move that never overwrites is a server-side copy into the destination (a one-part multipart upload
  whose ``CompleteMultipartUpload`` carries ``If-None-Match: *``), then a delete of the source. A move
  killed between the two leaves the object under both names; the copy records where it came from
  (``x-amz-meta-moved-from`` and the source's ETag), so :meth:`ObjectStoreFileSystem.same_file` knows them
  for one and the next move finishes it, as a local move killed between link and unlink;
* a write is atomic by nature: an object appears whole when its upload completes, or not at all;
* a lock is a lease object created exclusively and deleted on release; a lease older than
  ``RETRAINER_LOCK_STALE_SECONDS`` (default 600; the locked sections take seconds) is taken to belong to
  a process that died and is broken.

Any other fsspec filesystem can hold the data root if its ``open(path, "xb")`` is an exclusive create;
otherwise claims are refused with a message saying so.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

MAX_COPY_BYTES = 5 * 1024**3  # one part of a server-side copy: S3's limit for UploadPartCopy


def lock_stale_seconds() -> float:
    """``RETRAINER_LOCK_STALE_SECONDS`` (default 600): a lock lease this old is broken."""
    return float(os.environ.get("RETRAINER_LOCK_STALE_SECONDS", "600"))


class ObjectStoreFileSystem:
    """The :class:`~retrainer.storage.fs.FileSystem` of a data root on object storage (paths are
    ``upath.UPath`` objects over one fsspec filesystem)."""

    name = "object storage"

    def __init__(self, fs: Any):
        self.fs = fs
        protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
        self.s3 = protocol in ("s3", "s3a")

    def _split(self, path: Any) -> tuple[str, str]:
        bucket, key, _ = self.fs.split_path(path.path)
        return bucket, key

    # -- exclusive create --------------------------------------------------------------------------------
    def create_exclusive(self, path: Any, text: str = "") -> bool:
        """Create ``path`` holding ``text`` unless it exists; True only for the caller that created it."""
        if self.s3:
            bucket, key = self._split(path)
            try:
                self.fs.call_s3("put_object", Bucket=bucket, Key=key, Body=text.encode(), IfNoneMatch="*")
            except FileExistsError:  # 412 Precondition Failed: another writer created it first
                return False
            self.fs.invalidate_cache(path.path)
            return True
        try:
            with self.fs.open(path.path, "xb") as fh:
                fh.write(text.encode())
        except FileExistsError:
            return False
        except (ValueError, NotImplementedError) as exc:
            raise NotImplementedError(
                f"{type(self.fs).__name__} has no exclusive create: claims on it would not be exclusive; "
                "use an S3-compatible store or a local folder for the data root"
            ) from exc
        return True

    # -- moves -------------------------------------------------------------------------------------------
    def move_no_overwrite(self, src: Any, dest: Any) -> None:
        """Copy ``src`` to ``dest`` only if ``dest`` does not exist, then delete ``src``; FileExistsError
        (``src`` kept) when ``dest`` exists and is not a copy of ``src``."""
        if not self.s3:
            raise NotImplementedError(f"moves that never overwrite need S3 conditional writes ({self.fs})")
        info = self.fs.info(src.path)  # FileNotFoundError when src is gone
        try:
            self._copy_if_absent(src, dest, info)
        except FileExistsError:
            if not self.same_file(src, dest):
                raise
            # a copy of src already: a move killed between its copy and its delete; finish it
        self.fs.rm_file(src.path)
        self.fs.invalidate_cache(src.path)

    def _copy_if_absent(self, src: Any, dest: Any, info: dict[str, Any]) -> None:
        bucket, key = self._split(dest)
        src_bucket, src_key = self._split(src)
        meta = {"moved-from": f"{src_bucket}/{src_key}", "source-etag": str(info.get("ETag", ""))}
        size = int(info.get("size") or 0)
        if size == 0:  # nothing to copy: a conditional put of the empty object
            self.fs.call_s3("put_object", Bucket=bucket, Key=key, Body=b"", Metadata=meta, IfNoneMatch="*")
        else:
            if size > MAX_COPY_BYTES:
                raise OSError(
                    f"{src} is {size:,} bytes, above the {MAX_COPY_BYTES:,} one server-side copy moves"
                )
            up = self.fs.call_s3("create_multipart_upload", Bucket=bucket, Key=key, Metadata=meta)
            try:
                part = self.fs.call_s3(
                    "upload_part_copy",
                    Bucket=bucket,
                    Key=key,
                    UploadId=up["UploadId"],
                    PartNumber=1,
                    CopySource={"Bucket": src_bucket, "Key": src_key},
                )
                self.fs.call_s3(
                    "complete_multipart_upload",
                    Bucket=bucket,
                    Key=key,
                    UploadId=up["UploadId"],
                    MultipartUpload={"Parts": [{"ETag": part["CopyPartResult"]["ETag"], "PartNumber": 1}]},
                    IfNoneMatch="*",
                )
            except BaseException:
                with contextlib.suppress(Exception):
                    self.fs.call_s3("abort_multipart_upload", Bucket=bucket, Key=key, UploadId=up["UploadId"])
                raise
        self.fs.invalidate_cache(dest.path)

    def same_file(self, a: Any, b: Any) -> bool:
        """Whether ``b`` is the copy a move of ``a`` made (its recorded source and ETag are ``a``'s)."""
        if not self.s3:
            return False
        try:
            a_info = self.fs.info(a.path)
            bucket, key = self._split(b)
            head = self.fs.call_s3("head_object", Bucket=bucket, Key=key)
        except FileNotFoundError:
            return False
        meta = head.get("Metadata") or {}
        a_bucket, a_key = self._split(a)
        return bool(
            meta.get("moved-from") == f"{a_bucket}/{a_key}"
            and meta.get("source-etag") == str(a_info.get("ETag", ""))
        )

    # -- writes, locks, touching, removing ---------------------------------------------------------------
    def write_atomic(self, path: Any, write: Callable[[IO[bytes]], None]) -> Any:
        """Upload ``path`` through ``write(binary file)``; the object appears when the upload completes,
        and a failed ``write`` uploads nothing."""
        fh = self.fs.open(path.path, "wb")
        try:
            write(fh)
        except BaseException:
            fh.discard()  # abort the upload: nothing becomes visible
            fh.closed = True
            raise
        fh.close()
        self.fs.invalidate_cache(path.path)
        return path

    @contextlib.contextmanager
    def lock(self, path: Any) -> Iterator[None]:
        """A lease object created exclusively; waits while another holder has it, breaks a stale one."""
        lease = json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "at": time.time()})
        while not self.create_exclusive(path, lease):
            with contextlib.suppress(FileNotFoundError, ValueError, OSError):
                held = json.loads(self.fs.cat_file(path.path))
                if time.time() - float(held["at"]) > lock_stale_seconds():  # its holder died
                    self.fs.rm_file(path.path)
                    continue
            time.sleep(0.05)
        try:
            yield
        finally:
            with contextlib.suppress(FileNotFoundError):
                self.fs.rm_file(path.path)
            self.fs.invalidate_cache(path.path)

    def touch(self, path: Any) -> None:
        """Renew ``path``'s modification time (a copy onto itself), or create it empty."""
        if self.s3 and self.fs.exists(path.path):
            bucket, key = self._split(path)
            self.fs.call_s3(
                "copy_object",
                Bucket=bucket,
                Key=key,
                CopySource={"Bucket": bucket, "Key": key},
                MetadataDirective="REPLACE",
                Metadata={"touched": str(time.time())},
            )
        else:
            self.fs.pipe_file(path.path, b"")
        self.fs.invalidate_cache(path.path)

    def remove(self, path: Any) -> None:
        """Remove an object, or every object under a prefix."""
        if self.fs.isdir(path.path):
            self.fs.rm(path.path, recursive=True)
        else:
            self.fs.rm_file(path.path)
        self.fs.invalidate_cache(path.path)
