"""Labels and flags feeds: delivery contract, idempotence, quarantine, late joins, the shared delay rule."""

from __future__ import annotations

import contextlib
import json
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pytest

from retrainer import settings
from retrainer.config import parse_config
from retrainer.exceptions import ConfigError
from retrainer.stages import feeds
from retrainer.storage import DataRoot, write_parquet
from tests.support.s3_emulator import MotoS3
from tests.support.streams import ROWS, deliver_file, stream_config, stream_day

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.unit


def make_cfg(id_column: str | None = "rid"):
    return stream_config("fed", id_column)


def name(i: int) -> str:
    return f"2024-01-{i + 1:02d}.parquet"


def archive(dr: DataRoot, i: int, *, labelled: bool = False, version: int | None = 1) -> pd.DataFrame:
    """Day ``i`` archived (without labels unless asked) with the champion's stored predictions."""
    df = stream_day(i)
    dr.import_batch(df if labelled else df.drop(columns=["y"]), name(i), stage="archive")
    if version is not None:
        pred = df[["ts"]].assign(prediction=df.y + 0.5)  # off by 0.5 everywhere: mae 0.5
        dr.predictions.mkdir(parents=True, exist_ok=True)
        pred.to_parquet(dr.predictions / f"{name(i)[:-8]}.v{version}.parquet", index=False)
    return df


def deliver(dr: DataRoot, frame: pd.DataFrame, fname: str, kind: str = "labels") -> Path:
    """Write elsewhere, rename in (the delivery contract)."""
    return deliver_file(dr.landing / kind, frame, fname)


def claim(i: int) -> dict:
    return {"batch": name(i), "sha256": f"sha-{i}"}


def current(i: int, *, labelled: bool = False) -> pd.DataFrame:
    df = stream_day(i)
    df["prediction"] = df.y + 0.5
    return df if labelled else df.drop(columns=["y"])


@pytest.fixture
def dr(state) -> DataRoot:
    return DataRoot(settings.data_root(), "fed").ensure()


# -- ingest: contract, idempotence, quarantine -----------------------------------------------------------
def test_ingest_follows_the_delivery_contract_and_is_idempotent(dr):
    cfg = make_cfg()
    labels = stream_day(0)[["rid", "y"]]
    deliver(dr, labels, "week1.csv")
    (dr.landing / "labels" / ".hidden.csv").write_text("rid,y\nd0-0,1\n")
    (dr.landing / "labels" / "writing.csv.part").write_text("rid,y\nd0-0,")
    (dr.landing / "labels" / "writing.csv.tmp").write_text("rid,y\nd0-0,")

    first = feeds.ingest(cfg, by="test")
    deliver(dr, labels, "week1-again.csv")  # the same content under another name
    second = feeds.ingest(cfg, by="test")

    assert [d["file"] for d in first["labels"]["ingested"]] == ["week1.csv"]
    assert second["labels"]["duplicates"] == ["week1-again.csv"]
    store = feeds.FeedStore(cfg, "labels")
    assert len(store.rows()) == ROWS  # not counted twice
    assert (dr.archive / "labels" / "week1.csv").exists()
    reason = json.loads((dr.quarantine / "labels" / "week1-again.csv.reason.json").read_text())
    assert "duplicate" in reason["message"] and reason["duplicate_of"] == "week1.csv"
    assert reason["reason"] == reason["message"]
    left = sorted(p.name for p in (dr.landing / "labels").iterdir())
    assert left == [".hidden.csv", "writing.csv.part", "writing.csv.tmp"]  # never read, never moved


def test_a_file_still_being_written_is_not_read(dr, monkeypatch):
    import os
    import time

    cfg = make_cfg()
    monkeypatch.setenv("RETRAINER_SETTLE_SECONDS", "60")
    path = deliver(dr, stream_day(0)[["rid", "y"]], "slow.csv")  # modified just now: maybe still growing

    assert feeds.ingest(cfg, by="test")["labels"]["ingested"] == []
    assert path.exists()
    old = time.time() - 120
    os.utime(path, (old, old))  # unchanged for two minutes: delivered
    assert [d["file"] for d in feeds.ingest(cfg, by="test")["labels"]["ingested"]] == ["slow.csv"]


