"""Run this project's DAGs with real Airflow (``dag.test()``) on an embedded SQLite set-up.

Used by ``make demo`` and the integration tests (``from retrainer import harness``). :func:`configure`
must run before anything imports airflow: it points AIRFLOW_HOME, the metadata DB, the DAGs folder and
MLflow at one state folder. It needs the source checkout (``dags/``, ``plugins/``), not only the package.
"""

from __future__ import annotations

import functools
import logging
import os
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]  # the checkout: devtools/ is at its top
log = logging.getLogger("devtools.harness")


def configure(state: Path, *, unit_test_mode: bool = False) -> dict[str, str]:
    """Set the environment for Airflow, MLflow and Retrainer under ``state`` (call before importing airflow)."""
    state = state.resolve()
    home = state / "airflow"
    home.mkdir(parents=True, exist_ok=True)
    env = {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "True" if unit_test_mode else "False",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
        "RETRAINER_DATA_ROOT": str(state / "data"),
        "MLFLOW_TRACKING_URI": f"sqlite:///{state / 'mlflow.db'}",
        "RETRAINER_ARTIFACT_ROOT": str(state / "mlartifacts"),
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
        "GX_ANALYTICS_ENABLED": "False",
        "PYTHONWARNINGS": "ignore",
    }
    # the demo and tests deliver batches by rename (the delivery contract): nothing needs to settle
    env.setdefault("RETRAINER_SETTLE_SECONDS", os.environ.get("RETRAINER_SETTLE_SECONDS", "0"))
    os.environ.update(env)
    return env


def reset_db() -> None:
    """Create a fresh Airflow metadata DB (SQLite: ~10 s)."""
    from airflow.utils import db

    db.resetdb()


@functools.cache
def _speed_up_dag_test() -> None:
    """``dag.test()`` rebuilds the in-process execution API for every task; build it once per process."""
    from airflow.sdk.execution_time import supervisor

    supervisor.in_process_api_server = functools.cache(supervisor.in_process_api_server)


@functools.cache
def _answer_hitl_polls_in_dag_test() -> None:
    """Let ``dag.test()`` run the human-in-the-loop trigger inline.

    Airflow 3.2.2 / providers-standard 1.21: ``dag.test()`` runs a deferred task's trigger in-process, but
    its in-process supervisor does not answer the trigger's ``GetHITLDetailResponse`` poll (only the real
    triggerer does), so every HITL task fails under ``dag.test()`` with "Unhandled request". Answer that
    message exactly as the triggerer does (``triggerer_job_runner``), from the same execution API.
    """
    from airflow.jobs.triggerer_job_runner import HITLDetailResponseResult
    from airflow.sdk.execution_time.comms import GetHITLDetailResponse
    from airflow.sdk.execution_time.supervisor import InProcessTestSupervisor

    original = InProcessTestSupervisor._handle_request

    def _handle_request(self: Any, msg: Any, log: Any, req_id: int) -> None:
        if isinstance(msg, GetHITLDetailResponse):
            api_resp = self.client.hitl.get_detail_response(ti_id=msg.ti_id)
            self.send_msg(HITLDetailResponseResult.from_api_response(response=api_resp), request_id=req_id)
            return
        original(self, msg, log, req_id)

    InProcessTestSupervisor._handle_request = _handle_request  # type: ignore[method-assign]


@functools.cache
def _pass_exception_to_callbacks_in_dag_test() -> None:
    """Give failure callbacks the task's exception under ``dag.test()`` as the real task runner does.

    Airflow 3.2.2: the task runner's ``main()`` sets ``context["exception"] = error`` before ``finalize()``
    runs the ``on_failure_callback``; ``dag.test()``'s in-process path (``run_task_in_process``) calls
    ``finalize()`` without it, so a callback cannot say why the task failed. Do the same as ``main()``.
    """
    from airflow.sdk.execution_time import task_runner

    original = task_runner.finalize

    def finalize(ti: Any, state: Any, context: Any, log: Any, error: Any = None) -> Any:
        context["exception"] = error
        return original(ti, state, context, log, error)

    task_runner.finalize = finalize


def dagbag() -> Any:
    """Every DAG, as the DAG processor builds them. ``dag.test()`` runs tasks in this process and leaves
    Airflow's parsing context (the DAG a task process runs) set; cleared here so that the DAG files build
    every model's DAGs, not only the last one a task ran."""
    from airflow.dag_processing.dagbag import DagBag

    for var in ("_AIRFLOW_PARSING_CONTEXT_DAG_ID", "_AIRFLOW_PARSING_CONTEXT_TASK_ID"):
        os.environ.pop(var, None)
    return DagBag(dag_folder=str(REPO / "dags"), include_examples=False)


