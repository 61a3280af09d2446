"""The retrain and monitor stage functions without Airflow: real GX, Evidently and MLflow (SQLite).

Training a champion and logging it to MLflow costs ~10 s, so a champion is trained once per module for
each group of tests, each group in its own module-scoped copy of the ``state`` fixture's environment
(temp data root, temp SQLite tracking store, temp artifact root): the retrain-path tests (``trained``)
and the monitor-path tests (``monitored``), because monitor tests archive new batches and so change what
a fresh snapshot would contain. No test depends on another having run: the retrain-path tests leave the
snapshot, the champion and its history as they found them, and every monitor test lands, claims and
finishes its own batch, so any order (or any one test alone) gives the same results.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from retrainer import settings
from retrainer.config import ModelSpec
from retrainer.exceptions import DataValidationError, ModelRejected
from retrainer.stages import monitor, retrain
from retrainer.stages.check import check_file
from retrainer.storage import DataRoot
from retrainer.tracking import registry
from retrainer.tracking import runs as tracking
from tests.support.champion import archive_history, retrain_path

pytestmark = pytest.mark.integration  # real MLflow, GX and Evidently

HISTORY_WEEKS = 6


def _champion_env(tmp_path_factory, point_state, cfg, weeks, folder: str):
    """A fresh environment with the history archived and the first champion trained: every step's output,
    the environment's folder and data root (``dr``) and the history's rows. The env vars are restored
    afterwards; the function-scoped fixtures point each test at its group's folder."""
    tmp = tmp_path_factory.mktemp(folder)
    with pytest.MonkeyPatch.context() as mp:
        point_state(mp, tmp)
        dr = DataRoot(settings.data_root(), cfg.name)
        rows = archive_history(dr, weeks[:HISTORY_WEEKS])
        return {**retrain_path(cfg, dag_run_id="manual__1"), "folder": tmp, "dr": dr, "history_rows": rows}


@pytest.fixture(scope="module")
def retrain_champion(tmp_path_factory, point_state, bikeshare_cfg, bikeshare_weeks):
    return _champion_env(tmp_path_factory, point_state, bikeshare_cfg, bikeshare_weeks, "retrain")


@pytest.fixture(scope="module")
def monitor_champion(tmp_path_factory, point_state, bikeshare_cfg, bikeshare_weeks):
    return _champion_env(tmp_path_factory, point_state, bikeshare_cfg, bikeshare_weeks, "monitor")


@pytest.fixture
def trained(retrain_champion, point_state, monkeypatch):
    """The retrain-path tests' environment: history archived, the whole retrain path run once."""
    point_state(monkeypatch, retrain_champion["folder"])
    return retrain_champion


@pytest.fixture
def monitored(monitor_champion, point_state, monkeypatch):
    """The monitor-path tests' environment: the same history and first champion, in its own temp root."""
    point_state(monkeypatch, monitor_champion["folder"])
    return monitor_champion


def land(dr: DataRoot, name: str, df: pd.DataFrame) -> str:
    batch = f"{name}.parquet"
    dr.import_batch(df, batch, stage="landing")
    return batch


# -- retrain path -----------------------------------------------------------------------------------------
def test_resolve_trigger_sources():
    asset = retrain.resolve_trigger(
        "asset_triggered", [{"extra": {"reasons": ["data_drift 0.60 >= 0.50"]}}], {}
    )
    scheduled = retrain.resolve_trigger("scheduled", [], {})
    manual = retrain.resolve_trigger("manual", [], {"reason": "hotfix", "force": True, "window": "4W"})

    assert asset["source"] == "asset" and asset["reasons"] == ["data_drift 0.60 >= 0.50"]
    assert scheduled["source"] == "schedule" and scheduled["reasons"] == ["scheduled retrain"]
    assert manual == {
        "source": "manual",
        "reasons": ["hotfix"],
        "force": True,
        "window": "4W",
        "run_type": "manual",
        "triggered_by": "unknown",
    }


