"""Real operation: re-runs, redeliveries, slow writers, crashed runs, champion moves, months of decisions.

Each test reproduces one way real operation went wrong (stage functions, no Airflow; real GX, Evidently
and MLflow on SQLite). One champion is trained for the module (~10 s); every test lands, claims and
finishes its own batches.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pandas as pd
import pytest

from retrainer import settings
from retrainer.exceptions import DataValidationError
from retrainer.stages import monitor, retrain
from retrainer.stages.decisions import policy_state
from retrainer.storage import DataRoot
from retrainer.tracking import registry
from retrainer.tracking import runs as tracking
from retrainer.tracking.policy_state import STATE_ARTIFACT
from tests.support import decisions

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def env(tmp_path_factory, point_state):
    tmp = tmp_path_factory.mktemp("operation")
    with pytest.MonkeyPatch.context() as mp:
        yield point_state(mp, tmp)


@pytest.fixture(scope="module")
def dr(env, bikeshare_cfg) -> DataRoot:
    return DataRoot(settings.data_root(), bikeshare_cfg.name).ensure()


@pytest.fixture(scope="module")
def champion(env, dr, bikeshare_cfg, bikeshare_weeks):
    cfg = bikeshare_cfg
    dr.import_batch(
        pd.concat([df for _, df in bikeshare_weeks[:6]]), "2011-00-history.parquet", stage="archive"
    )
    trig = retrain.resolve_trigger("manual", [], {"reason": "first champion"})
    snap = retrain.snapshot(cfg)
    trained = retrain.train(cfg, snap, trig, dag_run_id="manual__first")
    ev = retrain.evaluate(cfg, snap, trained)
    reg = retrain.register(cfg, snap, trained, ev, trig)
    retrain.promote(cfg, reg, ev, trig, "manual__first")
    return registry.champion(cfg.name)


def through_monitor(cfg, run_id: str, claim=None) -> dict:
    """Every monitor task in DAG order for one run (a re-run passes the run's claim back in)."""
    claim = claim or monitor.claim_batch(cfg, run_id)
    val = monitor.validate_batch(cfg, claim, run_id)
    scored = monitor.score_batch(cfg, claim)
    drift = monitor.measure_drift(cfg, claim, scored)
    perf = monitor.performance(cfg, claim, scored)
    flags = monitor.flagged_rate(cfg, claim, val)
    decision = monitor.decide(cfg, claim, val, scored, drift, perf, flags, run_id)
    archived = monitor.archive_batch(cfg, claim)
    return {
        "claim": claim,
        "validation": val,
        "scored": scored,
        "perf": perf,
        "decision": decision,
        **archived,
    }


def recent(weeks, n: int = 5, frac: float = 0.5, seed: int = 0) -> pd.DataFrame:
    """A clean batch: a sample of a history week (the champion's own data)."""
    return weeks[n][1].sample(frac=frac, random_state=seed).sort_values("timestamp")


def monitor_runs(cfg, batch: str) -> list:
    return tracking.find_runs(cfg.name, "monitor", f"tags.`retrainer.batch` = '{batch}'")


# -- re-running a monitor run after its batch was archived -----------------------------------------------
def test_rerun_after_archive_redoes_the_work_and_keeps_the_batch_archived(
    champion, dr, bikeshare_cfg, bikeshare_weeks
):
    cfg = bikeshare_cfg
    dr.import_batch(recent(bikeshare_weeks, seed=1), "2011-10-rerun.parquet")
    first = through_monitor(cfg, "run-rerun")

    again = monitor.claim_batch(cfg, "run-rerun")  # the sensor of the cleared run returns the same claim
    second = through_monitor(cfg, "run-rerun", claim=again)

    assert again["batch"] == first["claim"]["batch"] == "2011-10-rerun.parquet"
    assert second["validation"]["rows"] == first["validation"]["rows"]
    assert second["decision"]["mlflow_run_id"] == first["decision"]["mlflow_run_id"]
    assert (dr.archive / "2011-10-rerun.parquet").exists()
    assert not (dr.quarantine / "2011-10-rerun.parquet").exists()
    assert len(monitor_runs(cfg, "2011-10-rerun.parquet")) == 1


# -- the policy state: newest decision, any history length, JSON only ----------------------------------
def _decide(cfg, n: int, drift: float, run: str = "") -> dict:
    return decisions.decide(
        cfg, f"2011-11-{n:02d}.parquet", f"{n:064x}", drift, run or f"run-state-{n}", claimed=True
    )


def test_policy_state_is_the_newest_decisions_after_more_than_a_thousand(champion, bikeshare_cfg):
    cfg = bikeshare_cfg  # cooldown_batches: 2
    decisions.old_decisions(cfg, 1005)

    fired = _decide(cfg, 1, drift=0.9)
    cooled = _decide(cfg, 2, drift=0.9)

    assert fired["verdict"] == "retrain"
    assert cooled["verdict"] == "suppressed" and "cooldown" in cooled["suppressed_by"]
    assert policy_state(cfg).batches_since_request == 1


def test_a_pickled_policy_state_is_never_executed(champion, bikeshare_cfg, tmp_path):
    import base64
    import pickle

    cfg = bikeshare_cfg
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return (Path.write_text, (marker, "code ran"))

    last = _decide(cfg, 3, drift=0.0)
    tampered = {
        "batches_since_request": 0,
        "armed": True,
        "detector": base64.b64encode(pickle.dumps(Exploit())).decode(),
    }
    tracking.client().log_dict(last["mlflow_run_id"], tampered, STATE_ARTIFACT)

    fresh = _decide(cfg, 4, drift=0.9)

    assert not marker.exists()
    assert fresh["verdict"] == "retrain"  # a fresh state: no cooldown from the tampered file
    record = tracking.client().get_run(fresh["mlflow_run_id"]).data.tags
    assert (
        "fresh" in record["retrainer.policy_state_note"]
        and "rejected" in record["retrainer.policy_state_note"]
    )


# -- the time column -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "value", "words"),
    [
        ("2011-12-badtime.csv", "not a time", "cannot be parsed"),
        ("2011-12-future.csv", "2099-01-01 00:00:00", "future"),
    ],
)
def test_unparseable_or_far_future_times_are_quarantined(
    champion, dr, bikeshare_cfg, bikeshare_weeks, name, value, words
):
    cfg = bikeshare_cfg
    df = recent(bikeshare_weeks, seed=2)
    df["timestamp"] = df["timestamp"].astype(str)
    df.iloc[3, df.columns.get_loc("timestamp")] = value
    dr.import_batch(df, name)
    claim = monitor.claim_batch(cfg, f"run-{name}")

    with pytest.raises(DataValidationError) as err:
        monitor.validate_batch(cfg, claim, f"run-{name}")

    assert "timestamp" in str(err.value) and words in str(err.value)
    reason = dr.quarantine_reason(name)
    assert reason is not None and "timestamp" in reason["message"] and words in reason["message"]
    assert champion.version == registry.champion(cfg.name).version


