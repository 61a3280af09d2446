"""The production twin end to end: Postgres, Redis, the CeleryExecutor with two workers, the FAB auth manager
and an MLflow server with basic auth, all on 127.0.0.1 (devtools.stack.ProdStack, the settings of
docker-compose.yaml). Started once for this module; the faults run one after another on it.

Each fault ends with nothing lost (every delivered batch in exactly one of archive/ or quarantine/), no
duplicate registered version (one version per run_key) and a champion that passed validation.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from tests.support.e2e import MODEL, MONITOR, RETRAIN, wait_until

pytestmark = pytest.mark.e2e
CRON_MODEL = "bikecron"  # a copy of bikeshare with a per-minute cron, for the schedule path
REPO = Path(__file__).resolve().parents[2]


def _cron_config(dest: Path) -> None:
    text = (dest / f"{MODEL}.yaml").read_text()
    text = text.replace(f"name: {MODEL}", f"name: {CRON_MODEL}", 1)
    text = "\n".join(
        'schedule: "* * * * *"' if line.startswith("schedule:") else line for line in text.splitlines()
    )
    (dest / f"{CRON_MODEL}.yaml").write_text(text + "\n")


@pytest.fixture(scope="module")
def twin(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from devtools import stack as S

    state = tmp_path_factory.mktemp("twin")
    models = S.fast_config_dir(state / "models", poke_interval=2)
    _cron_config(models)
    stack = S.ProdStack(
        state,
        port=S.free_port(),
        config_dir=models,
        workers=2,
        worker_concurrency=3,
        extra_env={
            # a worker killed with SIGKILL stops heartbeating: notice within seconds, not 5 min
            "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "20",
            "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "3",
            # a task queued while the scheduler died with Postgres is re-queued after this, not 10 min
            "AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT": "60",
            "AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT_CHECK_INTERVAL": "10",
            "OMP_NUM_THREADS": "1",  # one thread per task: tasks run side by side on 2 cores
        },
    )
    mp = pytest.MonkeyPatch()
    try:
        stack.start()
        print(f"\ntwin started in {stack.start_seconds:.0f}s")
        for key, value in stack.client_env().items():  # this process reads the twin's MLflow server
            mp.setenv(key, value)
        stack.weeks = S.seed_bikeshare(stack, history_weeks=6)
        _seed_copy(stack)  # the same history for the cron copy
        # both first retrains start now, side by side on the workers: bikeshare's (unpausing starts the
        # latest cron run; catchup is off) and the per-minute cron model's
        stack.unpause(RETRAIN)
        stack.unpause(f"{CRON_MODEL}__retrain")
        stack.delivered = []  # every batch a test lands: (model, file name)
        yield stack
    finally:
        mp.undo()
        pids = {name: p.pid for name, p in stack.procs.items()}  # after any restarts
        # what `make stop` runs: it reads the PIDs recorded in stack.json
        subprocess.run([sys.executable, "-m", "devtools.stack", "stop", "--state", str(state)])
        for p in stack.procs.values():
            with contextlib.suppress(Exception):
                p.wait(timeout=5)
        left = [name for name, pid in pids.items() if S.group_alive(pid) or S.alive(pid)]
        if left:
            stack.stop()
        stack.destroy()
        assert not left, f"still running after `make stop`: {left}"


def _seed_copy(stack: Any) -> None:
    import pandas as pd

    from retrainer.ml.datasets import bikeshare, weekly_batches
    from retrainer.storage import DataRoot

    weeks = weekly_batches(bikeshare(), "timestamp")
    dr = DataRoot(stack.state / "data", CRON_MODEL).ensure()
    dr.import_batch(pd.concat([w for _, w in weeks[:6]]), f"{weeks[0][0]}-history.parquet", stage="archive")


# -- helpers ------------------------------------------------------------------------------------------------
def _ti(stack: Any, dag_id: str, run_id: str, task_id: str) -> dict[str, Any]:
    path = f"/api/v2/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}/taskInstances/{task_id}"
    return dict(stack.request("GET", path))


def _xcom(stack: Any, dag_id: str, run_id: str, task_id: str) -> Any:
    path = f"/api/v2/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}/taskInstances/{task_id}/xcomEntries/return_value"
    return stack.request("GET", path + "?deserialize=true")["value"]


def _settled(stack: Any, dag_id: str) -> bool:
    return all(r["state"] in ("success", "failed") for r in stack.runs(dag_id))


def _versions(model: str = MODEL) -> list[Any]:
    from retrainer.tracking.runs import client

    return list(client().search_model_versions(f"name = '{model}'"))


def _assert_invariants(stack: Any, model: str = MODEL) -> None:
    """Nothing lost, no duplicate version, and the champion passed validation."""
    from retrainer.storage import DataRoot
    from retrainer.tracking.registry import champion
    from retrainer.tracking.runs import client

    dr = DataRoot(stack.state / "data", model)
    for m, name in stack.delivered:
        if m != model:
            continue
        places = [*dr.archive.rglob(name), *dr.quarantine.rglob(name)]
        assert len(places) == 1, f"{name}: expected in exactly one of archive/quarantine, found {places}"
    keys = [v.tags.get("retrainer.run_key") for v in _versions(model)]
    assert len(keys) == len(set(keys)), f"duplicate registered versions: {keys}"
    champ = champion(model)
    assert champ is not None
    run = client().get_run(champ.run_id)
    assert run.info.status == "FINISHED"
    evaluated = client().search_runs(
        [run.info.experiment_id], f"tags.`retrainer.registered_version` = '{champ.version}'"
    )
    assert evaluated, "the champion's training run records its registration (validation passed)"


def _no_ghost_runs(model: str = MODEL) -> None:
    from retrainer.tracking.runs import client, experiment_id

    runs = client().search_runs([experiment_id(model, "train")], "attributes.status = 'RUNNING'")
    assert not runs, f"ghost MLflow runs left RUNNING: {[r.info.run_id for r in runs]}"


def _wait_task_running(stack: Any, dag_id: str, run_id: str, task_id: str, timeout: float = 240) -> dict:
    def running() -> dict[str, Any] | None:
        ti = _ti(stack, dag_id, run_id, task_id)
        if ti["state"] in ("success", "failed", "upstream_failed"):
            raise AssertionError(f"{task_id} ended {ti['state']} before the fault was injected")
        return ti if ti["state"] == "running" and ti.get("pid") else None

    return dict(wait_until(f"{task_id} running", running, timeout=timeout, every=0.3))


def _manual_retrain(stack: Any, window: str, reason: str) -> str:
    wait_until("retrain runs to settle", lambda: _settled(stack, RETRAIN), timeout=300)
    run = stack.trigger(RETRAIN, {"force": True, "window": window, "reason": reason})
    return str(run["dag_run_id"])


def _celery_ran(stack: Any, run_id: str) -> set[str]:
    """The workers whose logs show a task of ``run_id`` (the CeleryExecutor handed it to them)."""
    return {
        path.stem for path in stack.logs.glob("worker-*.log") if run_id in path.read_text(errors="replace")
    }


# -- the production profile's surface ------------------------------------------------------------------------
def test_twin_listens_on_loopback_only(twin: Any) -> None:
    import psutil

    listening = []
    for name, pid in twin.procs.items():
        procs = [psutil.Process(pid.pid)]
        procs += procs[0].children(recursive=True)
        for proc in procs:
            try:
                conns = proc.net_connections(kind="inet")
            except psutil.NoSuchProcess:
                continue
            listening += [(name, c.laddr) for c in conns if c.status == psutil.CONN_LISTEN]
    assert {n for n, _ in listening} >= {"postgres", "redis", "mlflow", "api-server"}, listening
    assert all(addr.ip == "127.0.0.1" for _, addr in listening), listening
    ports = {addr.port for _, addr in listening}
    assert {twin.port, twin.mlflow_port, twin.pg_port, twin.redis_port} <= ports


def test_fab_login_and_mlflow_auth(twin: Any) -> None:
    import urllib.error

    def status(url: str, method: str = "GET", headers: dict[str, str] | None = None) -> tuple[int, str]:
        req = urllib.request.Request(
            url, method=method, headers=headers or {}, data=b"{}" if method == "POST" else None
        )
        opener = urllib.request.build_opener(_NoRedirect())
        try:
            with opener.open(req, timeout=30) as r:
                return r.status, r.headers.get("location", "")
        except urllib.error.HTTPError as exc:
            return exc.code, exc.headers.get("location", "")

    assert status(f"{twin.url}/api/v2/dags")[0] == 401
    assert status(f"{twin.url}/retrainer/api/models/{MODEL}")[0] == 401
    code, location = status(f"{twin.url}/retrainer/")
    assert code in (302, 303, 307) and "/auth/login" in location, (code, location)  # FAB's login page
    assert status(f"{twin.url}/auth/login/")[0] == 200
    bearer = {"Authorization": f"Bearer {twin.token()}"}
    assert status(f"{twin.url}/retrainer/", headers=bearer)[0] == 200
    assert status(f"{twin.url}/retrainer/api/models/{MODEL}", headers=bearer)[0] == 200
    # MLflow: nobody writes (or reads) anonymously; the service account can
    create = f"{twin.mlflow_url}/api/2.0/mlflow/experiments/create"
    assert status(create, "POST", {"Content-Type": "application/json"})[0] == 401
    import base64

    env = twin.client_env()
    basic = base64.b64encode(f"{env['MLFLOW_TRACKING_USERNAME']}:{env['MLFLOW_TRACKING_PASSWORD']}".encode())
    search = f"{twin.mlflow_url}/api/2.0/mlflow/experiments/search?max_results=1"
    assert status(search)[0] == 401
    assert status(search, headers={"Authorization": f"Basic {basic.decode()}"})[0] == 200


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


# -- both paths through Celery on Postgres --------------------------------------------------------------------
def test_cron_retrain_under_the_real_scheduler(twin: Any) -> None:
    dag_id = f"{CRON_MODEL}__retrain"  # unpaused by the fixture
    try:

        def scheduled_done() -> dict[str, Any] | None:
            runs = [r for r in twin.runs(dag_id) if r["run_type"] == "scheduled"]
            return next((r for r in runs if r["state"] in ("success", "failed")), None)

        run = wait_until("a per-minute cron run", scheduled_done, timeout=240)
    finally:
        twin.request("PATCH", f"/api/v2/dags/{dag_id}", {"is_paused": True})
    assert run["state"] == "success", run
    trigger = _xcom(twin, dag_id, run["dag_run_id"], "resolve_trigger")
    assert trigger["source"] == "schedule"
    versions = _versions(CRON_MODEL)
    assert versions and versions[0].tags["retrainer.trigger_source"] == "schedule"
    assert _celery_ran(twin, run["dag_run_id"])
    _assert_invariants(twin, CRON_MODEL)


def test_drifted_batch_to_new_champion_through_celery(twin: Any) -> None:
    from devtools.stack import drop_batch

    # first champion: the run unpausing started (see the fixture); a manual run if there was none
    try:
        wait_until("the retrain run started by unpausing", lambda: twin.runs(RETRAIN), timeout=20)
    except AssertionError:
        twin.trigger(RETRAIN, {"reason": "first champion from history"})
    wait_until("the first retrain", lambda: twin.runs(RETRAIN) and _settled(twin, RETRAIN), timeout=400)
    assert all(r["state"] == "success" for r in twin.runs(RETRAIN)), twin.runs(RETRAIN)
    before = {int(v.version) for v in _versions()}
    assert before, "no champion registered by the first retrain"

    twin.unpause(MONITOR)
    week, df = twin.weeks[0]  # the first warm week drifts
    landed = time.monotonic()
    drop_batch(twin, week, df)
    twin.delivered.append((MODEL, f"{week}.parquet"))

    def new_champion() -> Any:
        from retrainer.tracking.registry import champion

        champ = champion(MODEL)
        return champ if champ and champ.version not in before else None

    champ = wait_until("a new champion from the drifted batch", new_champion, timeout=400)
    batch_to_champion = time.monotonic() - landed
    retrain = next(r for r in twin.runs(RETRAIN) if r["run_type"] == "asset_triggered")
    assert twin.wait_run(RETRAIN, retrain["dag_run_id"])["state"] == "success"
    assert champ.tags["retrainer.trigger_source"] == "asset"
    registered = _xcom(twin, RETRAIN, retrain["dag_run_id"], "register")
    assert registered == {"version": champ.version, "created": True}
    monitor = next(r for r in twin.runs(MONITOR) if r["state"] == "success")
    assert _xcom(twin, MONITOR, monitor["dag_run_id"], "decide")["verdict"] == "retrain"
    # the tasks ran on the Celery workers, and the model's files are on the MLflow server (proxied artifacts)
    assert _celery_ran(twin, retrain["dag_run_id"]), "no Celery worker log mentions the retrain run"
    from retrainer.tracking.runs import client

    assert client().get_run(champ.run_id).info.artifact_uri.startswith("mlflow-artifacts:/")
    assert any((twin.state / "mlartifacts").rglob("MLmodel")), "the server stored the model's files"
    _assert_invariants(twin)
    print(f"\nbatch landed -> new champion through Celery: {batch_to_champion:.0f}s")


def test_task_logs_readable_through_the_rest_api(twin: Any) -> None:
    run = next(r for r in twin.runs(RETRAIN) if r["state"] == "success")
    ti = _ti(twin, RETRAIN, run["dag_run_id"], "train")
    path = (
        f"/api/v2/dags/{RETRAIN}/dagRuns/{quote(run['dag_run_id'], safe='')}/taskInstances/train/logs/"
        f"{ti['try_number']}?full_content=true"
    )
    content = twin.request("GET", path)["content"]
    text = "\n".join(c if isinstance(c, str) else str(c.get("event", c)) for c in content)
    assert "Task instance is in running state" in text or "train" in text
    assert "Done. Returned value was" in text or "Task instance in success state" in text, text[-2000:]


# -- faults ---------------------------------------------------------------------------------------------------
def _worker_of(twin: Any, pid: int) -> str:
    import psutil

    chain = [pid, *(p.pid for p in psutil.Process(pid).parents())]
    for name, proc in twin.procs.items():
        if name.startswith("worker-") and proc.pid in chain:
            return str(name)
    raise AssertionError(f"task process {pid} is under no Celery worker of the twin")


def test_kill_9_of_the_worker_running_train(twin: Any) -> None:
    import psutil

    versions = len(_versions())
    run_id = _manual_retrain(twin, "5W", "fault: worker killed during train")
    ti = _wait_task_running(twin, RETRAIN, run_id, "train")
    worker = _worker_of(twin, int(ti["pid"]))
    root = psutil.Process(twin.procs[worker].pid)
    doomed = [root, *root.children(recursive=True)]
    for proc in doomed:  # what `docker kill` does to the container: every process, no warning
        proc.send_signal(signal.SIGKILL)
    psutil.wait_procs(doomed, timeout=10)
    twin.restart(worker)  # compose's `restart: always`

    done = twin.wait_run(RETRAIN, run_id, timeout=400)
    assert done["state"] == "success", done
    train = _ti(twin, RETRAIN, run_id, "train")
    assert train["state"] == "success" and train["try_number"] == 2, train
    assert len(_versions()) == versions + 1
    _no_ghost_runs()
    _assert_invariants(twin)


def test_mlflow_down_for_60s_during_a_retrain(twin: Any) -> None:
    versions = len(_versions())
    run_id = _manual_retrain(twin, "4W", "fault: MLflow down")
    _wait_task_running(twin, RETRAIN, run_id, "snapshot")
    name = "mlflow"
    from devtools.stack import stop_groups

    stop_groups({name: twin.procs[name].pid})
    down = time.monotonic()
    time.sleep(60)
    twin.start_mlflow()
    twin.wait_http(f"{twin.mlflow_url}/health", 120)
    print(f"\nMLflow was down {time.monotonic() - down:.0f}s")

    done = twin.wait_run(RETRAIN, run_id, timeout=400)
    assert done["state"] == "success", done
    assert len(_versions()) == versions + 1
    _no_ghost_runs()
    _assert_invariants(twin)


def test_scheduler_restarted_mid_run(twin: Any) -> None:
    versions = len(_versions())
    run_id = _manual_retrain(twin, "3W", "fault: scheduler restarted")
    _wait_task_running(twin, RETRAIN, run_id, "gate_training_data")
    twin.restart("scheduler")
    done = twin.wait_run(RETRAIN, run_id, timeout=400)
    assert done["state"] == "success", done
    assert len(_versions()) == versions + 1
    _no_ghost_runs()
    _assert_invariants(twin)


def test_postgres_restarted_between_two_batches(twin: Any) -> None:
    from devtools.stack import drop_batch

    def monitored(n: int) -> bool:
        runs = [r for r in twin.runs(MONITOR) if r["state"] in ("success", "failed")]
        return len(runs) >= n

    from retrainer.tracking.registry import champion

    twin.unpause(MONITOR)
    wait_until("a champion", lambda: _settled(twin, RETRAIN) and champion(MODEL), timeout=400)
    done_before = len([r for r in twin.runs(MONITOR) if r["state"] in ("success", "failed")])
    revived: list[str] = []

    def monitored_reviving(n: int) -> bool:
        revived.extend(twin.revive())  # compose restarts a component that exits (`restart: always`)
        return monitored(n)

    for i, (week, df) in enumerate(twin.weeks[1:3]):
        if i == 1:
            twin.restart("postgres")
        drop_batch(twin, week, df)
        twin.delivered.append((MODEL, f"{week}.parquet"))
        wait_until(
            f"the monitor run for {week}", lambda n=done_before + i + 1: monitored_reviving(n), timeout=400
        )
    wait_until(
        "retrain runs to settle", lambda: twin.revive() is not None and _settled(twin, RETRAIN), timeout=400
    )
    print(f"\nrestarted after Postgres came back (as compose would): {revived or 'none'}")
    runs = [r for r in twin.runs(MONITOR) if r["state"] in ("success", "failed")]
    assert all(r["state"] == "success" for r in runs), runs
    _assert_invariants(twin)
    _no_ghost_runs()
    assert os.environ["MLFLOW_TRACKING_URI"] == twin.mlflow_url