def test_a_manual_run_cannot_pose_as_the_asset_or_schedule_path():
    posing = retrain.resolve_trigger("manual", [], {"trigger_source": "asset", "reason": "x"}, "mallory")
    scheduled_claim = retrain.resolve_trigger("manual", [], {"trigger_source": "schedule"}, "mallory")
    real_schedule = retrain.resolve_trigger("scheduled", [], {"trigger_source": "manual"}, None)

    assert posing["source"] == "manual" and posing["claimed_source"] == "asset"
    assert posing["triggered_by"] == "mallory"
    assert posing["reasons"] == ["replays the asset path (claimed by mallory)", "x"]
    assert scheduled_claim["source"] == "manual" and scheduled_claim["claimed_source"] == "schedule"
    assert real_schedule["source"] == "schedule" and "claimed_source" not in real_schedule


def test_retrain_path_promotes_first_champion(trained, bikeshare_cfg):
    snap, tr, ev, dr = trained["snap"], trained["train"], trained["evaluation"], trained["dr"]

    champ = registry.champion(bikeshare_cfg.name)

    assert snap["created"] is True and snap["sources"] == ["history.parquet"]
    assert snap["rows"] == trained["history_rows"]
    assert (dr.snapshots / snap["sha256"] / "data.parquet").exists()
    assert trained["gate"]["success"] is True and Path(trained["gate"]["gx_result"]).exists()
    assert tr["reused"] is False and tr["train_rows"] + tr["holdout_rows"] == snap["rows"]
    run = tracking.client().get_run(tr["run_id"]).data
    assert tr["train_rows"] < retrain.TRAIN_METRIC_ROWS  # every training row scored for train_* metrics
    assert run.params["train_metric_rows"] == str(tr["train_rows"]) and "train_rmse" in run.metrics
    assert ev["passed"] is True and ev["champion_version"] is None and ev["failed_checks"] == []
    assert trained["registered"] == {"version": 1, "created": True}
    assert trained["promoted"]["promoted"] is True
    assert champ is not None and champ.version == 1
    assert champ.run_id == tr["run_id"]
    assert champ.snapshot_sha256 == snap["sha256"]
    assert champ.metrics["rmse"] == pytest.approx(tr["holdout"]["rmse"])
    assert champ.metrics["r2"] >= bikeshare_cfg.validation.floors["r2"].min


def test_retrain_rerun_reuses_snapshot_run_and_version(trained, bikeshare_cfg):
    cfg = bikeshare_cfg
    train_runs = len(tracking.find_runs(cfg.name, "train"))

    snap2 = retrain.snapshot(cfg)
    tr2 = retrain.train(cfg, snap2, trained["trigger"])
    reg2 = retrain.register(cfg, snap2, tr2, trained["evaluation"], trained["trigger"])
    prom2 = retrain.promote(cfg, reg2, trained["evaluation"], trained["trigger"])

    assert snap2["sha256"] == trained["snap"]["sha256"] and snap2["created"] is False
    assert tr2["reused"] is True and tr2["run_id"] == trained["train"]["run_id"]
    assert tr2["holdout"]["rmse"] == pytest.approx(trained["train"]["holdout"]["rmse"])
    assert reg2 == {"version": 1, "created": False}
    assert prom2["promoted"] is False
    versions = tracking.client().search_model_versions(f"name = '{cfg.name}'")
    assert len(versions) == 1
    assert len(tracking.find_runs(cfg.name, "train")) == train_runs  # reused: no new training run
    events = registry.history(cfg.name)
    assert [(e["action"], e["from_version"], e["to_version"]) for e in events] == [("promote", None, 1)]
    assert "first champion" in events[0]["reason"] and events[0]["by"] == "dag_run:manual__1"


def test_champion_cannot_be_validated_against_itself(trained, bikeshare_cfg):
    ev = retrain.evaluate(bikeshare_cfg, trained["snap"], trained["train"])

    assert ev["passed"] is False
    assert len(ev["failed_checks"]) == 1 and "champion v1" in ev["failed_checks"][0], ev["failed_checks"]
    assert ev["champion"]["rmse"] == pytest.approx(trained["train"]["holdout"]["rmse"])


