"""Batch arrival by event, under the real scheduler and triggerer: no worker slot is held while models wait.

One stack for this module, with more models than worker slots (three copies of bikeshare, two slots) and
the default arrival path: the landing trigger runs in the triggerer, so a batch for the last model is
decided although no other model has had a batch. With the sensor path (``RETRAINER_ARRIVAL=sensor``) the
first two models' sensors take both slots and the third model's batch waits (what this test would catch).
A duplicate of the batch's arrival event (what a triggerer restart replays) starts a run that finds nothing
to claim: the batch is decided once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import yaml

from devtools.stack import ApiError
from retrainer import assets
from tests.support.e2e import wait_until

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
MODELS = ("arrive_a", "arrive_b", "arrive_c")  # more models than the stack's worker slots
SLOTS = 2
LAST = MODELS[-1]


@pytest.fixture(scope="module")
def arrival_stack(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from devtools import stack as S

    state = tmp_path_factory.mktemp("arrival")
    models = state / "models"
    models.mkdir()
    base = yaml.safe_load((REPO / "include" / "models" / "bikeshare.yaml").read_text())
    for name in MODELS:
        raw = {**base, "name": name, "schedule": None}
        (models / f"{name}.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    extra = {"RETRAINER_ARRIVAL": "event", "RETRAINER_ARRIVAL_POLL_SECONDS": "1"}
    st = S.Stack(state, port=S.free_port(), parallelism=SLOTS, config_dir=models, extra_env=extra)
    st.start()
    try:
        st.weeks = {name: S.seed_bikeshare(st, history_weeks=6, model=name) for name in MODELS}
        yield st
    finally:
        pids = st.stop()
        left = [name for name, pid in pids.items() if S.group_alive(pid)]
        assert not left, f"still running after stop: {left}"


def _tolerant(fn: Any) -> Any:
    """``fn`` for polling: an API call that timed out on a loaded machine counts as "not yet"."""

    def call() -> Any:
        try:
            return fn()
        except (OSError, TimeoutError, ApiError):
            return None

    return call


def _task_states(stack: Any, dag_id: str) -> dict[str, list[str]]:
    """State of every task instance of ``dag_id``, by run id."""
    out: dict[str, list[str]] = {}
    for run in stack.runs(dag_id):
        rid = quote(run["dag_run_id"], safe="")
        tis = stack.request("GET", f"/api/v2/dags/{dag_id}/dagRuns/{rid}/taskInstances")["task_instances"]
        out[run["dag_run_id"]] = [f"{t['task_id']}={t['state']}" for t in tis]
    return out


def _decided(stack: Any, dag_id: str) -> list[dict[str, Any]]:
    """The runs of ``dag_id`` whose ``decide`` task succeeded, with the decision."""
    out = []
    for run in stack.runs(dag_id):
        rid = quote(run["dag_run_id"], safe="")
        try:
            xcom = stack.request(
                "GET",
                f"/api/v2/dags/{dag_id}/dagRuns/{rid}/taskInstances/decide/xcomEntries/return_value"
                "?deserialize=true",
            )
        except Exception:  # not decided (yet)
            continue
        out.append({"run": run, "decision": xcom["value"]})
    return out


def _arrival_events(stack: Any, model: str) -> list[dict[str, Any]]:
    uri = quote(assets.arrival_uri(model), safe="")
    found = stack.request("GET", f"/api/v2/assets?uri_pattern={uri}")["assets"]
    if not found:
        return []
    return list(
        stack.request("GET", f"/api/v2/assets/events?asset_id={found[0]['id']}&limit=100")["asset_events"]
    )


def test_a_batch_for_the_last_model_is_decided_with_more_models_than_slots(arrival_stack: Any) -> None:
    from devtools.stack import drop_batch

    st = arrival_stack
    for name in MODELS:
        st.unpause(f"{name}__monitor")
    # idle: no model waits in a worker slot (with the sensor path, SLOTS sensors would be running now)
    wait_until(
        "the arrival watchers to start",
        lambda: _log(st, "triggerer").count(" starting ") >= len(MODELS),  # "trigger ID n starting"
        timeout=180,
    )
    for name in MODELS:
        assert _task_states(st, f"{name}__monitor") == {}, f"{name} holds a run while no batch landed"

    week, df = st.weeks[LAST][0]
    drop_batch(st, week, df, model=LAST)
    decided = wait_until(
        "the last model's batch to be decided",
        _tolerant(lambda: _decided(st, f"{LAST}__monitor")),
        timeout=600,
        every=3,
    )
    assert [d["decision"]["batch"] for d in decided] == [f"{week}.parquet"]
    events = _arrival_events(st, LAST)
    assert [e["extra"]["payload"]["batch"] for e in events] == [f"{week}.parquet"]
    assert events[0]["extra"]["from_trigger"] is True
    for name in MODELS[:-1]:  # the other models still hold nothing
        assert _task_states(st, f"{name}__monitor") == {}

    # a duplicate of the arrival event (a triggerer restart replays what it announced): one more run,
    # which finds nothing to claim and is skipped; the batch is decided once
    asset_id = st.request("GET", f"/api/v2/assets?uri_pattern={quote(assets.arrival_uri(LAST), safe='')}")[
        "assets"
    ][0]["id"]
    wait_until(  # (SQLite on a busy machine may answer "database is locked": the event is not stored)
        "the duplicate event to be stored",
        _tolerant(
            lambda: st.request(
                "POST", "/api/v2/assets/events", {"asset_id": asset_id, "extra": events[0]["extra"]}
            )
        ),
        timeout=120,
        every=3,
    )

    def duplicate_run_done() -> dict[str, list[str]] | None:
        states = _task_states(st, f"{LAST}__monitor")
        finished = [r for r in st.runs(f"{LAST}__monitor") if r["state"] in ("success", "failed")]
        return states if len(states) >= 2 and len(finished) == len(states) else None

    states = wait_until("the duplicate event's run", _tolerant(duplicate_run_done), timeout=600, every=3)
    claims = sorted(s for tis in states.values() for s in tis if s.startswith("claim_batch="))
    assert claims.count("claim_batch=success") == 1, states
    assert claims.count("claim_batch=skipped") == len(claims) - 1 >= 1, states
    assert [d["decision"]["batch"] for d in _decided(st, f"{LAST}__monitor")] == [f"{week}.parquet"]
    archived = sorted(p.name for p in (st.state / "data" / "archive" / LAST).iterdir())
    assert archived.count(f"{week}.parquet") == 1 and not any(".dup-" in n for n in archived)


def _log(stack: Any, name: str) -> str:
    path = stack.logs / f"{name}.log"
    return path.read_text(errors="replace") if path.exists() else ""
