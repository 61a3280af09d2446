"""Run the real Airflow 3 components (and optionally an MLflow server) on 127.0.0.1, and stop them again.

Used by ``make airflow`` / ``make stop``, the scheduler end-to-end test, the browser test and the freshness
benchmark. Each component runs in its own process group; stopping sends SIGTERM to exactly the groups we
started (PIDs recorded in ``<state>/stack.json``), then SIGKILL after a grace period. Never by name.

Not ``airflow standalone``: it binds its log servers to 0.0.0.0. Here the scheduler and triggerer run with
``--skip-serve-logs`` and the API server listens on 127.0.0.1 only.

    python scripts/airflow_stack.py start [--state .airflow] [--port 8080] [--mlflow-port 5000]
    python scripts/airflow_stack.py stop  [--state .airflow]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
HOST = "127.0.0.1"
USER = "admin"


def free_port() -> int:
    """A free TCP port on loopback (tests pick ports dynamically: other servers may run here)."""
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def _bin(name: str) -> str:
    path = VENV_BIN / name
    return str(path) if path.exists() else name


@dataclass
class Stack:
    """One Airflow (+ MLflow) installation under ``state``: AIRFLOW_HOME, data root, MLflow store."""

    state: Path
    port: int = 8080
    mlflow_port: int | None = None  # None: no MLflow server (tasks and the plugin use the SQLite file)
    parallelism: int = 4
    config_dir: Path | None = None  # RETRAINER_CONFIG_DIR (default: include/models)
    extra_env: dict[str, str] = field(default_factory=dict)
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.state = Path(self.state).resolve()
        self.home = self.state / "airflow"
        self.logs = self.state / "logs"

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def mlflow_url(self) -> str | None:
        return f"http://{HOST}:{self.mlflow_port}" if self.mlflow_port else None

    def env(self) -> dict[str, str]:
        """Environment shared by every component (and by the plugin inside the API server)."""
        secret_file = self.state / "jwt_secret"
        if not secret_file.exists():
            self.state.mkdir(parents=True, exist_ok=True)
            secret_file.write_text(secrets.token_urlsafe(32))
            secret_file.chmod(0o600)
        secret = secret_file.read_text().strip()
        env = {
            **os.environ,
            "AIRFLOW_HOME": str(self.home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__PARALLELISM": str(self.parallelism),
            "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{self.home / 'airflow.db'}",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.url}/execution/",
            "AIRFLOW__API__BASE_URL": self.url,
            "AIRFLOW__API__HOST": HOST,
            "AIRFLOW__API__PORT": str(self.port),
            "AIRFLOW__API__WORKERS": "1",
            "AIRFLOW__API_AUTH__JWT_SECRET": secret,  # one secret for every component
            "AIRFLOW__API__SECRET_KEY": secret,
            "AIRFLOW__CORE__AUTH_MANAGER": (
                "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
            ),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{USER}:admin",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(self.home / "passwords.json"),
            "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "False",
            # on stop, a task that ignores SIGTERM is killed after this (default 60 s)
            "AIRFLOW__CORE__KILLED_TASK_CLEANUP_TIME": "5",
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
            "RETRAINER_DATA_ROOT": str(self.state / "data"),
            "MLFLOW_TRACKING_URI": f"sqlite:///{self.state / 'mlflow.db'}",
            "RETRAINER_ARTIFACT_ROOT": str(self.state / "mlartifacts"),
            "MLFLOW_DISABLE_TELEMETRY": "true",
            "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",  # the server only shows runs: starts in ~20 s
            "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
            "GX_ANALYTICS_ENABLED": "False",
            "PYTHONWARNINGS": "ignore",
            "PYTHONPATH": os.pathsep.join(
                p for p in [str(REPO / "include"), os.environ.get("PYTHONPATH", "")] if p
            ),
        }
        if self.mlflow_url:
            env["RETRAINER_MLFLOW_UI_URL"] = self.mlflow_url
        if self.config_dir:
            env["RETRAINER_CONFIG_DIR"] = str(Path(self.config_dir).resolve())
        env.update(self.extra_env)
        return env

    # -- lifecycle -----------------------------------------------------------------------------------
    def migrate(self) -> None:
        """Create or upgrade the SQLite metadata DB."""
        self.home.mkdir(parents=True, exist_ok=True)
        self.logs.mkdir(parents=True, exist_ok=True)
        with open(self.logs / "db-migrate.log", "ab") as log:
            subprocess.run(
                [_bin("airflow"), "db", "migrate"], env=self.env(), stdout=log, stderr=log, check=True
            )

    def _spawn(self, name: str, cmd: list[str]) -> None:
        log = open(self.logs / f"{name}.log", "ab")  # noqa: SIM115 - owned by the child for its lifetime
        self.procs[name] = subprocess.Popen(
            cmd, env=self.env(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=self.state
        )
        log.close()

    def start(self, wait: float = 180) -> None:
        """Migrate the DB, start every component, wait until the API answers, record the PIDs."""
        self.migrate()
        af = _bin("airflow")
        self._spawn("api-server", [af, "api-server", "--host", HOST, "--port", str(self.port)])
        self._spawn("scheduler", [af, "scheduler", "--skip-serve-logs"])
        self._spawn("dag-processor", [af, "dag-processor"])
        self._spawn("triggerer", [af, "triggerer", "--skip-serve-logs"])
        if self.mlflow_port:
            (self.state / "mlartifacts").mkdir(parents=True, exist_ok=True)
            self._spawn(
                "mlflow",
                [
                    _bin("mlflow"),
                    "server",
                    "--host",
                    HOST,
                    "--port",
                    str(self.mlflow_port),
                    "--backend-store-uri",
                    f"sqlite:///{self.state / 'mlflow.db'}",
                    "--default-artifact-root",
                    str(self.state / "mlartifacts"),
                    "--workers",
                    "1",
                ],
            )
        self._write_pids()
        try:
            self.wait_http(f"{self.url}/api/v2/monitor/health", wait)
            if self.mlflow_url:
                self.wait_http(f"{self.mlflow_url}/health", wait)
        except Exception:
            self.stop()
            raise

    def _write_pids(self) -> None:
        payload = {
            "pids": {n: p.pid for n, p in self.procs.items()},
            "url": self.url,
            "mlflow_url": self.mlflow_url,
        }
        (self.state / "stack.json").write_text(json.dumps(payload, indent=2))

    def wait_http(self, url: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for name, p in self.procs.items():
                if p.poll() is not None:
                    raise RuntimeError(f"{name} exited with {p.returncode}; see {self.logs / name}.log")
            with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
            time.sleep(0.5)
        raise TimeoutError(f"{url} did not answer within {timeout:.0f}s; logs in {self.logs}")

    def stop(self, grace: float = 8) -> dict[str, int]:
        """SIGTERM each process group we started, SIGKILL what is left after ``grace``; returns the PIDs."""
        pids = {n: p.pid for n, p in self.procs.items()}
        if not pids:
            pids = read_pids(self.state)
        stop_groups(pids, grace)
        for p in self.procs.values():
            with contextlib.suppress(Exception):
                p.wait(timeout=1)
        with contextlib.suppress(FileNotFoundError):
            (self.state / "stack.json").unlink()
        self.procs.clear()
        return pids

    # -- REST API v2 ------------------------------------------------------------------------------
    def password(self, user: str = USER) -> str:
        """The simple auth manager's generated password for ``user`` (default ``admin``)."""
        path = self.home / "passwords.json"
        deadline = time.monotonic() + 30
        while not path.exists() and time.monotonic() < deadline:
            time.sleep(0.3)
        return str(json.loads(path.read_text())[user])

    def token(self, user: str = USER) -> str:
        """A JWT for ``user`` from ``POST /auth/token`` (cached per user)."""
        tokens = self.__dict__.setdefault("_tokens", {})
        if user not in tokens:
            body = {"username": user, "password": self.password(user)}
            tokens[user] = self.request("POST", "/auth/token", body, auth=False)["access_token"]
        return str(tokens[user])

    def request(
        self, method: str, path: str, body: Any = None, *, auth: bool = True, user: str = USER
    ) -> Any:
        """Call the API as ``user``; returns parsed JSON; raises :class:`ApiError` (status + body) on
        HTTP errors."""
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(f"{self.url}{path}", data=data, method=method)
        req.add_header("Content-Type", "application/json")
        if auth:
            req.add_header("Authorization", f"Bearer {self.token(user)}")
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                raw = r.read()
        except urllib.error.HTTPError as exc:
            raise ApiError(exc.code, exc.read().decode(errors="replace")) from None
        return json.loads(raw) if raw else None

    def unpause(self, dag_id: str, timeout: float = 120) -> None:
        """Unpause a DAG once the dag-processor has serialised it (new DAGs start paused)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.request("PATCH", f"/api/v2/dags/{dag_id}", {"is_paused": False})
                return
            except ApiError as exc:
                if exc.status != 404 or time.monotonic() > deadline:
                    raise
            time.sleep(1)

    def trigger(self, dag_id: str, conf: dict[str, Any] | None = None) -> dict[str, Any]:
        return dict(
            self.request("POST", f"/api/v2/dags/{dag_id}/dagRuns", {"logical_date": None, "conf": conf or {}})
        )

    def runs(self, dag_id: str) -> list[dict[str, Any]]:
        return list(
            self.request("GET", f"/api/v2/dags/{dag_id}/dagRuns?order_by=start_date&limit=100")["dag_runs"]
        )

    def wait_run(self, dag_id: str, run_id: str, timeout: float = 300) -> dict[str, Any]:
        """Poll a DAG run until it reaches a final state."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            run = dict(self.request("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}"))
            if run["state"] in ("success", "failed"):
                return run
            time.sleep(1)
        raise TimeoutError(f"{dag_id} run {run_id} not finished after {timeout:.0f}s; logs in {self.logs}")


