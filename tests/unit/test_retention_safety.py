"""Retention never removes what is still needed: not after one mis-stamped row, not while labels lag,
not the snapshot a running retrain reuses; and the gate refuses a batch whose rows span implausibly long.

Real data roots, real MLflow on SQLite, real GX: each test builds its own archive (stage functions, no
Airflow).
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pandas as pd
import pytest

from retrainer import settings
from retrainer.config import load_config
from retrainer.exceptions import DataValidationError, SnapshotIntegrityError
from retrainer.stages import gate, monitor, retention, retrain
from retrainer.storage import DataRoot
from retrainer.tracking import runs as tracking

pytestmark = pytest.mark.unit
REPO = Path(__file__).resolve().parents[2]


def with_retention(cfg, **keys):
    return cfg.model_copy(update={"retention": cfg.retention.model_copy(update=keys)})


def archive(dr: DataRoot, weeks) -> dict[str, pd.Timestamp]:
    """Archive ``weeks`` (name, frame); the newest row of each, by file name."""
    for start, week in weeks:
        dr.import_batch(week, f"{start}.parquet", stage="archive")
    return {f"{start}.parquet": week["timestamp"].max() for start, week in weeks}


def removed(plan, kind: str = "archive") -> set[str]:
    return {Path(e["path"]).name for e in plan.remove.get(kind, [])}


# -- one row stamped "now" ------------------------------------------------------------------------------
def test_gate_quarantines_a_batch_whose_rows_span_longer_than_the_training_window(
    state, bikeshare_cfg, bikeshare_weeks
):
    cfg = bikeshare_cfg
    dr = DataRoot(settings.data_root(), cfg.name).ensure()
    start, week = bikeshare_weeks[10]
    stamped = week.copy()
    stamped.loc[stamped.index[-1], "timestamp"] = pd.Timestamp.now().floor("s")  # one row at today's date
    dr.import_batch(stamped, f"{start}.parquet")
    claim = monitor.claim_batch(cfg, "run-span")

    with pytest.raises(DataValidationError, match=r"span .* more than data\.max_batch_span=8W") as err:
        monitor.validate_batch(cfg, claim, "run-span")

    assert err.value.failures[0]["expectation"] == "time_span_at_most"
    reason = dr.quarantine_reason(f"{start}.parquet")
    assert reason and "data.max_batch_span" in reason["message"]  # quarantined with its reason, not lost
    assert not dr.archived()


def test_gate_bound_is_configurable(state, bikeshare_cfg, bikeshare_weeks):
    cfg = bikeshare_cfg.model_copy(
        update={"data": bikeshare_cfg.data.model_copy(update={"max_batch_span": "3D"})}
    )
    _, week = bikeshare_weeks[10]

    gate.check_time_span(cfg, week["timestamp"].head(48), "two-days.parquet")  # within 3D: accepted
    with pytest.raises(DataValidationError, match=r"max_batch_span=3D"):
        gate.check_time_span(cfg, week["timestamp"], "one-week.parquet")


def test_gc_is_not_moved_by_one_row_stamped_far_ahead(state, bikeshare_cfg, bikeshare_weeks):
    """A batch archived before the gate bound existed, with one row at today's date: gc still keeps
    every batch within the window of the stream's real end."""
    cfg = with_retention(bikeshare_cfg, archive="1W")
    dr = DataRoot(settings.data_root(), cfg.name).ensure()
    weeks = list(bikeshare_weeks[:14])
    start, last = weeks[-1]
    last = last.copy()
    last.loc[last.index[-1], "timestamp"] = pd.Timestamp.now().floor("s")
    weeks[-1] = (start, last)
    newest = archive(dr, weeks)
    real_end = bikeshare_weeks[12][1]["timestamp"].max()  # the second-newest batch's newest row
    needed = {n for n, t in newest.items() if t > real_end - pd.Timedelta("56D")}

    plan = retention.collect(cfg, dry_run=True)

    assert len(needed) >= 8
    assert not removed(plan) & needed, removed(plan) & needed
    assert removed(plan)  # still collects what lies before the window