@pytest.mark.parametrize(
    ("content", "fname", "expect"),
    [
        ("rid,label\nd0-0,1\n", "no-target.csv", "missing column(s) ['y']"),
        ("y\n1\n", "no-id.csv", "missing column(s) ['rid']"),
        ("rid,y\nd0-0,1\nd0-1,\n", "empty-label.csv", "column 'y' (the label) is empty in 1 row(s)"),
        ("rid,y\nd0-0,1\n,2\n", "empty-id.csv", "column 'rid' is empty in 1 row(s)"),
        ("rid,y\nd0-0,1\nd0-1,many\n", "text-label.csv", "column 'y' must be numeric"),
        ("rid,y\nd0-0,1\nd0-0,2\n", "conflict.csv", "appear with different labels"),
        ("rid,y\n", "header-only.csv", "no rows"),
        ("PAR1garbage", "broken.parquet", "cannot read broken.parquet"),
        ("rid,y\nd0-0,1\n", "labels.txt", "unsupported format"),
        ("rid,y\nd0-0,1\n", "labels.CSV", "unsupported format"),
    ],
)
def test_bad_labels_files_are_quarantined_with_a_reason(dr, content, fname, expect):
    cfg = make_cfg()
    folder = dr.landing / "labels"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / fname).write_text(content)

    out = feeds.ingest(cfg, by="test")

    assert [q["file"] for q in out["labels"]["quarantined"]] == [fname]
    assert (dr.quarantine / "labels" / fname).exists()  # kept, never deleted
    reason = json.loads((dr.quarantine / "labels" / f"{fname}.reason.json").read_text())
    assert expect in reason["message"] and fname in reason["message"]
    assert feeds.FeedStore(cfg, "labels").rows().empty


def test_symlinked_labels_file_is_quarantined_not_followed(dr, tmp_path):
    cfg = make_cfg()
    target = tmp_path / "outside.csv"
    target.write_text("rid,y\nd0-0,1\n")
    (dr.landing / "labels").mkdir(parents=True)
    (dr.landing / "labels" / "link.csv").symlink_to(target)

    out = feeds.ingest(cfg, by="test")

    assert out["labels"]["quarantined"][0]["file"] == "link.csv"
    assert target.exists() and (dr.quarantine / "labels" / "link.csv").is_symlink()


def _ingest_bounded(cfg, fifo: Path | None = None, seconds: float = 20.0) -> dict:
    """``feeds.ingest`` in a thread that must finish within ``seconds``; a reader stuck opening ``fifo``
    (the file was read before it was judged) is released afterwards so the test can end."""
    import os
    import threading

    result: dict = {}
    worker = threading.Thread(target=lambda: result.update(feeds.ingest(cfg, by="test")), daemon=True)
    worker.start()
    worker.join(seconds)
    stuck = worker.is_alive()
    while fifo is not None and worker.is_alive():  # unblock the reader: a writer opens and closes at once
        with contextlib.suppress(OSError):  # no reader waiting at this instant
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        worker.join(0.2)
    assert not stuck, "ingest read the file before refusing it"
    return result