def test_weak_candidate_is_rejected_and_not_registered(trained, bikeshare_cfg):
    weak_cfg = bikeshare_cfg.model_copy(update={"model": ModelSpec(estimator="sklearn.dummy.DummyRegressor")})
    assert weak_cfg.fingerprint != bikeshare_cfg.fingerprint

    tr = retrain.train(weak_cfg, trained["snap"], trained["trigger"])
    ev = retrain.evaluate(weak_cfg, trained["snap"], tr)

    assert tr["reused"] is False and tr["run_id"] != trained["train"]["run_id"]
    assert ev["passed"] is False
    assert any("rmse" in c for c in ev["failed_checks"]), ev["failed_checks"]
    assert any("r2" in c for c in ev["failed_checks"]), ev["failed_checks"]  # below the 0.3 floor
    assert ev["candidate"]["rmse"] > ev["champion"]["rmse"]
    with pytest.raises(ModelRejected) as exc:
        retrain.register(weak_cfg, trained["snap"], tr, ev, trained["trigger"])
    assert exc.value.failed_checks == ev["failed_checks"]
    assert "rmse" in str(exc.value)
    assert registry.champion(bikeshare_cfg.name).version == 1
    assert len(tracking.client().search_model_versions(f"name = '{bikeshare_cfg.name}'")) == 1
    assert tracking.client().get_run(tr["run_id"]).data.tags["retrainer.outcome"] == "rejected"


# -- monitor path ---------------------------------------------------------------------------------------
def test_monitor_path_records_decision(monitored, bikeshare_cfg, bikeshare_weeks):
    cfg, dr = bikeshare_cfg, monitored["dr"]
    name, week = bikeshare_weeks[HISTORY_WEEKS]
    batch = land(dr, name, week)

    claim = monitor.claim_batch(cfg, "scheduled__mon-1")
    validation = monitor.validate_batch(cfg, claim, "scheduled__mon-1")
    scored = monitor.score_batch(cfg, claim)
    drift = monitor.measure_drift(cfg, claim, scored)
    perf = monitor.performance(cfg, claim, scored)
    flags = monitor.flagged_rate(cfg, claim, validation)
    decision = monitor.decide(cfg, claim, validation, scored, drift, perf, flags, "scheduled__mon-1")
    archived = monitor.archive_batch(cfg, claim)

    reclaimed = monitor.claim_batch(cfg, "scheduled__mon-1")  # the same run gets the same batch back
    assert claim["batch"] == batch and {**reclaimed, "notes": {}} == {**claim, "notes": {}}
    notes = reclaimed["notes"]  # with what the tasks noted since: the gate's hash of the rows
    assert notes.items() >= claim["notes"].items() and len(notes["rows_sha256"]) == 64
    assert validation["rows"] == len(week) and validation["labelled_rows"] == len(week)
    assert Path(validation["gx_docs"]).exists()
    assert scored["champion_version"] == 1
    assert len(pd.read_parquet(scored["predictions"])) == len(week)
    assert 0 <= drift["data_drift_share"] <= 1 and Path(drift["report"]).exists()
    assert perf["labelled_rows"] == len(week) and perf["reference"] == pytest.approx(
        monitored["train"]["holdout"]["rmse"]
    )
    assert perf["value"] > 0
    assert flags["flagged_rate"] is None  # no sidecar
    assert decision["verdict"] in {"retrain", "no_retrain", "suppressed"}
    assert decision["retrain"] == (decision["verdict"] == "retrain")
    # Jan -> Feb weather: data drift is measured (it does not vote by default); the champion's
    # predictions drift and/or its error grows
    assert drift["data_drift_share"] > 0
    assert decision["verdict"] == "retrain" and {"prediction_drift", "performance"} & set(decision["fired"])
    runs = tracking.find_runs(cfg.name, "monitor", f"tags.`retrainer.batch` = '{batch}'")
    assert [r.info.run_id for r in runs] == [decision["mlflow_run_id"]]
    tags, mets = runs[0].data.tags, runs[0].data.metrics
    assert tags["retrainer.verdict"] == decision["verdict"]
    assert tags["retrainer.batch_sha256"] == claim["sha256"]
    assert json.loads(tags["retrainer.reasons"]) == decision["reasons"]
    assert mets["retrain_requested"] == 1.0 and mets["rows"] == len(week)
    assert mets["batch_rmse"] == pytest.approx(perf["value"])
    assert Path(archived["archived"]) == dr.archive / batch and (dr.archive / batch).exists()
    assert not (dr.processing / batch).exists()

    again = monitor.decide(cfg, claim, validation, scored, drift, perf, flags, "scheduled__mon-1")
    assert again["mlflow_run_id"] == decision["mlflow_run_id"]  # a retry updates, never duplicates
    assert len(tracking.find_runs(cfg.name, "monitor", f"tags.`retrainer.batch` = '{batch}'")) == 1

    # `retrainer check` on the same file runs the same pipeline: the same evidence and decision (it reads
    # the policy state from before this batch, as the decide task did), and records nothing
    checked = check_file(cfg, dr.archive / batch)
    keys = ("retrain", "reasons", "fired", "suppressed_by")
    assert {k: checked["decision"][k] for k in keys} == {k: decision[k] for k in keys}
    assert checked["performance"]["value"] == pytest.approx(perf["value"])
    assert checked["drift"]["prediction_drift"] == pytest.approx(drift["prediction_drift"])
    assert len(tracking.find_runs(cfg.name, "monitor", f"tags.`retrainer.batch` = '{batch}'")) == 1


