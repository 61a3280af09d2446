"""Retrain requests are never lost under the real scheduler.

The retrain DAG runs one at a time (``max_active_runs=1``); requests (asset events) that arrive while a
retrain runs are merged into the next run. A known Airflow report (apache/airflow#56050) describes later
asset events sitting unused with that set-up; here several requests arrive during a run, and each must be
served: linked by Airflow to a run it created, and its reason in that run's recorded trigger.
(Requests the policy's cooldown suppresses never become events: each is a decision record instead, which
the monitor tests assert.)
"""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import quote

import pytest

from retrainer import assets
from tests.support.e2e import MODEL, RETRAIN, ensure_champion, wait_until

pytestmark = [
    pytest.mark.e2e,
    # Open: on Airflow 3.2.2 requests posted after the merged run was created can sit unused (no run created
    # for them within 10 minutes), as apache/airflow#56050 reports. Run it with RETRAINER_RUN_OPEN_DEFECTS=1.
    pytest.mark.skipif(
        not os.environ.get("RETRAINER_RUN_OPEN_DEFECTS"),
        reason="open defect: later retrain requests can sit unused under max_active_runs=1 (apache/airflow#56050)",
    ),
]
REQUESTS = 3


def _settled(stack: Any) -> list[dict[str, Any]] | None:
    runs = stack.runs(RETRAIN)
    return runs if all(r["state"] in ("success", "failed") for r in runs) else None


def _request_asset_id(stack: Any) -> int:
    uri = quote(assets.retrain_request_uri(MODEL), safe="")
    return int(stack.request("GET", f"/api/v2/assets?uri_pattern={uri}")["assets"][0]["id"])


def test_requests_during_a_retrain_are_all_served(stack: Any) -> None:
    ensure_champion(stack)
    wait_until("retrain runs to settle", lambda: _settled(stack))
    asset_id = _request_asset_id(stack)
    runs_before = {r["dag_run_id"] for r in stack.runs(RETRAIN)}
    busy = stack.trigger(RETRAIN, {"reason": "e2e: a long retrain the requests arrive during"})
    wait_until(
        "the retrain to run",
        lambda: (
            stack.request("GET", f"/api/v2/dags/{RETRAIN}/dagRuns/{quote(busy['dag_run_id'], safe='')}")[
                "state"
            ]
            == "running"
        ),
    )
    sent = []
    for i in range(REQUESTS):
        # no batch named: a retrain refuses to run before the batches that requested it are archived
        extra = {"reasons": [f"e2e request {i}"]}
        sent.append(stack.request("POST", "/api/v2/assets/events", {"asset_id": asset_id, "extra": extra}))

    def all_served() -> list[dict[str, Any]] | None:
        if _settled(stack) is None:
            return None
        events = stack.request("GET", f"/api/v2/assets/events?asset_id={asset_id}&limit=100")["asset_events"]
        mine = [e for e in events if e["id"] in {s["id"] for s in sent}]
        return mine if len(mine) == REQUESTS and all(e["created_dagruns"] for e in mine) else None

    served = wait_until("every request to be served by a run", all_served, timeout=600)
    new_runs = {r["dag_run_id"] for r in stack.runs(RETRAIN)} - runs_before - {busy["dag_run_id"]}
    assert new_runs, "no run served the requests"
    recorded: dict[str, list[str]] = {}
    for rid in new_runs:
        path = f"/api/v2/dags/{RETRAIN}/dagRuns/{quote(rid, safe='')}/taskInstances/resolve_trigger"
        trigger = stack.request("GET", path + "/xcomEntries/return_value?deserialize=true")["value"]
        assert trigger["source"] == "asset"
        recorded[rid] = trigger["reasons"]
    for event in served:
        (reason,) = event["extra"]["reasons"]
        runs = [r["run_id"] for r in event["created_dagruns"]]
        assert any(reason in recorded.get(rid, []) for rid in runs), (reason, runs, recorded)
    # merged, not one run each: the requests that arrived during one run share the next
    assert len(new_runs) < REQUESTS, recorded