@pytest.mark.parametrize("kind", ["labels", "flags"])
@pytest.mark.parametrize("link", ["dangling", "folder", "outside-pipe", "pipe"])
def test_links_and_special_files_are_refused_before_any_read(dr, tmp_path, kind, link):
    """A link (dangling, to a folder, to something outside the data root) or a pipe is quarantined from
    its own metadata, never opened: it once failed every ingest (and every snapshot) for good."""
    import os

    cfg = make_cfg()
    folder = dr.landing / kind
    folder.mkdir(parents=True)
    fifo = None
    landed = folder / "bad.csv"
    if link == "dangling":
        landed.symlink_to(tmp_path / "gone.csv")
    elif link == "folder":
        (tmp_path / "somewhere").mkdir()
        landed.symlink_to(tmp_path / "somewhere")
    elif link == "outside-pipe":  # reading it would wait for a writer forever
        fifo = tmp_path / "outside.csv"
        os.mkfifo(fifo)
        landed.symlink_to(fifo)
    else:
        fifo = landed
        os.mkfifo(fifo)
    deliver(
        dr,
        stream_day(0)[["rid", "y"]].rename(columns={"y": "y" if kind == "labels" else "reason"}),
        "ok.csv",
        kind,
    )

    out = _ingest_bounded(cfg, fifo)
    again = _ingest_bounded(cfg, fifo)  # nothing left to fail on: the next run goes on

    assert [q["file"] for q in out[kind]["quarantined"]] == ["bad.csv"]
    assert [d["file"] for d in out[kind]["ingested"]] == ["ok.csv"]
    expect = "symbolic link" if link != "pipe" else "not a regular file"
    reason = json.loads((dr.quarantine / kind / "bad.csv.reason.json").read_text())
    assert expect in reason["message"]
    kept = dr.quarantine / kind / "bad.csv"
    assert kept.is_symlink() or kept.is_fifo()  # the link or pipe itself is kept, never its target
    assert again[kind] == {"feed": kind, "ingested": [], "duplicates": [], "quarantined": []}


def test_a_second_dangling_link_does_not_replace_the_first_in_quarantine(dr, tmp_path):
    cfg = make_cfg()
    folder = dr.landing / "labels"
    folder.mkdir(parents=True)
    (folder / "x.csv").symlink_to(tmp_path / "first")
    feeds.ingest(cfg, by="test")
    (folder / "x.csv").symlink_to(tmp_path / "second")
    feeds.ingest(cfg, by="test")

    targets = sorted(str(p.readlink().name) for p in (dr.quarantine / "labels").glob("x*.csv"))
    assert targets == ["first", "second"]


def test_feed_files_are_bounded_like_batches(dr, monkeypatch):
    cfg = make_cfg()
    monkeypatch.setenv("RETRAINER_MAX_BATCH_BYTES", "200")
    deliver(dr, stream_day(0)[["rid", "y"]], "big.csv")  # 48 rows: well above 200 bytes
    deliver(dr, stream_day(0)[["rid", "y"]].iloc[:3], "small.csv")

    out = feeds.ingest(cfg, by="test")

    assert [q["file"] for q in out["labels"]["quarantined"]] == ["big.csv"]
    assert "above RETRAINER_MAX_BATCH_BYTES=200" in out["labels"]["quarantined"][0]["message"]
    assert (dr.quarantine / "labels" / "big.csv").exists()
    assert len(feeds.FeedStore(cfg, "labels").rows()) == 3


def test_feeds_need_an_id_column(dr):
    cfg = make_cfg(id_column=None)
    deliver(dr, stream_day(0)[["rid", "y"]], "week1.csv")

    with pytest.raises(ConfigError, match=r"data\.id_column"):
        feeds.FeedStore(cfg, "labels").ingest(by="test")
    out = feeds.ingest(cfg, by="test")  # the monitor's entry point reports it and leaves the file

    assert out["errors"] and "data.id_column" in out["errors"][0]
    assert (dr.landing / "labels" / "week1.csv").exists()


def test_id_column_cannot_be_a_feature():
    with pytest.raises(ConfigError, match="id_column"):
        parse_config(
            {
                "name": "bad",
                "task": "regression",
                "data": {"time_column": "ts", "target": "y", "features": ["a"], "id_column": "a"},
                "model": {"estimator": "sklearn.linear_model.Ridge"},
            }
        )