def fast_config_dir(
    dest: Path,
    poke_interval: int | None = 2,
    models: tuple[str, ...] = ("bikeshare",),
    cooldown_batches: int | None = None,
) -> Path:
    """Copies of the shipped model configs with a short sensor poke interval (tests, benchmark).

    ``None`` keeps the shipped value; ``cooldown_batches`` overrides the policy's cooldown when given.
    """
    import re

    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    for name in models:
        text = (REPO / "include" / "models" / f"{name}.yaml").read_text()
        if cooldown_batches is not None:
            text = re.sub(r"cooldown_batches:\s*\d+", f"cooldown_batches: {cooldown_batches}", text)
        if poke_interval is not None:
            text, n = re.subn(
                r"poke_interval_seconds:\s*\d+", f"poke_interval_seconds: {poke_interval}", text
            )
            if not n:
                text = text.replace(
                    "triggers:\n", f"triggers:\n  poke_interval_seconds: {poke_interval}\n", 1
                )
        (dest / f"{name}.yaml").write_text(text)
    return dest


def wait_until(
    what: str, fn: Any, timeout: float = 600, every: float = 0.25, error: type[Exception] = TimeoutError
) -> Any:
    """Poll ``fn`` until it returns something truthy; raise ``error`` naming ``what`` on timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = fn()
        if value:
            return value
        time.sleep(every)
    raise error(f"timed out after {timeout:.0f}s waiting for {what}")


def seed_bikeshare(stack: Stack, history_weeks: int = 6, model: str = "bikeshare") -> list[tuple[str, Any]]:
    """Bikeshare history (the first ``history_weeks`` weeks) into ``archive/<model>/``; returns the later
    weekly batches."""
    import pandas as pd

    from retrainer.datasets import bikeshare, weekly_batches
    from retrainer.storage import DataRoot

    weeks = weekly_batches(bikeshare(), "timestamp")
    dr = DataRoot(stack.state / "data", model).ensure()
    history = pd.concat([w for _, w in weeks[:history_weeks]])
    dr.import_batch(history, f"{weeks[0][0]}-history.parquet", stage="archive")
    return weeks[history_weeks:]


def drop_batch(stack: Stack, week: str, df: Any, model: str = "bikeshare") -> Path:
    """Land a batch atomically in ``landing/<model>/`` (what an upstream export would do)."""
    from retrainer.storage import DataRoot

    return DataRoot(stack.state / "data", model).import_batch(df, f"{week}.parquet")


class ApiError(RuntimeError):
    """An HTTP error from the Airflow API, with its status and body."""

    def __init__(self, status: int, body: str):
        super().__init__(f"HTTP {status}: {body[:2000]}")
        self.status = status
        self.body = body


def read_pids(state: Path) -> dict[str, int]:
    path = Path(state) / "stack.json"
    if not path.exists():
        return {}
    return {k: int(v) for k, v in json.loads(path.read_text())["pids"].items()}


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(OSError):  # a zombie (exited, not yet reaped) counts as gone
        if Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] == "Z":
            return False
    return True


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return any(alive(int(p.name)) for p in Path("/proc").iterdir() if p.name.isdigit() and _pgid(p) == pgid)


def _pgid(proc_dir: Path) -> int | None:
    try:
        return int((proc_dir / "stat").read_text().split(")")[-1].split()[2])
    except (OSError, ValueError, IndexError):
        return None


STOP_ORDER = ("scheduler", "triggerer", "dag-processor", "api-server", "mlflow")


def stop_groups(pids: dict[str, int], grace: float = 8) -> None:
    """Each PID leads its own process group (start_new_session): signal the group, never by name.

    The scheduler (with its running tasks) goes first, while the API server can still take their final
    state; then the rest. A group still alive after ``grace`` seconds is killed: in Airflow 3.2 a poking
    sensor keeps the scheduler's LocalExecutor waiting past SIGTERM (the next start retries that sensor;
    a sensor holds no batch until it claims one, so nothing is lost).
    """
    ordered = sorted(pids.items(), key=lambda kv: STOP_ORDER.index(kv[0]) if kv[0] in STOP_ORDER else 99)
    for _, pid in ordered:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline and group_alive(pid):
            time.sleep(0.2)
        if group_alive(pid):  # the scheduler waits for running tasks (a poking sensor) unless told twice
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and group_alive(pid):
            time.sleep(0.2)
        if group_alive(pid):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and group_alive(pid):
                time.sleep(0.2)


def _start(args: argparse.Namespace) -> int:
    state = Path(args.state).resolve()
    if read_pids(state) and any(group_alive(p) for p in read_pids(state).values()):
        print(f"already running (see {state / 'stack.json'}); `make stop` first", file=sys.stderr)
        return 1
    stack = Stack(state, port=args.port, mlflow_port=None if args.no_mlflow else args.mlflow_port)
    print(f"Starting Airflow (api-server, scheduler, dag-processor, triggerer) in {state} ...", flush=True)
    stopping = False

    def on_signal(signum: int, frame: Any) -> None:
        nonlocal stopping
        if not stopping:
            stopping = True
            raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    try:
        stack.start()
        for dag_id in args.unpause:
            stack.unpause(dag_id)
        print(
            f"""