def test_flags_sidecar_gives_flagged_rate(monitored, bikeshare_cfg, bikeshare_weeks):
    cfg, dr = bikeshare_cfg, monitored["dr"]
    name, week = bikeshare_weeks[HISTORY_WEEKS + 1]
    batch = land(dr, name, week)
    pd.DataFrame({"row": [0, 3, 3, 10, 42], "note": ["a", "b", "dup", "c", "d"]}).to_csv(
        dr.landing / f"{name}.flags.csv", index=False
    )

    claim = monitor.claim_batch(cfg, "scheduled__flags-1")
    validation = monitor.validate_batch(cfg, claim)
    flags = monitor.flagged_rate(cfg, claim, validation)
    monitor.archive_batch(cfg, claim)

    assert claim["batch"] == batch
    assert flags["flagged"] == 4  # unique rows, not flag lines
    assert flags["flagged_rate"] == pytest.approx(4 / len(week))
    assert Path(flags["flags_file"]) == dr.processing / f"{name}.flags.csv"
    assert (dr.archive / f"{name}.flags.csv").exists()  # the sidecar followed the batch


def test_malformed_batch_is_quarantined(monitored, bikeshare_cfg, bikeshare_weeks):
    cfg, dr = bikeshare_cfg, monitored["dr"]
    name, week = bikeshare_weeks[HISTORY_WEEKS + 2]
    batch = land(dr, name, week.drop(columns=["temp"]))
    claim = monitor.claim_batch(cfg, "scheduled__bad-1")

    with pytest.raises(DataValidationError) as exc:
        monitor.validate_batch(cfg, claim, "scheduled__bad-1")

    assert any(f["column"] == "temp" for f in exc.value.failures)
    assert batch in str(exc.value) and "temp" in str(exc.value)
    assert (dr.quarantine / batch).exists()
    assert not (dr.processing / batch).exists() and not (dr.archive / batch).exists()
    reason = json.loads((dr.quarantine / f"{batch}.reason.json").read_text())
    assert reason["run_id"] == "scheduled__bad-1" and "temp" in reason["message"]
    assert any(f["column"] == "temp" for f in reason["failures"])
    assert registry.champion(cfg.name).version == 1
    runs = tracking.find_runs(cfg.name, "monitor", f"tags.`retrainer.batch` = '{batch}'")
    assert [r.data.tags["retrainer.verdict"] for r in runs] == ["quarantined"]

    with pytest.raises(DataValidationError, match="temp"):  # a task retry re-raises, the file stays put
        monitor.validate_batch(cfg, claim, "scheduled__bad-1")
    assert (dr.quarantine / batch).exists()


def test_thresholds_combine_floors_and_champion_margin(bikeshare_cfg):
    loose = bikeshare_cfg.model_copy(
        update={"validation": bikeshare_cfg.validation.model_copy(update={"max_degradation": 0.1})}
    )

    strict = retrain.metric_thresholds(bikeshare_cfg, 20.0, force=False)
    margin = retrain.metric_thresholds(loose, 20.0, force=False)
    forced = retrain.metric_thresholds(bikeshare_cfg, 20.0, force=True)
    first = retrain.metric_thresholds(bikeshare_cfg, None, force=False)

    assert strict["rmse"].threshold == 20.0 and strict["rmse"].greater_is_better is False
    assert strict["r2"].threshold == 0.3 and strict["r2"].greater_is_better is True
    assert margin["rmse"].threshold == pytest.approx(22.0)  # may lose 10% of the champion's rmse
    assert set(forced) == set(first) == {"r2"}  # floors always apply; champion comparison only unforced
