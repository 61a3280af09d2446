"""Two processes racing for the same batches get each batch exactly once, on a local folder and on moto's
S3 emulator (moto's server mode on 127.0.0.1: claims there rest on S3 conditional writes)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from typing import TYPE_CHECKING

import pandas as pd
import pytest

from retrainer.storage import DataRoot
from tests.support.s3_emulator import MotoS3

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.integration

BATCHES = [f"2024-01-{day:02d}.parquet" for day in range(1, 9)]
FRAME = pd.DataFrame({"t": pd.date_range("2024-01-01", periods=4, freq="h"), "x": [1.0, 2.0, 3.0, 4.0]})

WORKER = r"""
import json, sys, time
from retrainer.storage import DataRoot

name, start = sys.argv[1], float(sys.argv[2])
dr = DataRoot.for_model("m")
while time.time() < start:  # both workers begin together
    time.sleep(0.005)
got, n = [], 0
while True:
    claim = dr.claim(f"{name}-run-{n}")
    n += 1
    if claim is None:
        break
    got.append(claim.batch)
    dr.archive_claim(claim)
print(json.dumps(got))
"""


@pytest.fixture(scope="module")
def s3_emulator():
    emulator = MotoS3.start()
    yield emulator
    emulator.stop()


@pytest.fixture(params=["local", "s3-emulator"])
def root_env(request, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The environment of a fresh data root: a temp folder, or a new bucket on moto's S3 emulator."""
    if request.param == "local":
        env = {"RETRAINER_DATA_ROOT": str(tmp_path / "data")}
    else:
        emulator = request.getfixturevalue("s3_emulator")
        env = emulator.env(emulator.new_bucket() + "/data")
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("RETRAINER_SETTLE_SECONDS", "0")
    return env


def test_two_processes_racing_claim_each_batch_exactly_once(root_env: dict[str, str]) -> None:
    dr = DataRoot.for_model("m").ensure()
    for name in BATCHES:
        dr.import_batch(FRAME, name)
    start = time.time() + 8  # both interpreters are up and importing by then
    env = {**os.environ, **root_env}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, worker, str(start)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for worker in ("a", "b")
    ]
    outs = [p.communicate(timeout=600) for p in procs]

    assert all(p.returncode == 0 for p in procs), [err[-2000:] for _, err in outs]
    a, b = (json.loads(out.strip().splitlines()[-1]) for out, _ in outs)
    assert not set(a) & set(b), (a, b)  # no batch went to both
    assert sorted(a + b) == BATCHES  # and none was missed
    assert sorted(p.name for p in dr.archived()) == BATCHES
    assert dr.pending() == [] and dr.in_processing() == []
    assert not [p for p in dr.inflight.glob("*")] if dr.inflight.exists() else True  # every lock released


def test_a_batch_whose_run_died_mid_claim_is_resumed_and_kept_by_its_new_run(
    root_env: dict[str, str],
) -> None:
    dr = DataRoot.for_model("m").ensure()
    dr.import_batch(FRAME, BATCHES[0])
    dead = dr.claim("run-that-died")  # claimed, moved to processing, never finished

    first = dr.claim("run-2", owner_alive=lambda c: False)
    second = dr.claim("run-3", owner_alive=lambda c: c.run_id == "run-2")  # run-2 is working on it

    assert dead is not None and first is not None and first.batch == dead.batch
    assert first.attempt == 2 and first.previous_runs == ("run-that-died",)
    assert second is None  # a batch whose run is alive is not taken from it
    assert dr.path_of(first)[0] == "processing"
