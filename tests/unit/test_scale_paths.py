"""Big batches and long histories: the chunked estimate, the archive index kept by the archive step, and
unfinished snapshot writes cleaned up after a kill."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pandas as pd
import pytest

from retrainer import storage
from retrainer.config import parse_config
from retrainer.ml.estimation import fit_estimator
from retrainer.ml.train import fit, prepare
from retrainer.stages import feeds, monitor, retention, scoring
from retrainer.storage import DataRoot
from retrainer.storage.snapshots import STALE_TEMP_HOURS, create_snapshot

pytestmark = pytest.mark.unit


def cfg_for(task):
    return parse_config(
        {
            "name": "big",
            "task": task,
            "data": {
                "time_column": "ts",
                "target": "y",
                "features": ["a", "b", {"name": "c", "type": "categorical"}],
            },
            "model": {
                "estimator": "sklearn.linear_model.LogisticRegression"
                if task == "classification"
                else "sklearn.linear_model.Ridge"
            },
            "training": {"window": "4W", "holdout": "1W", "min_rows": 50},
        }
    )


def frame(n, seed, task):
    rng = np.random.default_rng(seed)
    df = pd.DataFrame(
        {
            "ts": pd.Timestamp("2025-01-06")
            + pd.to_timedelta(np.sort(rng.integers(0, 7 * 86400, n)), unit="s"),
            "a": rng.normal(size=n),
            "b": rng.normal(size=n),
            "c": rng.choice(["x", "y", "z"], n),
        }
    )
    signal_ = df["a"] - 0.5 * df["b"] + (df["c"] == "x")
    noise = rng.logistic(size=n)
    df["y"] = (signal_ + noise > 0).astype(int) if task == "classification" else signal_ + 0.3 * noise
    return df


@pytest.mark.parametrize("task", ["classification", "regression"])
def test_decide_estimate_chunk_by_chunk_equals_the_whole_batch(state, monkeypatch, task):
    """The decision's CBPE / DLE estimate, read from the stored predictions and probabilities and the batch
    in chunks, is the estimate over the whole batch held in memory."""
    cfg = cfg_for(task)
    monkeypatch.setattr(storage, "CHUNK_ROWS", 700)  # several chunks, the last one partial
    ref = prepare(cfg, frame(3000, 1, task))
    model = fit(cfg, ref)
    est = fit_estimator(cfg, model, ref)
    dr = DataRoot(state / "data", cfg.name).ensure()
    batch = frame(2500, 2, task)
    path = dr.import_batch(batch, "2025-02-03.parquet", stage="processing")
    claim = {"batch": path.name, "sha256": storage.sha256_file(path)}
    whole = est.estimate(cfg, model, prepare(cfg, batch))

    for with_proba in (True, False):
        stored = scoring.predict_file(cfg, model, path, proba=with_proba)
        assert any(c.startswith(feeds.PROBA) for c in stored) == (with_proba and task == "classification")
        pred_file = state / f"pred-{with_proba}.parquet"
        stored.to_parquet(pred_file, index=False)
        chunked = scoring.estimate_batch(cfg, est, model, claim, {"predictions": str(pred_file)})
        assert chunked.keys() == whole.keys() and len(whole) >= 2
        for k in whole:
            assert chunked[k] == pytest.approx(whole[k], rel=1e-9), k


def test_archive_step_records_the_batch_so_a_retrain_never_opens_it_to_find_its_window(state):
    cfg = cfg_for("classification")
    dr = DataRoot(state / "data", cfg.name).ensure()
    batch = frame(400, 3, "classification")
    dr.import_batch(batch, "2025-01-06.csv")
    claim = dr.claim("run-1")
    assert claim is not None

    monitor.archive_batch(cfg, claim.to_dict())

    archived = dr.archive / "2025-01-06.csv"
    index = dr._read_index()
    assert set(index) == {archived.name}
    assert pd.Timestamp(index[archived.name]["last"]) == batch["ts"].max()
    # same size and time stamp, garbage content: only a read of the file could notice, and none happens
    st = archived.stat()
    archived.write_bytes(b"\0" * st.st_size)
    os.utime(archived, ns=(st.st_atime_ns, st.st_mtime_ns))
    ranges = dr.archive_ranges(cfg.data.time_column)
    assert ranges[archived] == (batch["ts"].min(), batch["ts"].max())
    # a file that leaves the archive (gc) leaves the index at the next update
    archived.unlink()
    assert dr.archive_ranges(cfg.data.time_column) == {} and dr._read_index() == {}


KILLED_WRITER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    import pandas as pd
    from retrainer.storage.snapshots import create_snapshot

    folder, ready = Path(sys.argv[1]), Path(sys.argv[2])
    real = pd.DataFrame.to_parquet

    def write_then_hang(self, path, *a, **k):  # the data file is written, the rename never comes
        real(self, path, *a, **k)
        ready.touch()
        time.sleep(600)

    pd.DataFrame.to_parquet = write_then_hang
    df = pd.DataFrame({"ts": pd.date_range("2025-01-01", periods=50, freq="h"), "x": range(50)})
    create_snapshot(df, folder, time_column="ts", sources=["a.csv"])
    """
)


def test_a_snapshot_killed_mid_write_leaves_a_temp_folder_the_next_snapshot_and_gc_remove(state, tmp_path):
    folder = state / "data" / "snapshots" / "big"
    ready = tmp_path / "ready"
    proc = subprocess.Popen(
        [sys.executable, "-c", KILLED_WRITER, str(folder), str(ready)],
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    try:
        for _ in range(600):
            if ready.exists() or proc.poll() is not None:
                break
            time.sleep(0.1)
        assert ready.exists(), "the snapshot writer never reached its write"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    (left,) = list(folder.glob(".tmp-*"))
    assert (left / "data.parquet").exists() and not list(folder.glob("[!.]*"))

    df = pd.DataFrame({"ts": pd.date_range("2025-02-01", periods=30, freq="h"), "x": range(30)})
    create_snapshot(df, folder, time_column="ts", sources=["b.csv"])
    assert left.exists()  # recent: it could be a write in progress in another process

    old = time.time() - (STALE_TEMP_HOURS + 1) * 3600
    for p in [left, *left.iterdir()]:
        os.utime(p, (old, old))
    cfg = cfg_for("classification")
    plan = retention.collect(cfg, dry_run=True)
    assert [e["path"] for e in plan.remove["snapshots"]] == [str(left)]
    assert left.exists()  # a dry run removes nothing

    df2 = df.assign(x=df["x"] + 1)
    snap = create_snapshot(df2, folder, time_column="ts", sources=["c.csv"])
    assert not left.exists() and snap.created
    assert not list(folder.glob(".tmp-*")) and len(list(folder.iterdir())) == 2