# -- claims: exclusive, and a run touches only what it claimed -----------------------------------------
def test_same_name_redelivery_does_not_hijack_the_batch_in_flight(
    champion, dr, bikeshare_cfg, bikeshare_weeks
):
    cfg = bikeshare_cfg
    original = recent(bikeshare_weeks, frac=0.5, seed=3)
    dr.import_batch(original, "2011-13-same.parquet")
    claim = monitor.claim_batch(cfg, "run-same")
    dr.import_batch(
        recent(bikeshare_weeks, frac=0.2, seed=4), "2011-13-same.parquet"
    )  # redelivered meanwhile

    out = through_monitor(cfg, "run-same", claim=claim)

    assert out["validation"]["rows"] == len(original)
    assert (dr.landing / "2011-13-same.parquet").exists()  # the redelivery waits for its own run
    assert pd.read_parquet(dr.archive / "2011-13-same.parquet").shape[0] == len(original)
    later = monitor.claim_batch(cfg, "run-same-2")
    assert later["sha256"] != claim["sha256"] and later["delivered_as"] == "2011-13-same.parquet"
    assert later["batch"] == f"2011-13-same.dup-{later['sha256'][:8]}.parquet"  # its own identity
    monitor.validate_batch(cfg, later, "run-same-2")
    monitor.archive_batch(cfg, later)
    assert len([p for p in dr.archive.glob("2011-13-same*.parquet")]) == 2  # both kept, nothing lost