# -- late labels: performance and training ---------------------------------------------------------------
def test_late_labels_score_the_stored_predictions_of_their_batch(dr):
    cfg = make_cfg()
    archive(dr, 0)
    deliver(dr, stream_day(0)[["rid", "y"]].iloc[:30], "labels-day0.parquet")
    feeds.ingest(cfg, by="monitor:sha-1")

    matured, info = feeds.label_step(cfg, claim(1), current(1), version=1)
    signal = feeds.performance_signal(cfg, matured, "v1")

    assert signal["labelled_rows"] == 30 and signal["value"] == pytest.approx(0.5)
    assert info["late_labelled_rows"] == 30
    late = info["late_labels"][0]
    assert late["batch"] == name(0) and late["batches_late"] == 1 and late["rows"] == 30
    assert late["predicted_by"] == "v1" and late["hours_late"] >= 0
    assert info["label_deliveries"] == ["labels-day0.parquet"]

    again, _ = feeds.label_step(cfg, claim(1), current(1), version=1)  # a re-run of the same step
    assert [(m.batch, len(m.y)) for m in again] == [(m.batch, len(m.y)) for m in matured]
    archive(dr, 1)
    nxt, _ = feeds.label_step(cfg, claim(2), current(2), version=1)
    assert nxt == []  # each label is scored once


def test_labels_before_their_batch_wait_and_score_it_when_it_arrives(dr):
    cfg = make_cfg()
    archive(dr, 0)
    deliver(dr, stream_day(1)[["rid", "y"]], "early.csv")  # labels for a batch not delivered yet
    feeds.ingest(cfg, by="test")

    matured, info = feeds.label_step(cfg, claim(0), current(0), version=1)
    assert matured == [] and info["waiting_labels"] == ROWS

    matured, info = feeds.label_step(cfg, claim(1), current(1), version=1)
    assert [(m.batch, len(m.y), m.batches_late) for m in matured] == [(name(1), ROWS, 0)]
    assert info["waiting_labels"] == 0


def test_labels_for_a_previous_champions_predictions_are_not_scored(dr):
    cfg = make_cfg()
    archive(dr, 0, version=1)
    deliver(dr, stream_day(0)[["rid", "y"]], "l.csv")
    feeds.ingest(cfg, by="test")

    matured, info = feeds.label_step(cfg, claim(1), current(1), version=2)
    signal = feeds.performance_signal(cfg, matured, "v2")

    assert signal["labelled_rows"] == 0 and signal["value"] is None
    assert signal["batches"] == [
        {"batch": name(0), "rows": ROWS, "batches_late": 1, "predicted_by": "v1", "scored": False}
    ]
    assert info["late_labelled_rows"] == 0 and info["late_labels"][0]["scored"] is False


def test_training_uses_every_arrived_label_and_the_snapshot_hash_follows(dr):
    from retrainer.stages import retrain

    cfg = make_cfg()
    for i in range(3):
        archive(dr, i, labelled=True)
    archive(dr, 3)  # unlabelled when it arrived
    before = retrain.snapshot(cfg)
    again = retrain.snapshot(cfg)

    deliver(dr, stream_day(3)[["rid", "y"]], "day3.csv")
    after = retrain.snapshot(cfg)  # the retrain ingests what landed: the labels arrived by snapshot time
    after_again = retrain.snapshot(cfg)

    assert again["sha256"] == before["sha256"] and again["created"] is False
    assert after["sha256"] != before["sha256"] and after["created"] is True
    assert after["rows"] == before["rows"] + ROWS
    assert name(3) in after["sources"] and name(3) not in before["sources"]
    assert after_again["sha256"] == after["sha256"] and after_again["created"] is False
    assert len([p for p in dr.snapshots.iterdir() if not p.name.startswith(".")]) == 2


def test_a_later_label_corrects_an_earlier_one_for_training(dr):
    cfg = make_cfg()
    archive(dr, 0)
    deliver(dr, pd.DataFrame({"rid": ["d0-0"], "y": [1.0]}), "a.csv")
    feeds.ingest(cfg, by="test")
    deliver(dr, pd.DataFrame({"rid": ["d0-0"], "y": [7.0]}), "b.csv")
    feeds.ingest(cfg, by="test")

    df = feeds.apply_labels(cfg, stream_day(0).drop(columns=["y"]))

    assert df.loc[0, "y"] == 7.0 and df["y"].notna().sum() == 1


