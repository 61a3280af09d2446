"""A batch's identity at the gate: one time rule (offsets converted to UTC), ids unique across the archive,
re-exports caught as duplicates, a redelivery under a used name keyed by its own archived name, and a
derived reference cache rebuilt when it cannot be read.

Real data roots, real GX, real MLflow on SQLite; the monitor's stage functions as the DAG calls them.
"""

from __future__ import annotations

import pandas as pd
import pytest

from retrainer import settings
from retrainer.exceptions import BatchError, DataValidationError
from retrainer.stages import monitor, retention, retrain
from retrainer.storage import DataRoot
from tests.support.champion import train_first_champion
from tests.support.streams import ROWS, deliver_file, stream_config, stream_day

pytestmark = pytest.mark.unit


def make_cfg(id_column: str | None = "rid"):
    return stream_config("ident", id_column)


def deliver(dr: DataRoot, frame: pd.DataFrame, name: str, folder: str = "") -> None:
    """Write elsewhere, rename into landing (the delivery contract)."""
    deliver_file(dr.landing / folder if folder else dr.landing, frame, name)


def run_monitor(cfg, run_id: str, *, with_feeds: bool = False) -> dict:
    """claim -> gate -> score -> (feeds, performance) -> archive; what each step returned."""
    claim = monitor.claim_batch(cfg, run_id)
    assert claim is not None
    monitor.validate_batch(cfg, claim, run_id)
    scored = monitor.score_batch(cfg, claim)
    perf = None
    if with_feeds:
        monitor.ingest_feeds(cfg, claim)
        perf = monitor.performance(cfg, claim, scored)
    monitor.archive_batch(cfg, claim)
    return {"claim": claim, "scored": scored, "performance": perf}


@pytest.fixture
def dr(state) -> DataRoot:
    return DataRoot(settings.data_root(), "ident").ensure()


def champion(dr: DataRoot, cfg, days: range = range(4)) -> None:
    for i in days:
        dr.import_batch(stream_day(i), f"2024-01-{i + 1:02d}.parquet", stage="archive")
    train_first_champion(cfg)


# -- times with a UTC offset --------------------------------------------------------------------------------
def test_offset_times_are_stored_as_utc_and_retrain_and_gc_read_them(dr):
    cfg = make_cfg(None)
    dr.import_batch(stream_day(0).drop(columns="rid"), "2024-01-01.parquet", stage="archive")  # naive history
    z = stream_day(1).drop(columns="rid")
    z["ts"] = z["ts"].dt.strftime("%Y-%m-%dT%H:%M:%SZ")  # "...Z" text in a CSV
    deliver(dr, z, "2024-01-02.csv")
    # a Parquet column with a zone, as an export in New York writes it
    dst = stream_day(2).drop(columns="rid")
    dst["ts"] = dst["ts"].dt.tz_localize("UTC").dt.tz_convert("America/New_York")
    deliver(dr, dst, "2024-01-03.parquet")

    for n in range(2):
        claim = monitor.claim_batch(cfg, f"run-{n}")
        monitor.validate_batch(cfg, claim, f"run-{n}")
        monitor.archive_batch(cfg, claim)

    ranges = dr.archive_ranges("ts")
    assert all(t.tzinfo is None for pair in ranges.values() for t in pair)
    assert max(last for _, last in ranges.values()) == stream_day(2)["ts"].max()  # UTC, offset removed
    snap = retrain.snapshot(cfg)  # raised TypeError (tz-naive vs tz-aware) before the rule
    assert snap["rows"] == 3 * ROWS
    retention.collect(cfg, dry_run=True)  # so did gc


def test_offset_times_parse_to_utc_across_a_daylight_saving_change():
    from retrainer.storage import to_utc_naive

    local = pd.Series(["2024-03-09 12:00:00-05:00", "2024-03-11 12:00:00-04:00"])  # New York, DST begins

    assert list(to_utc_naive(local)) == [pd.Timestamp("2024-03-09 17:00"), pd.Timestamp("2024-03-11 16:00")]


def test_a_column_mixing_times_with_and_without_offset_is_quarantined(dr):
    cfg = make_cfg(None)
    mixed = stream_day(1).drop(columns="rid")
    mixed["ts"] = mixed["ts"].dt.strftime("%Y-%m-%d %H:%M:%S")
    mixed.loc[mixed.index[:5], "ts"] = mixed["ts"].head(5) + "+01:00"
    deliver(dr, mixed, "2024-01-02.csv")
    claim = monitor.claim_batch(cfg, "run-mixed")

    with pytest.raises(DataValidationError, match=r"5 value\(s\) carry a UTC offset and 43 do not") as err:
        monitor.validate_batch(cfg, claim, "run-mixed")

    assert err.value.failures[0]["expectation"] == "time_offsets_consistent"
    reason = dr.quarantine_reason("2024-01-02.csv")
    assert reason and "carry a UTC offset" in reason["message"]
    assert not dr.archived()