def test_two_claimers_never_get_the_same_batch(dr):
    big = pd.DataFrame({"timestamp": pd.date_range("2011-01-01", periods=400_000, freq="s"), "x": 1.0})
    dr.import_batch(big, "2011-14-race.csv")
    results: dict[str, object] = {}
    barrier = threading.Barrier(2)

    def claimer(run: str) -> None:
        barrier.wait()
        results[run] = dr.claim(run)

    threads = [threading.Thread(target=claimer, args=(r,)) for r in ("race-a", "race-b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    got = [c for c in results.values() if c is not None and c.batch == "2011-14-race.csv"]
    assert len(got) == 1
    dr.archive_batch("2011-14-race.csv")


# -- the delivery contract -------------------------------------------------------------------------------
def test_temporary_names_and_a_file_still_being_written_are_not_claimed(dr, monkeypatch):
    monkeypatch.setenv("RETRAINER_SETTLE_SECONDS", "1.5")
    for name in (".2011-15-hidden.csv", "2011-15-copy.csv.part", "2011-15-copy.csv.tmp"):
        (dr.landing / name).write_text("timestamp,x\n2011-01-01,1\n")
    target = dr.landing / "2011-15-slow.csv"
    rows = [f"2011-01-01 {h:02d}:00:00,{h}\n" for h in range(24)]

    def slow_writer() -> None:
        with target.open("w") as fh:
            fh.write("timestamp,x\n")
            for row in rows:
                fh.write(row)
                fh.flush()
                time.sleep(0.12)

    writer = threading.Thread(target=slow_writer)
    writer.start()
    seen_while_writing = []
    while writer.is_alive():
        seen_while_writing.append(dr.claim(f"slow-{len(seen_while_writing)}"))
        time.sleep(0.2)
    writer.join()
    assert seen_while_writing and all(c is None for c in seen_while_writing)
    time.sleep(1.6)

    claim = dr.claim("slow-done")

    assert claim is not None and claim.batch == "2011-15-slow.csv"
    assert (dr.processing / "2011-15-slow.csv").read_text().count("\n") == 25  # header + all 24 rows
    for name in (".2011-15-hidden.csv", "2011-15-copy.csv.part", "2011-15-copy.csv.tmp"):
        assert (dr.landing / name).exists(), name  # never claimed, never quarantined
        (dr.landing / name).unlink()
    dr.archive_batch("2011-15-slow.csv")


# -- batches stuck in processing -----------------------------------------------------------------------
def test_a_batch_left_in_processing_is_resumed_before_newer_batches(
    champion, dr, bikeshare_cfg, bikeshare_weeks, monkeypatch
):
    from retrainer import overview

    cfg = bikeshare_cfg
    dr.import_batch(recent(bikeshare_weeks, seed=5), "2011-16-a.parquet")
    crashed = monitor.claim_batch(cfg, "run-crashed")  # the run dies here: the batch sits in processing
    dr.import_batch(recent(bikeshare_weeks, seed=6), "2011-16-b.parquet")
    monkeypatch.setenv("RETRAINER_STUCK_AFTER_MINUTES", "0")

    stuck = overview.model_detail(cfg.name)
    resumed = monitor.claim_batch(cfg, "run-next")

    assert stuck["stuck"] == [
        {"batch": "2011-16-a.parquet", "since": crashed["claimed_at"], "claimed_by": "run-crashed"}
    ]
    assert stuck["summary"]["stuck"] == 1
    assert resumed["batch"] == "2011-16-a.parquet" and resumed["attempt"] == 2
    assert resumed["previous_runs"] == ["run-crashed"]
    through_monitor(cfg, "run-next", claim=resumed)
    later = through_monitor(cfg, "run-after")
    assert later["claim"]["batch"] == "2011-16-b.parquet"
    assert overview.model_detail(cfg.name)["stuck"] == []


def test_a_batch_that_keeps_failing_is_quarantined_after_the_attempt_limit(
    champion, dr, bikeshare_cfg, bikeshare_weeks, monkeypatch
):
    cfg = bikeshare_cfg
    monkeypatch.setenv("RETRAINER_STUCK_AFTER_MINUTES", "0")
    monkeypatch.setenv("RETRAINER_MAX_BATCH_ATTEMPTS", "2")
    dr.import_batch(recent(bikeshare_weeks, seed=7), "2011-17-poison.parquet")
    first = monitor.claim_batch(cfg, "poison-1")
    second = monitor.claim_batch(cfg, "poison-2")

    third = monitor.claim_batch(cfg, "poison-3")

    assert first["batch"] == second["batch"] == "2011-17-poison.parquet" and second["attempt"] == 2
    assert third is None
    reason = dr.quarantine_reason("2011-17-poison.parquet")
    assert reason is not None and "2 attempt(s)" in reason["message"] and "poison-1" in reason["message"]
    assert [r.data.tags["retrainer.verdict"] for r in monitor_runs(cfg, "2011-17-poison.parquet")] == [
        "quarantined"
    ]


# -- the champion is resolved once per run ---------------------------------------------------------------
def test_champion_moving_mid_run_does_not_change_the_runs_champion(
    champion, dr, bikeshare_cfg, bikeshare_weeks
):
    cfg = bikeshare_cfg
    # a second version trained on a shorter window: different holdout metric
    trig = retrain.resolve_trigger("manual", [], {"reason": "second version", "window": "3W"})
    snap = retrain.snapshot(cfg, "3W")
    trained = retrain.train(cfg, snap, trig)
    reg = retrain.register(
        cfg, snap, trained, {"passed": True, "failed_checks": [], "candidate": trained["holdout"]}, trig
    )
    other = reg["version"]
    dr.import_batch(recent(bikeshare_weeks, seed=8), "2011-18-mid.parquet")
    claim = monitor.claim_batch(cfg, "run-mid")
    val = monitor.validate_batch(cfg, claim, "run-mid")
    scored = monitor.score_batch(cfg, claim)
    registry.move_alias(
        cfg.name, registry.CHAMPION, other, action="promote", reason="test: moved mid-run", by="test"
    )
    try:
        drift = monitor.measure_drift(cfg, claim, scored)
        perf = monitor.performance(cfg, claim, scored)
        decision = monitor.decide(
            cfg, claim, val, scored, drift, perf, monitor.flagged_rate(cfg, claim, val), "run-mid"
        )
        monitor.archive_batch(cfg, claim)
    finally:
        registry.move_alias(
            cfg.name, registry.CHAMPION, champion.version, action="rollback", reason="test", by="test"
        )

    moved = registry.champion(cfg.name)
    assert scored["champion_version"] == champion.version
    assert perf["reference"] == pytest.approx(champion.metrics["rmse"])
    assert perf["reference"] != pytest.approx(trained["holdout"]["rmse"])
    assert drift["champion_version"] == champion.version
    assert tracking.client().get_run(decision["mlflow_run_id"]).data.tags[
        "retrainer.champion_version"
    ] == str(champion.version)
    assert moved.version == champion.version


# -- files with other suffixes, raw quarantines -----------------------------------------------------------
def test_other_suffixes_are_quarantined_with_a_message_and_a_decision_record(champion, dr, bikeshare_cfg):
    cfg = bikeshare_cfg
    (dr.landing / "2011-19-upper.CSV").write_text("timestamp,x\n2011-01-01,1\n")
    (dr.landing / "2011-19-notes.json").write_text("{}")

    assert monitor.claim_batch(cfg, "run-suffix") is None

    for name in ("2011-19-upper.CSV", "2011-19-notes.json"):
        assert not (dr.landing / name).exists()
        reason = json.loads((dr.quarantine / f"{name}.reason.json").read_text())
        assert name in reason["message"] and "unsupported" in reason["message"]
        runs = monitor_runs(cfg, name)
        assert [r.data.tags["retrainer.verdict"] for r in runs] == ["quarantined"]
    assert monitor.claim_batch(cfg, "run-suffix-2") is None
    assert len(monitor_runs(cfg, "2011-19-upper.CSV")) == 1  # recorded once


def test_concurrent_alias_moves_keep_every_history_event(champion, bikeshare_cfg):
    cfg = bikeshare_cfg
    before = len(registry.history(cfg.name))
    barrier = threading.Barrier(6)
    errors = []

    def record(i: int) -> None:
        barrier.wait()
        try:
            registry.record_event(cfg.name, "note", "challenger", None, None, f"concurrent {i}", "test")
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=record, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    events = registry.history(cfg.name)
    assert errors == []
    assert len(events) == before + 6
    assert sorted(e["reason"] for e in events[before:]) == [f"concurrent {i}" for i in range(6)]
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))