# -- flags -----------------------------------------------------------------------------------------------
def test_late_flags_count_towards_the_batch_they_refer_to(dr):
    cfg = make_cfg()
    archive(dr, 0)
    flags = pd.DataFrame({"rid": [f"d0-{n}" for n in range(6)], "reason": "wrong"})
    deliver(dr, flags, "flags-1.csv", kind="flags")
    feeds.ingest(cfg, by="test")

    out = feeds.flag_step(cfg, claim(1), current(1), set())
    again = feeds.flag_step(cfg, claim(1), current(1), set())
    deliver(dr, flags, "flags-1-again.csv", kind="flags")  # the same file twice
    deliver(dr, pd.DataFrame({"rid": ["d0-10", "d0-0"]}), "flags-2.csv", kind="flags")
    feeds.ingest(cfg, by="test")
    archive(dr, 1)
    later = feeds.flag_step(cfg, claim(2), current(2), {"d2-0"})

    assert out == again
    assert out["flagged_batches"] == [
        {"batch": name(0), "new_flags": 6, "flagged": 6, "rows": ROWS, "rate": 6 / ROWS, "batches_late": 1}
    ]
    assert out["flagged_rate"] == 6 / ROWS
    by_batch = {b["batch"]: b for b in later["flagged_batches"]}
    assert by_batch[name(0)]["flagged"] == 7 and by_batch[name(0)]["new_flags"] == 1  # d0-0 once
    assert by_batch[name(0)]["batches_late"] == 2
    assert by_batch[name(2)]["flagged"] == 1 and by_batch[name(2)]["batches_late"] == 0
    assert later["flagged_rate"] == 7 / ROWS


def claimed_with_sidecar(dr: DataRoot, i: int, sidecar: str | None) -> dict:
    """Day ``i`` delivered with ``<batch>.flags.csv`` (text as given) and claimed by a monitor run."""
    if sidecar is not None:
        dr.landing.mkdir(parents=True, exist_ok=True)
        (dr.landing / f"{name(i)[:-8]}.flags.csv").write_text(sidecar)
    dr.import_batch(stream_day(i).drop(columns=["y"]), name(i))
    got = dr.claim(f"run-{i}")
    assert got is not None
    return got.to_dict()


@pytest.mark.parametrize("id_column", ["rid", None])
def test_sidecar_flags_count_only_the_batch_rows(dr, id_column):
    """Sidecar ids or rows the batch does not have are not counted (they once made a 24% flagged rate)."""
    from retrainer.stages import monitor

    cfg = make_cfg(id_column)
    if id_column:  # 6 of the batch's ids and 40 the batch does not have
        lines = [f"d1-{n}" for n in range(6)] + [f"other-{n}" for n in range(40)]
        sidecar = "rid\n" + "\n".join(lines) + "\n"
    else:  # rows 0..5 and 40 rows beyond the batch's end
        sidecar = "row\n" + "\n".join(str(r) for r in [*range(6), *range(ROWS, ROWS + 40)]) + "\n"
    c = claimed_with_sidecar(dr, 1, sidecar)

    out = monitor.flagged_rate(cfg, c, {"rows": ROWS})

    assert out["flagged"] == 6 and out["flagged_rate"] == pytest.approx(6 / ROWS)
    assert out["sidecar_unknown"] == 40


