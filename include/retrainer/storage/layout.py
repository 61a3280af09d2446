"""Where everything of one model lives under the data root, and what landing holds.

``<root>/<stage>/<model>/`` for the stages (``landing``, ``processing``, ``archive``, ``quarantine``) and
the generated folders (``snapshots``, ``reports``, ``predictions``); ``<root>/state/<model>/`` for the
bookkeeping (claims, in-flight locks, the archive index, typed copies, feeds' records).
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

from retrainer.exceptions import BatchError
from retrainer.storage.fs import as_root, fs_of
from retrainer.storage.io import is_link, listing
from retrainer.storage.rules import (
    BATCH_SUFFIXES,
    CLAIMED_STAGES,
    FLAGS_SUFFIX,
    SAFE_NAME,
    STAGES,
    batch_stem,
    check_batch_name,
    is_temporary,
    settle_seconds,
)

if TYPE_CHECKING:
    from contextlib import AbstractContextManager

    from retrainer.storage.fs import FileSystem


class Layout:
    """Paths of one model under the data root."""

    def __init__(self, root: Path | str | Any, model: str):
        self.root: Path = as_root(root)  # a Path, or a upath.UPath for a data root on object storage
        self.model = model

    @property
    def fs(self) -> FileSystem:
        """The backend the data root is on."""
        return fs_of(self.root)

    # -- folders --------------------------------------------------------------------------------------
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

    @property
    def typed(self) -> Path:
        return self.state / "typed"

    @property
    def archive_index(self) -> Path:
        return self.state / "archive_index.json"

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

    def typed_copy(self, sha256: str) -> Path:
        """Where the gate keeps the validated, typed Parquet copy of the batch with this content."""
        return self.typed / f"{sha256}.parquet"

    def flags_path(self, batch_path: Path) -> Path:
        return batch_path.with_name(batch_path.name.rsplit(".", 1)[0] + FLAGS_SUFFIX)

    def path(self, text: str) -> Path:
        """A path recorded as text (``str(path)``) as a path object of this root's backend."""
        if isinstance(self.root, Path):
            return Path(text)
        return type(self.root)(text, **self.root.storage_options)  # type: ignore[attr-defined]

    # -- the root as a whole --------------------------------------------------------------------------
    def ensure(self) -> Self:
        if not isinstance(self.root, Path):  # object storage: folders exist as their objects do
            return self
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

    def remove(self, path: Path) -> None:
        """Remove a file or a whole folder under the data root (refuses anything outside it)."""
        target = self.inside(path)
        if target.exists() or is_link(target):
            self.fs.remove(target)

    def lock(self, path: Path) -> AbstractContextManager[None]:
        """An exclusive lock named ``path`` (one writer at a time across runs)."""
        return self.fs.lock(path)

    def locate(self, batch: str) -> tuple[str, Path]:
        """Where a batch of this name is now: (stage, path); a claimed stage wins over landing."""
        check_batch_name(batch)
        for stage in (*CLAIMED_STAGES, "landing"):
            p = self.dir(stage) / batch
            if p.exists():
                return stage, self.inside(p)
        raise BatchError(f"batch {batch!r} of model {self.model!r} is in none of {STAGES} under {self.root}")

    def _move_flags(self, src: Path, dest: Path) -> None:
        """Move a batch's flags sidecar along with it (a sidecar already at the destination stays)."""
        flags = self.flags_path(src)
        if flags.exists():
            with contextlib.suppress(FileExistsError, FileNotFoundError):
                self.fs.move_no_overwrite(flags, self.flags_path(dest))

    # -- landing --------------------------------------------------------------------------------------
    def _landed(self, settle: float | None = None) -> list[Path]:
        """Files in landing the contract says are delivered: not temporary, not a folder, settled."""
        if not self.landing.exists():
            return []
        settle = settle_seconds() if settle is None else settle
        now = time.time()
        out = []
        for p in listing(self.landing):
            if is_temporary(p.name) or p.name.endswith(FLAGS_SUFFIX):
                continue
            if is_link(p):
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
            if not is_link(p) and p.name.endswith(BATCH_SUFFIXES) and SAFE_NAME.match(p.name)
        ]
