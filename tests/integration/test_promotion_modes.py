"""Promotion modes, rollback and history with real ``dag.test()`` runs and a real MLflow store.

Two extra model configs are written into the session's config folder (copies of bikeshare with another
``name`` and ``promotion`` mode): ``bikeshadow`` (shadow, 2 batches, margin 10%) and ``bikeapproval``
(approval through Airflow's human-in-the-loop operator). Tests run in file order and share one data root.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any

import pytest

from tests.support import dags
from tests.support.dags import run, write_config, xcom

if TYPE_CHECKING:
    from pathlib import Path

    import pandas as pd

pytestmark = pytest.mark.integration

SHADOW, APPROVAL, GUARD = "bikeshadow", "bikeapproval", "bikeguard"
LINEAR = {"estimator": "sklearn.linear_model.LinearRegression", "params": {}}


def _config(name: str, promotion: dict[str, Any], **model: Any) -> dict[str, Any]:
    raw = dags.bikeshare_config(name)
    raw["promotion"] = promotion
    raw["validation"]["floors"] = {}
    if model:
        raw["model"] = model
    return raw


@pytest.fixture(scope="module")
def world(airflow_env: Path, bikeshare_weeks: list[tuple[str, pd.DataFrame]]) -> Any:
    from devtools import harness

    dags.use_store(airflow_env / "promotion")
    folder = airflow_env / "models"
    write_config(folder, _config(SHADOW, {"mode": "shadow", "shadow_batches": 2, "margin": 0.1}))
    write_config(folder, _config(APPROVAL, {"mode": "approval"}))
    write_config(folder, _config(GUARD, {"mode": "immediate", "rollback_batches": 2, "margin": 0.1}))
    roots = {name: dags.seed_history(name, bikeshare_weeks) for name in (SHADOW, APPROVAL, GUARD)}
    yield {"dr": roots, "weeks": bikeshare_weeks, "folder": folder}
    for name in (SHADOW, APPROVAL, GUARD):
        (folder / f"{name}.yaml").unlink()
    harness.reload_dags()


def aliases(name: str) -> tuple[int | None, int | None]:
    """(champion, challenger) versions."""
    from retrainer.tracking import registry

    champ, chal = registry.champion(name), registry.challenger(name)
    return (champ.version if champ else None, chal.version if chal else None)


def moves(name: str) -> list[tuple[str, int | None, int | None]]:
    from retrainer.tracking import registry

    return [(e["action"], e["from_version"], e["to_version"]) for e in registry.history(name)]


def test_shadow_challenger_promoted_after_n_good_batches(world: dict[str, Any]) -> None:
    first = run(f"{SHADOW}__retrain", {"reason": "initial champion"})
    assert first["state"] == "success", first
    assert aliases(SHADOW) == (1, None)  # no champion yet: nothing to shadow against

    name, week = world["weeks"][6]
    world["dr"][SHADOW].import_batch(week, f"{name}.parquet", "archive")
    second = run(f"{SHADOW}__retrain", {"reason": "new week"})
    assert second["state"] == "success", second
    assert xcom(second, "evaluate")["passed"] is True
    staged = xcom(second, "promote")
    assert staged["alias"] == "challenger" and staged["awaiting"] == "shadow"
    assert aliases(SHADOW) == (1, 2)  # validated, but still only in the shadows

    verdicts = []
    for i in (7, 8):
        name, week = world["weeks"][i]
        world["dr"][SHADOW].import_batch(week, f"{name}.parquet")
        res = run(f"{SHADOW}__monitor")
        assert res["state"] == "success", res
        shadow = xcom(res, "shadow_score")
        verdicts.append((shadow["verdict"], shadow["action"]))
        from retrainer.tracking.runs import client

        logged = client().get_run(xcom(res, "decide")["mlflow_run_id"]).data.metrics
        assert logged["shadow_champion_rmse"] == shadow["champion"]
        assert logged["shadow_challenger_rmse"] == shadow["challenger"]
        if i == 7:
            assert aliases(SHADOW) == (1, 2), "promoted before N batches"

    assert verdicts == [("non_inferior", "waiting"), ("non_inferior", "promoted")]
    assert aliases(SHADOW) == (2, None)
    assert moves(SHADOW) == [("promote", None, 1), ("challenger", None, 2), ("promote", 1, 2)]


def test_worse_challenger_is_retired_with_the_reason(world: dict[str, Any]) -> None:
    from retrainer.tracking import registry

    # A config change to a far weaker estimator, forced past the champion comparison into the shadows.
    weak = _config(
        SHADOW,
        {"mode": "shadow", "shadow_batches": 2, "margin": 0.1},
        **LINEAR,
    )
    original = (world["folder"] / f"{SHADOW}.yaml").read_text()
    write_config(world["folder"], weak)
    try:
        res = run(f"{SHADOW}__retrain", {"reason": "try a linear model", "force": True})
        assert res["state"] == "success", res
        assert aliases(SHADOW) == (2, 3)

        name, week = world["weeks"][9]
        world["dr"][SHADOW].import_batch(week, f"{name}.parquet")
        mon = run(f"{SHADOW}__monitor")
        assert mon["state"] == "success", mon
        shadow = xcom(mon, "shadow_score")
        assert (shadow["verdict"], shadow["action"]) == ("inferior", "retired")
        assert shadow["challenger"] > shadow["champion"] * 1.1
    finally:
        (world["folder"] / f"{SHADOW}.yaml").write_text(original)
        from devtools import harness

        harness.reload_dags()
    assert aliases(SHADOW) == (2, None)
    last = registry.history(SHADOW)[-1]
    assert (last["action"], last["from_version"], last["to_version"]) == ("retire", 3, None)
    assert "worse" in last["reason"] and "v3" in last["reason"]
    assert registry.is_retired(SHADOW, 3)


def test_rollback_dag_restores_previous_champion_and_history_shows_both(
    world: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    from retrainer.cli import main

    res = run(f"{SHADOW}__rollback", {"reason": "complaints after the promotion"})

    assert res["state"] == "success", res
    assert xcom(res, "rollback")["to_version"] == 1
    assert aliases(SHADOW) == (1, None)
    assert moves(SHADOW)[-1] == ("rollback", 2, 1)
    assert ("promote", 1, 2) in moves(SHADOW)

    assert main(["history", SHADOW]) == 0
    table = capsys.readouterr().out
    lines = table[table.index("#  when (UTC)") :].splitlines()  # the table, after any task log noise
    assert any(" promote " in ln and " v1 " in ln and " v2 " in ln for ln in lines)
    assert any(" rollback " in ln and "complaints" in ln and "dag_run:" in ln for ln in lines)

    # And from the command line, forward again to a named version.
    assert main(["rollback", SHADOW, "--to", "2", "--reason", "fixed upstream"]) == 0
    assert aliases(SHADOW) == (2, None)
    assert moves(SHADOW)[-1] == ("rollback", 1, 2)
    assert main(["rollback", SHADOW, "--to", "2"]) == 2  # already the champion: a clear error


def test_automatic_rollback_when_new_champion_trails_the_previous(world: dict[str, Any]) -> None:
    from devtools import harness
    from retrainer.tracking import registry

    assert run(f"{GUARD}__retrain")["state"] == "success"
    original = (world["folder"] / f"{GUARD}.yaml").read_text()
    write_config(world["folder"], _config(GUARD, {"rollback_batches": 2, "margin": 0.1}, **LINEAR))
    try:  # a weak model forced into production (immediate mode)
        forced = run(f"{GUARD}__retrain", {"reason": "try a linear model", "force": True})
        assert forced["state"] == "success", forced
        assert aliases(GUARD) == (2, None)
    finally:
        (world["folder"] / f"{GUARD}.yaml").write_text(original)
        harness.reload_dags()

    name, week = world["weeks"][6]
    world["dr"][GUARD].import_batch(week, f"{name}.parquet")
    mon = run(f"{GUARD}__monitor")

    assert mon["state"] == "success", mon
    watch = xcom(mon, "watch_champion")
    assert watch["action"] == "rolled_back" and watch["champion"] > watch["previous"] * 1.1, watch
    assert aliases(GUARD) == (1, None)
    assert moves(GUARD) == [("promote", None, 1), ("promote", 1, 2), ("rollback", 2, 1)]
    assert "automatic" in registry.history(GUARD)[-1]["reason"]


def test_approval_mode_promotes_only_after_a_person_approves(world: dict[str, Any]) -> None:
    from devtools import harness

    dag_id, approval_dag = f"{APPROVAL}__retrain", f"{APPROVAL}__approval"
    first = run(dag_id, {"reason": "initial champion"})
    assert first["state"] == "success", first
    assert first["tasks"]["request_approval"]["state"] == "skipped"  # the first model replaces nothing
    assert aliases(APPROVAL) == (1, None)

    name, week = world["weeks"][6]
    world["dr"][APPROVAL].import_batch(week, f"{name}.parquet", "archive")
    staged = run(dag_id, {"reason": "new week"})
    # the retrain run ends after staging: its DAG's single active run is not held while a person decides
    assert staged["state"] == "success", staged
    assert xcom(staged, "request_approval")["version"] == 2
    assert aliases(APPROVAL) == (1, 2)
    seen: dict[str, Any] = {}

    def reviewer() -> None:
        """A person looking at the pending request, waiting a while, then approving it."""
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not (pending := harness.pending_approvals(approval_dag)):
            time.sleep(0.5)
        if not pending:
            return
        seen["request"] = pending[0]
        seen["while_waiting"] = aliases(APPROVAL)
        time.sleep(6)  # longer than the operator's 5 s poll: it must keep waiting, not promote
        seen["after_6s"] = aliases(APPROVAL)
        seen["response"] = harness.respond(
            approval_dag, pending[0]["run_id"], pending[0]["task_id"], "Approve", "alice"
        )

    person = threading.Thread(target=reviewer, daemon=True)
    person.start()
    # Under dag.test() the asset-triggered approval run is recorded but not executed: run it here.
    res = run(approval_dag)
    person.join(timeout=10)

    assert res["state"] == "success", res
    assert seen["request"]["options"] == ["Approve", "Reject"]
    assert "v2" in seen["request"]["subject"]
    assert seen["while_waiting"] == (1, 2)  # staged as challenger, champion untouched
    assert seen["after_6s"] == (1, 2)
    assert seen["response"]["chosen_options"] == ["Approve"]
    assert xcom(res, "apply_approval")["decision"] == "approved"
    assert aliases(APPROVAL) == (2, None)
    from retrainer.tracking import registry

    last = registry.history(APPROVAL)[-1]
    assert (last["action"], last["from_version"], last["to_version"]) == ("promote", 1, 2)
    assert "alice" in last["by"]
