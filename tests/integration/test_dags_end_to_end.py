"""End to end with real ``dag.test()`` runs, a real MLflow SQLite store, real GX and Evidently.

One scenario, in order, on real Bikeshare weeks: train the first champion -> a clean batch (no retrain)
-> a drifted batch (retrain requested, new version registered and promoted) -> a malformed batch
(quarantined, champion untouched) -> a duplicate delivery and a re-run retrain (no duplicate versions or
snapshots) -> a config change that makes the model worse (candidate rejected, champion kept).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from retrainer import assets
from tests.support import dags
from tests.support.dags import run, xcom

pytestmark = pytest.mark.integration

ASSET_URI = assets.retrain_request_uri("bikeshare")


@pytest.fixture(scope="module")
def world(airflow_env: Path, bikeshare_weeks: list[tuple[str, pd.DataFrame]]) -> dict[str, Any]:
    """Module-wide state: the data root and MLflow store all steps share."""
    dags.use_store(airflow_env / "e2e")
    dr = dags.seed_history("bikeshare", bikeshare_weeks)
    return {"dr": dr, "weeks": bikeshare_weeks}


def versions() -> list[int]:
    from retrainer.tracking.runs import client

    return sorted(int(v.version) for v in client().search_model_versions("name = 'bikeshare'"))


def champion_version() -> int | None:
    from retrainer.tracking import registry

    champ = registry.champion("bikeshare")
    return champ.version if champ else None


def test_01_first_champion_from_history(world: dict[str, Any]) -> None:
    res = run("bikeshare__retrain", {"reason": "initial champion"})

    assert res["state"] == "success", res
    assert xcom(res, "resolve_trigger")["source"] == "manual"
    assert xcom(res, "evaluate")["passed"] is True
    assert versions() == [1]
    assert champion_version() == 1
    snap = xcom(res, "snapshot")
    manifest = json.loads((Path(snap["path"]) / "manifest.json").read_text())
    assert manifest["sha256"] == snap["sha256"] and manifest["rows"] == snap["rows"] > 0
    assert manifest["source_batches"] == ["2011-01-00-history.parquet"]


def test_02_clean_batch_does_not_retrain(world: dict[str, Any]) -> None:
    from devtools import harness

    # The last two history weeks again, resampled: the data the champion was trained on, so no drift.
    recent = (
        pd.concat([w for _, w in world["weeks"][4:6]])
        .sample(frac=0.7, random_state=1)
        .sort_values("timestamp")
    )
    world["dr"].import_batch(recent, "2011-02-05-clean.parquet")
    events_before = len(harness.asset_events(ASSET_URI))

    res = run("bikeshare__monitor")

    assert res["state"] == "success", res
    decision = xcom(res, "decide")
    assert decision["verdict"] == "no_retrain", decision
    assert res["tasks"]["request_retrain"]["state"] == "skipped"
    assert len(harness.asset_events(ASSET_URI)) == events_before
    assert (world["dr"].archive / "2011-02-05-clean.parquet").exists()


def test_03_drifted_batch_requests_retrain_and_promotes(world: dict[str, Any]) -> None:
    from devtools import harness

    name, week = world["weeks"][6]  # the week after the history: a warm spell (temp +2 std)
    world["dr"].import_batch(week, f"{name}.parquet")

    res = run("bikeshare__monitor")

    assert res["state"] == "success", res
    decision = xcom(res, "decide")
    assert decision["verdict"] == "retrain", decision
    assert any("drift" in r for r in decision["reasons"]), decision["reasons"]
    event = harness.asset_events(ASSET_URI)[-1]
    assert event["extra"]["reasons"] == decision["reasons"]
    assert event["extra"]["batch"] == f"{name}.parquet"

    # Under dag.test() the asset-triggered run is recorded but not executed: run it as the scheduler would.
    retrain = run(
        "bikeshare__retrain", {"trigger_source": "asset", "reason": "; ".join(event["extra"]["reasons"])}
    )

    assert retrain["state"] == "success", retrain
    trigger = xcom(retrain, "resolve_trigger")  # a replay is a manual run: the asset path is only claimed
    assert (trigger["source"], trigger["claimed_source"], trigger["triggered_by"]) == (
        "manual",
        "asset",
        "dag_test",
    )
    ev = xcom(retrain, "evaluate")
    assert ev["passed"] is True, ev
    assert ev["candidate"]["rmse"] <= ev["champion"]["rmse"]
    assert versions() == [1, 2]
    assert champion_version() == 2
    from retrainer.tracking import registry

    moves = registry.history("bikeshare")
    assert [(m["from_version"], m["to_version"]) for m in moves] == [(None, 1), (1, 2)]
    assert "asset" in moves[-1]["reason"]


def test_04_malformed_batch_is_quarantined_and_champion_untouched(world: dict[str, Any]) -> None:
    name, week = world["weeks"][7]
    broken = week.drop(columns=["hum"])  # schema change: a feature column disappeared
    world["dr"].import_batch(broken, f"{name}-broken.csv")
    before = (versions(), champion_version())

    res = run("bikeshare__monitor")

    assert res["state"] == "failed"
    assert res["tasks"]["validate_batch"]["state"] == "failed"
    assert res["tasks"]["request_retrain"]["state"] != "success"
    quarantined = world["dr"].quarantine / f"{name}-broken.csv"
    assert quarantined.exists()
    reason = json.loads((world["dr"].quarantine / f"{name}-broken.csv.reason.json").read_text())
    assert "hum" in reason["message"]
    assert any(f["column"] == "hum" for f in reason["failures"])
    assert (versions(), champion_version()) == before
    assert not (world["dr"].processing / f"{name}-broken.csv").exists()


def test_05_reruns_do_not_duplicate_versions_or_snapshots(world: dict[str, Any]) -> None:
    dr = world["dr"]
    snapshots_before = sorted(p.name for p in dr.snapshots.iterdir())
    versions_before = versions()

    res = run("bikeshare__retrain", {"reason": "re-run with no new data"})

    assert res["state"] == "success", res
    assert xcom(res, "snapshot")["created"] is False
    assert xcom(res, "train")["reused"] is True
    assert xcom(res, "evaluate")["passed"] is False  # identical to the champion: nothing to register
    assert res["tasks"]["register"]["state"] == "skipped"
    assert versions() == versions_before
    assert sorted(p.name for p in dr.snapshots.iterdir()) == snapshots_before

    # A duplicate delivery of an already-processed batch is quarantined, not counted twice.
    name, week = world["weeks"][6]
    dr.import_batch(week, f"{name}-resent.parquet")
    dup = run("bikeshare__monitor")
    assert dup["state"] == "failed"
    reason = dr.quarantine_reason(f"{name}-resent.parquet")
    assert reason is not None and "duplicate" in reason["message"]
    assert versions() == versions_before


def test_06_worse_candidate_is_not_promoted(world: dict[str, Any], airflow_env: Path) -> None:
    from devtools import harness

    # A config change to a much weaker estimator, with new data so the run is a real new candidate.
    cfg_path = airflow_env / "models" / "bikeshare.yaml"
    original = cfg_path.read_text()
    cfg_path.write_text(
        original.replace(
            "sklearn.ensemble.HistGradientBoostingRegressor", "sklearn.dummy.DummyRegressor"
        ).replace("params: {max_iter: 200, learning_rate: 0.1, random_state: 0}", "params: {}")
    )
    harness.reload_dags()
    try:
        before = (versions(), champion_version())
        res = run("bikeshare__retrain", {"reason": "try a simpler model"})

        assert res["state"] == "success", res
        ev = xcom(res, "evaluate")
        assert ev["passed"] is False
        assert any("rmse" in c for c in ev["failed_checks"]), ev
        assert res["tasks"]["register"]["state"] == "skipped"
        assert res["tasks"]["promote"]["state"] == "skipped"
        assert (versions(), champion_version()) == before
        from retrainer.tracking.runs import client

        run_tags = client().get_run(xcom(res, "train")["run_id"]).data.tags
        assert run_tags["retrainer.outcome"] == "rejected"
        assert "rmse" in run_tags["retrainer.validation"]
    finally:
        cfg_path.write_text(original)
        harness.reload_dags()
