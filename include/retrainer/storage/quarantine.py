"""Quarantine: rejected files kept with the reason beside them (``<file>.reason.json``), never deleted.

A file that can never be a batch is quarantined straight from landing (:meth:`Quarantine.sweep_landing`);
a claimed batch the gate rejects goes through its claim (:mod:`retrainer.storage.claims`). Each
quarantined batch waits in ``state/<model>/unrecorded/`` until the monitor has written its decision record.
"""

from __future__ import annotations

import contextlib
import json
import re
from pathlib import Path
from typing import Any

from retrainer.exceptions import BatchError
from retrainer.storage.io import is_link, move_to_free_name, write_json
from retrainer.storage.layout import Layout
from retrainer.storage.rules import check_batch_name, max_batch_bytes, now_iso


def reason_path(dest: Path) -> Path:
    """The ``.reason.json`` beside a quarantined file."""
    return dest.with_name(dest.name + ".reason.json")


class Quarantine(Layout):
    """Rejected files of one model and their reasons."""

    def sweep_landing(self, settle: float | None = None) -> list[Path]:
        """Quarantine delivered files that can never be a batch; returns their ``.reason.json`` paths."""
        out = []
        for p in self._landed(settle):
            try:
                check_batch_name(p.name)
                if is_link(p):  # a link could point anywhere: accept real files only
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
        dest = move_to_free_name(src, self.quarantine / safe.name)
        message = f"file {name} of model {self.model} rejected: {reason}"
        self._unrecorded(dest)
        return write_json(
            reason_path(dest),
            {
                "batch": dest.name,
                "delivered_as": name,
                "quarantined_at": now_iso(),
                "message": message,
                "reason": message,  # older readers
                "failures": [],
            },
        )

    def quarantine_reason(self, batch: str) -> dict[str, Any] | None:
        p = self.quarantine / f"{batch}.reason.json"
        return json.loads(p.read_text()) if p.exists() else None

    def quarantine_sidecar(self, batch_path: Path, batch_sha256: str, message: str) -> dict[str, Any]:
        """Move the flags sidecar of the batch at ``batch_path`` to quarantine with its reason (the batch
        itself stays where it is); returns the reason written beside it."""
        src = self.flags_path(batch_path)
        self.quarantine.mkdir(parents=True, exist_ok=True)
        dest = move_to_free_name(src, self.quarantine / src.name)
        payload = {
            "batch": dest.name,
            "sidecar_of": batch_path.name,
            "batch_sha256": batch_sha256,
            "quarantined_at": now_iso(),
            "message": message,
            "reason": message,  # older readers
            "quarantined_as": str(dest),
        }
        write_json(reason_path(dest), payload)
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

    # -- decision records still to write ---------------------------------------------------------------
    def _unrecorded(self, dest: Path) -> None:
        """Note a quarantined file whose decision record is still to be written (by the monitor)."""
        self.fs.touch(self.state / "unrecorded" / dest.name)

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
