"""End to end through the real scheduler: a drifted batch lands -> monitor -> asset -> retrain -> new version.

Everything is asserted through Airflow's REST API v2 (and the Retraining plugin's JSON API), as a user or an
external system would see it. The components run on 127.0.0.1 with free ports (see conftest.py).
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from retrainer import assets
from tests.support.e2e import MODEL, MONITOR, RETRAIN, wait_until

pytestmark = pytest.mark.e2e


def _xcom(stack: Any, dag_id: str, run_id: str, task_id: str) -> Any:
    from urllib.parse import quote

    path = f"/api/v2/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}/taskInstances/{task_id}/xcomEntries/return_value"
    return stack.request("GET", path + "?deserialize=true")["value"]


def _finished(stack: Any, dag_id: str) -> list[dict[str, Any]] | None:
    runs = stack.runs(dag_id)
    if runs and all(r["state"] in ("success", "failed") for r in runs):
        return runs
    return None


def test_drifted_batch_retrains_through_the_scheduler(stack: Any) -> None:
    started = time.monotonic()
    # first champion: a manual run of the retrain DAG (unpausing may also start the latest cron run)
    stack.unpause(RETRAIN)
    first = stack.trigger(RETRAIN, {"reason": "first champion from history"})
    assert stack.wait_run(RETRAIN, first["dag_run_id"])["state"] == "success"
    wait_until("retrain runs to settle", lambda: _finished(stack, RETRAIN))
    versions_before = {
        v["version"] for v in stack.request("GET", f"/retrainer/api/models/{MODEL}")["versions"]
    }
    assert versions_before, "no champion registered by the first retrain"

    # the monitor: continuous schedule, a sensor waiting on landing/
    stack.unpause(MONITOR)
    week, df = stack.weeks[0]  # 2011-02-12: the first warm week drifts (temperature, predictions, rmse)
    landed = time.monotonic()
    from devtools.stack import drop_batch

    drop_batch(stack, week, df)

    def monitor_done() -> dict[str, Any] | None:
        for r in stack.runs(MONITOR):
            if r["state"] in ("success", "failed"):
                return r
        return None

    run = wait_until("the monitor run for the batch", monitor_done)
    assert run["state"] == "success", f"monitor run {run['dag_run_id']} ended {run['state']}"
    decision = _xcom(stack, MONITOR, run["dag_run_id"], "decide")
    assert decision["batch"] == f"{week}.parquet"
    assert decision["verdict"] == "retrain", decision
    assert decision["reasons"] and all(
        r.split()[0] in {"prediction_drift", "rmse", "data_drift"} for r in decision["reasons"]
    ), decision["reasons"]

    def asset_run() -> dict[str, Any] | None:
        runs = [r for r in stack.runs(RETRAIN) if r["run_type"] == "asset_triggered"]
        return runs[0] if runs and runs[0]["state"] in ("success", "failed") else None

    retrain = wait_until("the asset-triggered retrain run", asset_run)
    # (asked after the run started: Airflow 3.2's events endpoint answers 500 while a created run has no
    # start_date yet)
    events = stack.request("GET", f"/api/v2/assets/events?source_dag_id={MONITOR}")["asset_events"]
    assert len(events) == 1
    event = events[0]
    assert event["uri"] == assets.retrain_request_uri(MODEL)
    assert event["source_run_id"] == run["dag_run_id"]
    assert event["extra"]["reasons"] == decision["reasons"]

    assert retrain["state"] == "success"
    assert retrain["dag_run_id"] in [r["run_id"] for r in event["created_dagruns"]]
    trigger = _xcom(stack, RETRAIN, retrain["dag_run_id"], "resolve_trigger")
    assert trigger["source"] == "asset"
    assert trigger["reasons"] == decision["reasons"]
    registered = _xcom(stack, RETRAIN, retrain["dag_run_id"], "register")
    assert registered["created"] is True
    assert registered["version"] not in versions_before

    detail = stack.request("GET", f"/retrainer/api/models/{MODEL}")
    assert detail["summary"]["champion"]["version"] == registered["version"]
    new = next(v for v in detail["versions"] if v["version"] == registered["version"])
    assert new["aliases"] == ["champion"] and new["trigger_source"] == "asset"
    assert detail["checks"][-1]["verdict"] == "retrain"
    assert detail["checks"][-1]["evidently"], "the batch's Evidently report is linked"
    print(
        f"\nlanding -> monitor done {time.monotonic() - landed:.0f}s; whole scenario {time.monotonic() - started:.0f}s"
    )


def test_manual_trigger_params_validated_and_recorded(stack: Any) -> None:
    from devtools.stack import ApiError

    stack.unpause(RETRAIN)
    with pytest.raises(ApiError) as bad:
        stack.trigger(RETRAIN, {"window": "8 weeks"})
    assert bad.value.status == 400
    assert "window" in bad.value.body and "'8 weeks' does not match" in bad.value.body
    with pytest.raises(ApiError) as bad_force:
        stack.trigger(RETRAIN, {"force": "yes"})
    assert bad_force.value.status == 400 and "force" in bad_force.value.body

    wait_until("retrain runs to settle", lambda: _finished(stack, RETRAIN))
    run = stack.trigger(
        RETRAIN, {"force": False, "reason": "e2e: manual with a shorter window", "window": "5W"}
    )
    done = stack.wait_run(RETRAIN, run["dag_run_id"])
    assert done["state"] == "success"
    assert done["run_type"] == "manual"
    trigger = _xcom(stack, RETRAIN, run["dag_run_id"], "resolve_trigger")
    assert trigger["source"] == "manual"
    assert trigger["window"] == "5W"
    assert "e2e: manual with a shorter window" in trigger["reasons"]
    snap = _xcom(stack, RETRAIN, run["dag_run_id"], "snapshot")
    assert snap["rows"] <= 5 * 7 * 24, "the 5W window override shaped the snapshot (hourly rows)"
