"""The data root: landing, processing, archive, quarantine, snapshots, reports, for one model.

A batch moves ``landing -> processing -> archive`` (or ``-> quarantine`` with a ``.reason.json`` beside it).
Moves never overwrite, so a batch is always in exactly one place and never lost. :class:`DataRoot` is the
one entry point: it is composed of the parts (:mod:`~retrainer.storage.layout` paths,
:mod:`~retrainer.storage.quarantine`, :mod:`~retrainer.storage.claims`, :mod:`~retrainer.storage.archive`
and its time index), and reaches files through the backend of its root (:mod:`~retrainer.storage.fs`).

Delivery contract (what a producer must do, what we promise):

* write the file elsewhere (or under a name starting with ``.`` or ending ``.tmp`` / ``.part``) and rename
  it into ``landing/<model>/`` when it is complete; such temporary names are never claimed;
* a file whose modification time is younger than ``RETRAINER_SETTLE_SECONDS`` (default 5) is still being
  written and is not claimed yet;
* ``.parquet`` and ``.csv`` (lower case) are batches; any other file (``.CSV``, ``.json``, a symbolic link,
  an unsafe name, a file above ``RETRAINER_MAX_BATCH_BYTES``) is moved to ``quarantine/<model>/`` with a
  reason, never deleted; sub-folders (such as a labels feed) are not batches;
* batches are taken oldest first by name: name them so they sort by time.

Claims: :meth:`DataRoot.claim` gives one batch to one orchestrator run (:mod:`retrainer.storage.claims`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from retrainer import settings
from retrainer.storage.archive import Archive

if TYPE_CHECKING:
    from retrainer.config import ModelConfig


class DataRoot(Archive):
    """Paths, claims, quarantine and the archive of one model under the data root."""

    @classmethod
    def for_model(cls, cfg: ModelConfig | str) -> DataRoot:
        """The data root of a model (its config or its name) under the configured root
        (``RETRAINER_DATA_ROOT``)."""
        return cls(settings.data_root(), cfg if isinstance(cfg, str) else cfg.name)
