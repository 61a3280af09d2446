"""Approvals that end, under the real scheduler and triggerer.

``bikeapproval`` (see conftest) is bikeshare in approval mode with a 20 s approval timeout, ``admin`` as
its only approver, and alerts to the session's SMTP sink. A retrain stages a challenger and ends; the
approval DAG (asset-triggered) waits in the triggerer; nobody answers; the timeout rejects and retires the
challenger, recorded in the history, and the alerts say so.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.e2e import wait_until

pytestmark = pytest.mark.e2e

MODEL = "bikeapproval"
RETRAIN, APPROVAL = f"{MODEL}__retrain", f"{MODEL}__approval"


def detail(stack: Any) -> dict[str, Any]:
    return dict(stack.request("GET", f"/retrainer/api/models/{MODEL}"))


def test_unanswered_approval_times_out_rejects_and_frees_the_retrain_dag(stack: Any, smtp: Any) -> None:
    from retrainer.storage import DataRoot

    # generous timeouts: a retrain takes ~30 s on a quiet machine, minutes on a shared, loaded one
    stack.unpause(RETRAIN)
    stack.unpause(APPROVAL)
    first = stack.trigger(RETRAIN, {"reason": "first champion"})
    assert stack.wait_run(RETRAIN, first["dag_run_id"], timeout=900)["state"] == "success"
    assert detail(stack)["summary"]["champion"]["version"] == 1

    week, df = stack.weeks[0]  # one more week of data: the next retrain registers a new version
    DataRoot(stack.state / "data", MODEL).import_batch(df, f"{week}.parquet", stage="archive")
    second = stack.trigger(RETRAIN, {"reason": "new week", "force": True})
    done = stack.wait_run(RETRAIN, second["dag_run_id"], timeout=900)
    assert done["state"] == "success", done
    assert detail(stack)["summary"]["challenger"]["version"] == 2

    # the approval DAG runs on the asset the retrain emitted, and waits in the triggerer (deferred)
    run = wait_until("an approval run", lambda: next(iter(stack.runs(APPROVAL)), None), timeout=300)
    ti_path = f"/api/v2/dags/{APPROVAL}/dagRuns/{run['dag_run_id']}/taskInstances/approval"
    wait_until("the approval task waiting", lambda: stack.request("GET", ti_path)["state"] == "deferred", 300)
    hitl = stack.request("GET", f"{ti_path}/-1/hitlDetails")
    assert [u["id"] for u in hitl["assigned_users"]] == ["admin"]
    assert hitl["defaults"] == ["Reject"] and "v2" in hitl["subject"]
    # while a person is asked, the retrain DAG holds no active run: new requests are taken
    assert all(r["state"] in ("success", "failed") for r in stack.runs(RETRAIN))
    assert detail(stack)["summary"]["champion"]["version"] == 1

    final = stack.wait_run(APPROVAL, run["dag_run_id"], timeout=600)

    assert final["state"] == "success", final
    d = detail(stack)
    assert d["summary"]["champion"]["version"] == 1 and d["summary"]["challenger"] is None
    last = d["history"][-1]
    assert (last["action"], last["from_version"]) == ("retire", 2), last
    assert "no answer within 20S" in last["reason"] and "timeout" in last["by"]
    wanted = {f"[retrainer] {MODEL}: {t}" for t in ("new champion", "approval waiting", "candidate rejected")}
    wait_until("the alerts", lambda: wanted <= {m["subject"] for m in smtp.messages}, timeout=30)
    rejected = smtp.bodies(f"{MODEL}: candidate rejected")[0]
    assert "no answer within 20S" in rejected and f"/dags/{APPROVAL}/runs/" in rejected
