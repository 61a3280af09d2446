"""The triggerer side of batch arrival: an event trigger that watches one model's landing folder.

:class:`LandingTrigger` runs in Airflow's triggerer (asynchronously: no worker slot is held while a model
waits for a batch). An ``AssetWatcher`` on the model's arrival asset (:func:`retrainer.dagkit.arrival_asset`)
runs it; each announcement it yields becomes an asset event whose extra is
``{"from_trigger": true, "payload": {"model", "batch", "size", "mtime_ns", "reason"}}`` and starts one run
of ``<model>__monitor``. What is announced, and why a duplicate is harmless, is
:mod:`retrainer.stages.arrival`'s business.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow.triggers.base import BaseEventTrigger, TriggerEvent

from retrainer.stages.arrival import LandingWatch

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

log = logging.getLogger(__name__)


class LandingTrigger(BaseEventTrigger):
    """Poll ``<data_root>/landing/<model>/`` every ``poll_seconds``; one event per announced batch."""

    def __init__(
        self, model: str, data_root: str, poll_seconds: float = 2.0, settle_seconds: float | None = None
    ):
        super().__init__()
        self.model = model
        self.data_root = data_root
        self.poll_seconds = float(poll_seconds)
        self.settle_seconds = settle_seconds

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "model": self.model,
                "data_root": self.data_root,
                "poll_seconds": self.poll_seconds,
                "settle_seconds": self.settle_seconds,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        watch = LandingWatch(Path(self.data_root), self.model, self.settle_seconds)
        while True:
            try:  # a directory listing: off the event loop, so fifty models never stall the triggerer
                due = await asyncio.to_thread(watch.poll)
            except OSError as exc:  # the data root unreachable for a moment: look again next time
                log.warning("landing of %s not readable: %s", self.model, exc)
                due = []
            for announcement in due:
                log.info("batch announced for %s: %s", self.model, announcement)
                yield TriggerEvent(announcement)
            await asyncio.sleep(self.poll_seconds)