@pytest.mark.parametrize(
    ("sidecar", "expect"),
    [
        ("", "cannot read it"),
        ("note\nwrong\n", "needs a 'row' column"),
        ("row\nthree\n", "whole numbers"),
        ('rid,"x\n', "cannot read it"),
    ],
)
@pytest.mark.parametrize("id_column", ["rid", None])
def test_a_bad_sidecar_is_quarantined_and_the_batch_rate_not_counted(dr, sidecar, expect, id_column):
    from retrainer.stages import monitor

    cfg = make_cfg(id_column)
    c = claimed_with_sidecar(dr, 1, sidecar)

    out = monitor.flagged_rate(cfg, c, {"rows": ROWS})
    again = monitor.flagged_rate(cfg, c, {"rows": ROWS})  # a retry of the task: the same answer

    assert out["flagged_rate"] is None and again == out
    kept = dr.quarantine / f"{name(1)[:-8]}.flags.csv"
    assert kept.read_text() == sidecar  # kept as delivered, never deleted
    reason = json.loads(kept.with_name(kept.name + ".reason.json").read_text())
    assert expect in reason["message"] and kept.name in reason["message"]
    assert reason["sidecar_of"] == name(1) and reason["batch_sha256"] == c["sha256"]
    assert out["flags_sidecar_quarantined"]["message"] == reason["message"]
    assert (dr.processing / name(1)).exists()  # the batch itself goes on


def test_a_bad_sidecar_leaves_late_flags_for_earlier_batches_counted(dr):
    from retrainer.stages import monitor

    cfg = make_cfg()
    archive(dr, 0)
    deliver(dr, pd.DataFrame({"rid": [f"d0-{n}" for n in range(3)]}), "late.csv", kind="flags")
    feeds.ingest(cfg, by="test")
    c = claimed_with_sidecar(dr, 1, "")

    out = monitor.flagged_rate(cfg, c, {"rows": ROWS})

    assert [b["batch"] for b in out["flagged_batches"]] == [name(0)]
    assert out["flagged_rate"] == pytest.approx(3 / ROWS)


# -- one label-delay rule for the live path and the backtest ---------------------------------------------
@pytest.mark.parametrize("delay", [0, 1, 2])
def test_live_label_delay_equals_the_backtest_rule(dr, delay):
    """Labels of batch j delivered just before step j + delay: the live step scores exactly the batch the
    backtest's rule names, with the same lateness and the same metric from the same function."""
    cfg = make_cfg()
    steps = 6
    seen = []
    for i in range(steps):
        j = feeds.due_batch(i, delay)
        if 0 <= j < i:
            deliver(dr, stream_day(j)[["rid", "y"]], f"labels-{j}.csv")
        feeds.ingest(cfg, by=f"monitor:sha-{i}")
        cur = current(i, labelled=delay == 0)
        matured, _ = feeds.label_step(cfg, claim(i), cur, version=1)
        live = feeds.performance_signal(cfg, matured, "v1")
        archive(dr, i, labelled=delay == 0)
        # the backtest's view of the same step (retrainer.backtest._trigger_step)
        if j >= 0:
            d = stream_day(j)
            bt = feeds.performance_signal(
                cfg, [feeds.Matured(name(j), "v1", d.y.to_numpy(), d.y.to_numpy() + 0.5, i - j)], "v1"
            )
            assert live["value"] == pytest.approx(bt["value"])
            assert live["labelled_rows"] == bt["labelled_rows"]
            assert np.allclose(live["errors"], bt["errors"])
        else:
            assert live["labelled_rows"] == 0
        seen.append([(b["batch"], b["batches_late"]) for b in live["batches"]])

    assert seen == [[(name(i - delay), delay)] if i >= delay else [] for i in range(steps)]