@functools.cache
def _dags() -> dict[str, Any]:
    bag = dagbag()
    if bag.import_errors:
        raise RuntimeError(f"DAG import errors: {bag.import_errors}")
    return dict(bag.dags)


def get_dag(dag_id: str) -> Any:
    return _dags()[dag_id]


def run_dag(dag_id: str, conf: dict[str, Any] | None = None, logical_date: Any = None) -> dict[str, Any]:
    """Run one DAG run with ``dag.test()``; returns its state, run id, per-task states and XComs.

    Passing the ``logical_date`` of an earlier run re-runs that run (same run id, every task again)."""
    from airflow.models import TaskInstance
    from airflow.utils.session import create_session

    _speed_up_dag_test()
    _answer_hitl_polls_in_dag_test()
    _pass_exception_to_callbacks_in_dag_test()
    dag = get_dag(dag_id)
    started = time.monotonic()
    run_after = {"run_after": logical_date} if logical_date is not None else {}  # same date, same run id
    dr = dag.test(run_conf=conf or {}, logical_date=logical_date, **run_after)
    elapsed = time.monotonic() - started
    tasks: dict[str, dict[str, Any]] = {}
    with create_session() as session:
        tis = session.query(TaskInstance).filter_by(dag_id=dag_id, run_id=dr.run_id).all()
        for ti in tis:
            duration = (
                (ti.end_date - ti.start_date).total_seconds() if ti.end_date and ti.start_date else None
            )
            tasks[ti.task_id] = {"state": str(ti.state), "duration": duration}
    return {
        "dag_id": dag_id,
        "run_id": dr.run_id,
        "logical_date": dr.logical_date,
        "state": str(dr.state),
        "tasks": tasks,
        "seconds": elapsed,
    }


def xcom(dag_id: str, run_id: str, task_id: str) -> Any:
    """The return value a task pushed in a run (None if it pushed nothing)."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        row = (
            session.query(XComModel)
            .filter_by(dag_id=dag_id, run_id=run_id, task_id=task_id, key="return_value")
            .one_or_none()
        )
        if row is None:
            return None
        return XComModel.deserialize_value(row)


def asset_events(uri: str) -> list[dict[str, Any]]:
    """Asset events recorded for ``uri``, oldest first, with their extra."""
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session

    with create_session() as session:
        rows = (
            session.query(AssetEvent)
            .join(AssetModel, AssetEvent.asset_id == AssetModel.id)
            .filter(AssetModel.uri == uri)
            .order_by(AssetEvent.timestamp)
            .all()
        )
        return [{"id": r.id, "extra": dict(r.extra or {}), "timestamp": r.timestamp} for r in rows]


def reload_dags() -> None:
    """Re-parse the DAG files (after a config change)."""
    _dags.cache_clear()


def pending_approvals(dag_id: str) -> list[dict[str, Any]]:
    """Human-in-the-loop requests of ``dag_id`` still waiting for a response (what the UI lists)."""
    from airflow.models import TaskInstance
    from airflow.models.hitl import HITLDetail
    from airflow.utils.session import create_session

    with create_session() as session:
        rows = (
            session.query(HITLDetail, TaskInstance)
            .join(TaskInstance, HITLDetail.ti_id == TaskInstance.id)
            .filter(TaskInstance.dag_id == dag_id, HITLDetail.responded_at.is_(None))
            .all()
        )
        return [
            {
                "run_id": ti.run_id,
                "task_id": ti.task_id,
                "subject": d.subject,
                "body": d.body,
                "options": d.options,
            }
            for d, ti in rows
        ]


def respond(dag_id: str, run_id: str, task_id: str, option: str, user: str = "reviewer") -> dict[str, Any]:
    """Answer a human-in-the-loop request through the same handler as the UI / REST API
    (``PATCH /api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/-1/hitlDetails``)."""
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser
    from airflow.api_fastapi.core_api.datamodels.hitl import UpdateHITLDetailPayload
    from airflow.api_fastapi.core_api.routes.public.hitl import update_hitl_detail
    from airflow.utils.session import create_session

    with create_session() as session:
        out = update_hitl_detail(
            dag_id=dag_id,
            dag_run_id=run_id,
            task_id=task_id,
            update_hitl_detail_payload=UpdateHITLDetailPayload(chosen_options=[option]),
            user=SimpleAuthManagerUser(username=user, role="admin"),
            session=session,
        )
        return out.model_dump(mode="json")