Airflow UI      {stack.url}   (Retraining view: {stack.url}/plugin/retraining)
  log in as     {USER} / {stack.password()}   (password file {stack.home / "passwords.json"})
MLflow UI       {stack.mlflow_url or "(not started: --no-mlflow)"}
Data root       {state / "data"}   (drop batches into landing/<model>/)
Logs            {stack.logs}/
Stop with Ctrl-C or `make stop`.""",
            flush=True,
        )
        if args.detach:
            return 0
        while all(p.poll() is None for p in stack.procs.values()):
            time.sleep(1)
        dead = [n for n, p in stack.procs.items() if p.poll() is not None]
        print(f"{', '.join(dead)} exited; see {stack.logs}. Stopping the rest.", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        if not args.detach or stopping:
            print("Stopping...", flush=True)
            stack.stop()
            print("Stopped.", flush=True)


def _stop(args: argparse.Namespace) -> int:
    state = Path(args.state).resolve()
    pids = read_pids(state)
    if not pids:
        print(f"nothing recorded in {state / 'stack.json'}")
        return 0
    stop_groups(pids)
    (state / "stack.json").unlink(missing_ok=True)
    print(f"stopped {', '.join(f'{n} ({p})' for n, p in pids.items())}")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("start", help="start the components in the foreground (Ctrl-C stops them)")
    p.add_argument("--state", default=str(REPO / ".airflow"))
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--mlflow-port", type=int, default=5000)
    p.add_argument("--no-mlflow", action="store_true", help="do not start the MLflow tracking server")
    p.add_argument("--detach", action="store_true", help="return once up; stop later with `stop`")
    p.add_argument("--unpause", nargs="*", default=[], help="DAG ids to unpause once parsed")
    p.set_defaults(func=_start)
    p = sub.add_parser("stop", help="stop every process group recorded by `start`")
    p.add_argument("--state", default=str(REPO / ".airflow"))
    p.set_defaults(func=_stop)
    args = ap.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