def test_the_id_index_reads_only_the_id_column(dr):
    """Joining late labels reads each archived batch's id column, not the whole (wide) batch: the peak
    memory of a fresh process building the index grows by far less than the batch's size."""
    import subprocess
    import sys

    wide = pd.DataFrame(
        np.random.default_rng(0).normal(size=(4000, 4000)), columns=[f"x{n}" for n in range(4000)]
    )
    wide.insert(0, "rid", [f"r{n}" for n in range(4000)])
    wide.insert(1, "ts", pd.Timestamp("2024-01-01"))
    dr.import_batch(wide, name(0), stage="archive")  # 4,000 rows x 4,000 columns: 128 MB as floats
    del wide
    probe = (
        "import resource, sys\n"
        "from tests.support.streams import stream_config\n"
        "from retrainer import settings\n"
        "from retrainer.stages import feeds\n"
        "from retrainer.storage import DataRoot\n"
        "dr = DataRoot(settings.data_root(), 'fed')\n"
        "feeds.id_index(stream_config('fed'), DataRoot(settings.data_root(), 'nobody'))  # imports warmed up\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "index = feeds.id_index(stream_config('fed'), dr)\n"
        "after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "print(len(index), index['id'].iloc[-1], (after - before) * 1024)\n"
    )
    from tests.conftest import REPO

    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=REPO
    ).stdout.split()

    assert out[:2] == ["4000", "r3999"]
    assert int(out[2]) < 40e6, f"peak memory grew by {int(out[2]):,} bytes: the whole batch was read"


def test_batch_gate_requires_unique_row_ids():
    from retrainer.exceptions import DataValidationError
    from retrainer.gates import quality

    cfg = make_cfg()
    batch = stream_day(0)
    batch.loc[3, "rid"] = batch.loc[2, "rid"]

    with pytest.raises(DataValidationError, match="rid") as err:
        quality.validate(batch, quality.build_expectations(cfg), name="ids")

    assert any(f["column"] == "rid" and "unique" in f["expectation"] for f in err.value.failures)
    assert quality.validate(stream_day(0), quality.build_expectations(cfg), name="ids_ok")["success"]


def test_check_command_gate_sees_the_row_ids(dr, tmp_path):
    """``retrainer check`` runs the same gate: a batch with its row ids passes it."""
    from retrainer.stages.check import check_file

    path = tmp_path / "2024-01-01.parquet"
    stream_day(0).to_parquet(path, index=False)

    out = check_file(make_cfg(), path)

    assert out["gate"]["passed"], out["gate"]["failures"]


def test_feeds_on_the_s3_emulator_ingest_once_and_join_late_labels(state, monkeypatch):
    """With the data root in a bucket of moto's S3 emulator (127.0.0.1): a landed labels file is ingested
    once (a redelivery is quarantined as a duplicate) and its labels reach the archived batch they belong
    to, scored against that batch's stored predictions."""
    emulator = MotoS3.start()
    try:
        for key, value in emulator.env(emulator.new_bucket() + "/data").items():
            monkeypatch.setenv(key, value)
        cfg = make_cfg()
        dr = DataRoot.for_model(cfg).ensure()
        df = stream_day(0)
        dr.import_batch(df.drop(columns=["y"]), name(0), stage="archive")
        write_parquet(dr.batch_predictions(name(0), 1), df[["ts"]].assign(prediction=df.y + 0.5))
        landed = dr.landing / "labels"
        (landed / "week1.csv").write_bytes(df[["rid", "y"]].to_csv(index=False).encode())  # one PUT: whole
        (landed / "again.csv").write_bytes(df[["rid", "y"]].to_csv(index=False).encode())

        out = feeds.ingest(cfg, by="test")
        matured, summary = feeds.label_step(cfg, claim(1), current(1), version=1)

        assert [d["file"] for d in out["labels"]["ingested"]] == ["again.csv"]  # oldest name first
        assert out["labels"]["duplicates"] == ["week1.csv"]
        assert (dr.archive / "labels" / "again.csv").exists()
        assert feeds.FeedStore(cfg, "labels").pending() == []
        assert (dr.quarantine / "labels" / "week1.csv.reason.json").exists()
        late = [m for m in matured if m.batch == name(0)]
        assert len(late) == 1 and len(late[0].y) == ROWS and late[0].predicted_by == "v1"
        assert np.allclose(late[0].pred - late[0].y, 0.5)
        assert summary["late_labelled_rows"] == ROWS
    finally:
        emulator.stop()