def test_backtest_reads_times_by_the_same_rule(tmp_path):
    from retrainer.backtest.replay import load_data

    cfg = make_cfg(None)
    frame = pd.concat([stream_day(i) for i in range(3)], ignore_index=True).drop(columns="rid")
    frame["ts"] = frame["ts"].dt.strftime("%Y-%m-%dT%H:%M:%SZ")
    frame.to_csv(tmp_path / "z.csv", index=False)
    mixed = frame.copy()
    mixed.loc[0, "ts"] = "2024-01-01 00:00:00"
    mixed.to_csv(tmp_path / "mixed.csv", index=False)

    df = load_data(cfg, str(tmp_path / "z.csv"))

    assert df["ts"].dt.tz is None and df["ts"].min() == pd.Timestamp("2024-01-01")
    with pytest.raises(BatchError, match="carry a UTC offset"):
        load_data(cfg, str(tmp_path / "mixed.csv"))


# -- ids and re-exports ---------------------------------------------------------------------------------
def test_a_batch_reusing_archived_ids_is_quarantined_naming_them(dr):
    cfg = make_cfg()
    deliver(dr, stream_day(0), "2024-01-01.parquet")
    run_monitor(cfg, "run-a")
    reused = stream_day(1)
    # ten ids of batch A again
    reused.loc[reused.index[:10], "rid"] = stream_day(0)["rid"].head(10).to_numpy()
    deliver(dr, reused, "2024-01-02.parquet")
    claim = monitor.claim_batch(cfg, "run-b")

    with pytest.raises(DataValidationError, match=r"10 of 48 id\(s\) are already used") as err:
        monitor.validate_batch(cfg, claim, "run-b")

    assert err.value.failures[0]["expectation"] == "ids_unique_across_archive"
    reason = dr.quarantine_reason("2024-01-02.parquet")
    assert reason and "2024-01-01.parquet" in reason["message"] and "d0-0" in reason["message"]
    assert [p.name for p in dr.archived()] == ["2024-01-01.parquet"]


def test_a_re_export_of_archived_rows_is_a_duplicate(dr):
    cfg = make_cfg(None)
    deliver(dr, stream_day(0).drop(columns="rid"), "2024-01-01.parquet")
    first = run_monitor(cfg, "run-a")
    again = stream_day(0).drop(columns="rid")[["b", "ts", "y", "a"]].iloc[::-1]  # other format, order, bytes
    deliver(dr, again, "2024-01-01-export.csv")
    claim = monitor.claim_batch(cfg, "run-b")

    with pytest.raises(DataValidationError, match=r"same rows were already processed as 2024-01-01\.parquet"):
        monitor.validate_batch(cfg, claim, "run-b")

    assert dr.quarantine_reason("2024-01-01-export.csv")
    assert [p.name for p in dr.archived()] == ["2024-01-01.parquet"]
    # a re-run of the first batch's gate is not a duplicate of itself
    monitor.validate_batch(cfg, first["claim"], "run-a")


# -- a redelivery under an archived name ---------------------------------------------------------------
def test_a_redelivery_under_an_archived_name_keeps_its_own_predictions_and_labels(dr):
    cfg = make_cfg()
    champion(dr, cfg)
    name = "2024-01-06.parquet"
    deliver(dr, stream_day(5).drop(columns="y"), name)
    first = run_monitor(cfg, "run-first")
    stored_first = pd.read_parquet(first["scored"]["predictions"])
    deliver(dr, stream_day(6, ids="r").drop(columns="y"), name)  # other rows (and ids) under the same name

    second = run_monitor(cfg, "run-second")

    ident = second["claim"]["batch"]
    assert ident != name and ident.startswith("2024-01-06.dup-") and second["claim"]["delivered_as"] == name
    assert (dr.archive / ident).exists() and (dr.archive / name).exists()
    assert second["scored"]["predictions"] != first["scored"]["predictions"]
    pd.testing.assert_frame_equal(pd.read_parquet(first["scored"]["predictions"]), stored_first)
    # labels for the second batch's rows arrive late: scored against the second batch's predictions
    deliver(dr, stream_day(6, ids="r")[["rid", "y"]], "late.csv", folder="labels")
    deliver(dr, stream_day(7, ids="t").drop(columns="y"), "2024-01-08.parquet")
    third = run_monitor(cfg, "run-third", with_feeds=True)

    late = {b["batch"]: b for b in third["performance"]["late_labels"]}
    assert set(late) == {ident} and late[ident]["rows"] == ROWS and late[ident]["scored"]
    assert third["performance"]["late_labelled_rows"] == ROWS
    assert third["performance"]["value"] < 1.0  # the right rows' predictions: a small error


# -- the reference-predictions cache --------------------------------------------------------------------
def test_an_unreadable_reference_cache_is_rebuilt(dr, caplog):
    cfg = make_cfg(None)
    for i in range(4):
        dr.import_batch(stream_day(i).drop(columns="rid"), f"2024-01-{i + 1:02d}.parquet", stage="archive")
    train_first_champion(cfg)
    deliver(dr, stream_day(5).drop(columns=["rid", "y"]), "2024-01-06.parquet")
    claim = monitor.claim_batch(cfg, "run-ref")
    monitor.validate_batch(cfg, claim, "run-ref")
    scored = monitor.score_batch(cfg, claim)
    cache = dr.reference_predictions(scored["champion_version"])
    cache.write_bytes(b"PAR1 truncated")  # a write cut short

    with caplog.at_level("WARNING"):
        drift = monitor.measure_drift(cfg, claim, scored)

    assert drift["data_drift_share"] is not None
    assert "cannot be read" in caplog.text and "rebuilding" in caplog.text
    assert len(pd.read_parquet(cache)) == 4 * ROWS  # rebuilt, readable again
    assert not list(cache.parent.glob(".*.tmp"))