def test_racing_records_of_one_alias_move_are_one_history_event(champion, bikeshare_cfg):
    """Two retrains promoting the same version at once both record the move; the history shows it once."""
    name, alias = bikeshare_cfg.name, "race-test"
    first = registry.record_event(name, "promote", alias, 1, 2, "retrain run a", "a")
    twin = registry.record_event(name, "promote", alias, 1, 2, "retrain run b", "b")
    back = registry.record_event(name, "rollback", alias, 2, 1, "rollback", "ops")
    again = registry.record_event(name, "promote", alias, 1, 2, "retrain run c", "c")  # a real second move

    events = [e for e in registry.history(name) if e["alias"] == alias]
    assert [(e["action"], e["from_version"], e["to_version"]) for e in events] == [
        ("promote", 1, 2),
        ("rollback", 2, 1),
        ("promote", 1, 2),
    ]
    assert events[0]["id"] == first["id"] and events[0]["twins"] == [twin["id"]]
    assert first["seq"] == twin["seq"] == events[0]["seq"]
    assert back["seq"] == events[1]["seq"] and again["seq"] == events[2]["seq"] == events[1]["seq"] + 1
    seqs = [e["seq"] for e in registry.history(name)]
    assert seqs == list(range(1, len(seqs) + 1))


def test_unique_key_race_is_retried_and_other_errors_are_not():
    from mlflow.exceptions import MlflowException

    calls = []

    def collides_once() -> str:
        calls.append(1)
        if len(calls) == 1:
            raise MlflowException("(sqlite3.IntegrityError) UNIQUE constraint failed: datasets.dataset_uuid")
        return "linked"

    assert tracking.unique_race_retried(collides_once) == "linked" and len(calls) == 2

    def always_collides() -> None:
        calls.append(1)
        raise MlflowException("UNIQUE constraint failed: model_version_tags.key")

    calls.clear()
    with pytest.raises(MlflowException, match="UNIQUE"):
        tracking.unique_race_retried(always_collides)
    assert len(calls) == 3  # gives up: a collision that persists is not a race

    def other_error() -> None:
        calls.append(1)
        raise MlflowException("RESOURCE_DOES_NOT_EXIST: no such run")

    calls.clear()
    with pytest.raises(MlflowException, match="RESOURCE_DOES_NOT_EXIST"):
        tracking.unique_race_retried(other_error)
    assert len(calls) == 1
