"""Batch arrival by announcement: what the landing watch announces, and that a duplicate never processes a
batch twice (the claim decides)."""

from __future__ import annotations

import asyncio
import os
import time
from typing import TYPE_CHECKING

import pytest

from retrainer.stages.arrival import LandingWatch
from retrainer.storage import DataRoot

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.unit
MODEL = "m"


def _land(root: Path, name: str, body: bytes = b"a,b\n1,2\n", age: float = 60.0) -> Path:
    """Deliver a file by rename (the delivery contract), ``age`` seconds old."""
    landing = DataRoot(root, MODEL).ensure().landing
    tmp = landing / f".{name}.part"
    tmp.write_bytes(body)
    t = time.time() - age
    os.utime(tmp, (t, t))
    dest = landing / name
    tmp.rename(dest)
    return dest


def _batches(announcements: list[dict]) -> list[tuple[str, str]]:
    return [(a["batch"], a["reason"]) for a in announcements]


def test_each_delivered_file_is_announced_once_with_its_identity(tmp_path: Path) -> None:
    watch = LandingWatch(tmp_path, MODEL, settle=5)
    assert watch.poll() == []
    path = _land(tmp_path, "2024-01.parquet")
    _land(tmp_path, "2024-02.csv")
    first = watch.poll()
    assert _batches(first) == [("2024-01.parquet", "landed"), ("2024-02.csv", "landed")]
    st = path.stat()
    assert first[0] == {
        "model": MODEL,
        "batch": "2024-01.parquet",
        "size": st.st_size,
        "mtime_ns": st.st_mtime_ns,
        "reason": "landed",
    }
    assert watch.poll() == [] and watch.poll() == []  # a file that stays is not announced forever


def test_temporary_and_unsettled_files_wait(tmp_path: Path) -> None:
    watch = LandingWatch(tmp_path, MODEL, settle=5)
    landing = DataRoot(tmp_path, MODEL).ensure().landing
    (landing / "2024-03.parquet.part").write_bytes(b"x")
    (landing / ".hidden.csv").write_bytes(b"x")
    (landing / "labels").mkdir()
    young = _land(tmp_path, "2024-04.csv", age=0)
    assert watch.poll() == []
    t = time.time() - 10
    os.utime(young, (t, t))
    assert _batches(watch.poll()) == [("2024-04.csv", "landed")]


def test_a_file_that_can_never_be_a_batch_is_announced_so_a_run_quarantines_it(tmp_path: Path) -> None:
    _land(tmp_path, "EXPORT.CSV")
    assert _batches(LandingWatch(tmp_path, MODEL, settle=0).poll()) == [("EXPORT.CSV", "landed")]


def test_a_replaced_file_is_announced_again(tmp_path: Path) -> None:
    watch = LandingWatch(tmp_path, MODEL, settle=0)
    path = _land(tmp_path, "2024-05.csv")
    assert len(watch.poll()) == 1
    path.write_bytes(b"a,b\n1,2\n3,4\n")  # a new export under the same name
    assert _batches(watch.poll()) == [("2024-05.csv", "replaced")]
    assert watch.poll() == []


def test_after_a_claim_the_oldest_file_still_waiting_is_announced_again_once(tmp_path: Path) -> None:
    """Events arriving while a run is active merge into one run: each claim re-announces one waiting file,
    so every batch gets a run of its own and none waits for the next delivery."""
    dr = DataRoot(tmp_path, MODEL)
    for week in ("01", "02", "03"):
        _land(tmp_path, f"2024-{week}.csv")
    watch = LandingWatch(tmp_path, MODEL, settle=0)
    assert len(watch.poll()) == 3
    assert watch.poll() == []
    assert dr.claim("run-1") is not None  # takes the oldest
    assert _batches(watch.poll()) == [("2024-02.csv", "still waiting")]
    assert watch.poll() == []
    assert dr.claim("run-2").batch == "2024-02.csv"
    assert _batches(watch.poll()) == [("2024-03.csv", "still waiting")]
    assert dr.claim("run-3").batch == "2024-03.csv"
    assert watch.poll() == []  # nothing waits: nothing to announce


def test_a_file_delivered_again_under_a_claimed_name_is_a_new_announcement(tmp_path: Path) -> None:
    dr = DataRoot(tmp_path, MODEL)
    _land(tmp_path, "2024-06.csv")
    watch = LandingWatch(tmp_path, MODEL, settle=0)
    assert len(watch.poll()) == 1
    dr.claim("run-1")
    assert watch.poll() == []
    _land(tmp_path, "2024-06.csv", body=b"a,b\n9,9\n")
    assert _batches(watch.poll()) == [("2024-06.csv", "landed")]


def test_a_batch_stuck_in_processing_is_announced_once_per_claim(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dr = DataRoot(tmp_path, MODEL)
    _land(tmp_path, "2024-07.csv")
    watch = LandingWatch(tmp_path, MODEL, settle=0)
    watch.poll()
    dr.claim("run-that-dies")
    assert watch.poll() == []  # claimed just now: its run may still be working on it
    monkeypatch.setenv("RETRAINER_STUCK_AFTER_MINUTES", "0")
    assert _batches(watch.poll()) == [("2024-07.csv", "stuck in processing")]
    assert watch.poll() == []


def test_duplicate_and_replayed_announcements_process_a_batch_once(tmp_path: Path) -> None:
    """A triggerer restart forgets what it announced: the batch is announced again, and the run that
    event starts finds nothing to claim."""
    dr = DataRoot(tmp_path, MODEL)
    _land(tmp_path, "2024-08.csv")
    before_restart = LandingWatch(tmp_path, MODEL, settle=0).poll()
    after_restart = LandingWatch(tmp_path, MODEL, settle=0).poll()
    assert before_restart == after_restart  # the same identity, announced twice
    claims = [dr.claim(f"run-{i}") for i in range(len(before_restart + after_restart))]
    assert [c.batch for c in claims if c is not None] == ["2024-08.csv"]


def test_the_trigger_yields_one_event_per_announcement_and_serializes(tmp_path: Path) -> None:
    # imported here: airflow.triggers loads Airflow's settings, which must not happen at collection time
    from retrainer.triggers import LandingTrigger

    _land(tmp_path, "2024-09.csv")
    _land(tmp_path, "2024-10.csv")
    trigger = LandingTrigger(model=MODEL, data_root=str(tmp_path), poll_seconds=0.05, settle_seconds=0)

    async def first(n: int) -> list:
        out = []
        gen = trigger.run()
        try:
            async for event in gen:
                out.append(event.payload)
                if len(out) == n:
                    return out
        finally:
            await gen.aclose()
        return out

    got = asyncio.run(asyncio.wait_for(first(2), timeout=10))
    assert [p["batch"] for p in got] == ["2024-09.csv", "2024-10.csv"]
    classpath, kwargs = trigger.serialize()
    assert classpath == "retrainer.triggers.LandingTrigger"
    again = LandingTrigger(**kwargs)
    assert again.serialize() == (classpath, kwargs)
    assert LandingTrigger.hash(classpath, kwargs) == again.hash(*again.serialize())