# -- labels lag ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("config", "weeks", "lag", "archive_keep"),
    [
        ("bikeshare", 16, 3, "8W"),  # window 8W, retention.archive 8W
        ("rainfall", 112, 4, None),  # the shipped config: window 104W, retention.archive 26W (default)
    ],
)
def test_gc_keeps_the_training_window_while_labels_lag(state, config, weeks, lag, archive_keep):
    from retrainer.ml.datasets import load, weekly_batches

    cfg = load_config(REPO / "include" / "models" / f"{config}.yaml")
    if archive_keep:
        cfg = with_retention(cfg, archive=archive_keep)
    dr = DataRoot(settings.data_root(), cfg.name).ensure()
    batches = weekly_batches(load(config), cfg.data.time_column)[:weeks]
    for i in range(weeks - lag, weeks):  # the newest weeks wait for their labels
        start, week = batches[i]
        batches[i] = (start, week.assign(**{cfg.data.target: None}))
    archive(dr, batches)
    before = retrain.snapshot(cfg)

    plan = retention.collect(cfg)

    assert removed(plan), "the archive reaches past the window: gc has something to remove"
    after = retrain.snapshot(cfg)
    assert (after["sha256"], after["rows"], after["sources"]) == (
        before["sha256"],
        before["rows"],
        before["sources"],
    )


def test_gc_keeps_the_whole_archive_while_nothing_is_labelled(state, bikeshare_cfg, bikeshare_weeks):
    cfg = with_retention(bikeshare_cfg, archive="1W", label_wait="1W")
    dr = DataRoot(settings.data_root(), cfg.name).ensure()
    archive(dr, [(s, w.assign(bikers=None)) for s, w in bikeshare_weeks[:14]])

    plan = retention.collect(cfg, dry_run=True)

    assert not removed(plan) and plan.kept["archive"] == 14


# -- a snapshot a running retrain reuses ----------------------------------------------------------------
def age(path: Path, days: float) -> None:
    old = time.time() - days * 86400
    os.utime(path, (old, old))


def test_gc_keeps_a_snapshot_a_retrain_reused(state, bikeshare_cfg, bikeshare_weeks):
    cfg = bikeshare_cfg  # retention.snapshots 7D
    dr = DataRoot(settings.data_root(), cfg.name).ensure()
    archive(dr, bikeshare_weeks[:8])
    first = retrain.snapshot(cfg)
    age(dr.snapshots / first["sha256"], 8)  # a rejected candidate's snapshot, 8 days old
    assert removed(retention.collect(cfg, dry_run=True), "snapshots") == {first["sha256"]}

    again = retrain.snapshot(cfg)  # a retrain after a parameter change: same data, snapshot reused

    assert again["sha256"] == first["sha256"] and again["created"] is False
    assert removed(retention.collect(cfg, dry_run=True), "snapshots") == set()


@pytest.fixture
def evaluated(state, bikeshare_cfg, bikeshare_weeks):
    """A retrain up to `evaluate` (a candidate that passed, no champion yet)."""
    cfg = bikeshare_cfg
    dr = DataRoot(settings.data_root(), cfg.name).ensure()
    archive(dr, bikeshare_weeks[:8])
    trig = retrain.resolve_trigger("manual", [], {"reason": "first"})
    snap = retrain.snapshot(cfg)
    trained = retrain.train(cfg, snap, trig)
    ev = retrain.evaluate(cfg, snap, trained)
    assert ev["passed"], ev
    return cfg, dr, snap, trained, ev, trig


@pytest.mark.parametrize("fault", ["removed", "altered"])
def test_register_refuses_a_candidate_whose_snapshot_is_gone(evaluated, fault):
    cfg, dr, snap, trained, ev, trig = evaluated
    folder = dr.snapshots / snap["sha256"]
    if fault == "removed":  # what gc did between evaluate and register before snapshots had a lease
        shutil.rmtree(folder)
    else:
        df = pd.read_parquet(folder / "data.parquet")
        df.iloc[1:].to_parquet(folder / "data.parquet", index=False)

    with pytest.raises(SnapshotIntegrityError, match=r"not registering the candidate .* snapshot"):
        retrain.register(cfg, snap, trained, ev, trig)

    assert tracking.client().search_model_versions(f"name = '{cfg.name}'") == []


# -- batch names containing ".v" ------------------------------------------------------------------------
def test_predictions_of_a_batch_named_with_dot_v_follow_their_batch(state, bikeshare_cfg, bikeshare_weeks):
    cfg = bikeshare_cfg
    dr = DataRoot(settings.data_root(), cfg.name).ensure()
    archive(dr, bikeshare_weeks[:2])
    _, week = bikeshare_weeks[2]
    name = "export.v2-2011-01-15.parquet"
    dr.import_batch(week.assign(bikers=None), name, stage="archive")  # its labels are still to come
    preds = dr.batch_predictions(name, 1)
    preds.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"prediction": [1.0]}).to_parquet(preds)
    age(preds, 40)  # past retention.predictions (30D)

    plan = retention.collect(cfg, dry_run=True)

    assert preds.name not in removed(plan, "predictions")  # kept while its labels are pending
    assert retention.predictions_batch(preds.name) == "export.v2-2011-01-15"
