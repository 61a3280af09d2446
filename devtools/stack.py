"""Run the real Airflow 3 components (and optionally an MLflow server) on 127.0.0.1, and stop them again.

Used by ``make airflow`` / ``make airflow-prod`` / ``make stop``, the end-to-end tests and the freshness and
scale-out benchmarks (``from retrainer import stack``). Each component runs in its own process group; stopping sends SIGTERM to exactly the groups we
started (PIDs recorded in ``<state>/stack.json``), then SIGKILL after a grace period. Never by name.

Not ``airflow standalone``: it binds its log servers to 0.0.0.0. Here the scheduler and triggerer run with
``--skip-serve-logs`` and the API server listens on 127.0.0.1 only.

    python -m devtools.stack start [--state .airflow] [--port 8080] [--mlflow-port 5000] [--prod]
    python -m devtools.stack stop  [--state .airflow]

It runs from the source checkout (``dags/``, ``plugins/``, ``deploy/``), not from an installed wheel.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]  # the checkout: devtools/ is at its top
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
    # the foreground process that runs (and, for the twin, restarts) the components: `stop` signals it first
    supervisor: dict[str, int] | None = None

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
        env = {
            **os.environ,
            # where this checkout's code and state are (the same for both profiles)
            "AIRFLOW_HOME": str(self.home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
            "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
            "AIRFLOW__API__HOST": HOST,
            "AIRFLOW__API__PORT": str(self.port),
            "AIRFLOW__API__WORKERS": "1",
            # on stop, a task that ignores SIGTERM is killed after this (default 60 s)
            "AIRFLOW__CORE__KILLED_TASK_CLEANUP_TIME": "5",
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
            "PYTHONWARNINGS": "ignore",
            "PYTHONPATH": os.pathsep.join(
                p for p in [str(REPO / "include"), os.environ.get("PYTHONPATH", "")] if p
            ),
            **self.profile_env(),
        }
        if self.config_dir:
            env["RETRAINER_CONFIG_DIR"] = str(Path(self.config_dir).resolve())
        env.update(self.extra_env)
        return env

    def profile_env(self) -> dict[str, str]:
        """The demo profile: SQLite, LocalExecutor, the simple auth manager, MLflow on a SQLite file."""
        secret_file = self.state / "jwt_secret"
        if not secret_file.exists():
            self.state.mkdir(parents=True, exist_ok=True)
            secret_file.write_text(secrets.token_urlsafe(32))
            secret_file.chmod(0o600)
        secret = secret_file.read_text().strip()
        env = {
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__PARALLELISM": str(self.parallelism),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{self.home / 'airflow.db'}",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.url}/execution/",
            "AIRFLOW__API__BASE_URL": self.url,
            "AIRFLOW__API_AUTH__JWT_SECRET": secret,  # one secret for every component
            "AIRFLOW__API__SECRET_KEY": secret,
            "AIRFLOW__CORE__AUTH_MANAGER": (
                "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
            ),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{USER}:admin",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(self.home / "passwords.json"),
            "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "False",
            "RETRAINER_DATA_ROOT": str(self.state / "data"),
            "MLFLOW_TRACKING_URI": f"sqlite:///{self.state / 'mlflow.db'}",
            "RETRAINER_ARTIFACT_ROOT": str(self.state / "mlartifacts"),
            "MLFLOW_DISABLE_TELEMETRY": "true",
            "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",  # the server only shows runs: starts in ~20 s
            "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
            "GX_ANALYTICS_ENABLED": "False",
        }
        if self.mlflow_url:
            env["RETRAINER_MLFLOW_UI_URL"] = self.mlflow_url
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

    def _spawn(
        self,
        name: str,
        cmd: list[str],
        env: dict[str, str] | None = None,
        stdin: bytes | None = None,
        user: str | None = None,
    ) -> None:
        log = open(self.logs / f"{name}.log", "ab")  # noqa: SIM115 - owned by the child for its lifetime
        proc = self.procs[name] = subprocess.Popen(
            cmd,
            env=self.env() if env is None else env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
            start_new_session=True,
            cwd=self.state if user is None else "/",
            user=user,
        )
        if stdin is not None and proc.stdin is not None:
            proc.stdin.write(stdin)  # secrets reach the server on stdin, not on its command line
            proc.stdin.close()
        log.close()

    AIRFLOW_COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")

    def _spawn_airflow(self, name: str) -> None:
        """Start one Airflow component, bound to loopback, serving no logs on other interfaces."""
        af = _bin("airflow")
        if name == "api-server":
            self._spawn(name, [af, "api-server", "--host", HOST, "--port", str(self.port)])
        elif name in ("scheduler", "triggerer"):
            self._spawn(name, [af, name, "--skip-serve-logs"])
        elif name == "dag-processor":
            self._spawn(name, [af, name])
        else:
            raise ValueError(f"not an Airflow component: {name}")

    def start(self, wait: float = 180) -> None:
        """Migrate the DB, start every component, wait until the API answers, record the PIDs."""
        self.migrate()
        for name in self.AIRFLOW_COMPONENTS:
            self._spawn_airflow(name)
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
        if self.supervisor:
            payload["supervisor"] = self.supervisor
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
            with urllib.request.urlopen(req, timeout=120) as r:  # a busy SQLite can take long
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

    def wait_run(self, dag_id: str, run_id: str, timeout: float = 900) -> dict[str, Any]:
        """Poll a DAG run until it reaches a final state."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            run = dict(self.request("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}"))
            if run["state"] in ("success", "failed"):
                return run
            time.sleep(1)
        raise TimeoutError(f"{dag_id} run {run_id} not finished after {timeout:.0f}s; logs in {self.logs}")


def _pg_bin() -> Path:
    """Debian's PostgreSQL binaries (the newest installed major version), or ``RETRAINER_PG_BIN``."""
    if os.environ.get("RETRAINER_PG_BIN"):
        return Path(os.environ["RETRAINER_PG_BIN"])
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parts[-3]))
    if not found:
        raise RuntimeError(
            "PostgreSQL not found: `make airflow-prod` installs it (apt-get install postgresql)"
        )
    return found[-1].parent


def _as_postgres() -> str | None:
    """Postgres refuses to run as root: run its binaries as the ``postgres`` user when we are root."""
    return "postgres" if os.geteuid() == 0 else None


@dataclass
class ProdStack(Stack):
    """The production profile as plain processes on 127.0.0.1 (the native twin of docker-compose.yaml).

    Postgres (databases ``airflow``, ``mlflow``, ``mlflow_auth``), Redis with a password, Airflow on the
    CeleryExecutor with ``workers`` Celery workers and the FAB auth manager, and the MLflow tracking server
    on Postgres with proxied artifacts and basic auth. The Airflow and MLflow settings are read from
    ``deploy/airflow.env`` and ``deploy/mlflow.env`` (the files docker-compose.yaml loads); only addresses,
    ports and paths differ. Secrets are generated once into ``<state>/secrets.env`` (mode 0600).
    """

    workers: int = 2
    worker_concurrency: int = 4
    pg_port: int = 0
    redis_port: int = 0
    health_port: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        self.mlflow_port = self.mlflow_port or free_port()
        self.pg_port = self.pg_port or free_port()
        self.redis_port = self.redis_port or free_port()
        self.health_port = self.health_port or free_port()
        # Postgres' files must be reachable by the postgres user: not under a root-only temp folder
        key = hashlib.sha256(str(self.state).encode()).hexdigest()[:12]
        self.pg_dir = Path(tempfile.gettempdir()) / f"retrainer-pg-{key}"

    # -- configuration: deploy/*.env interpolated for loopback -----------------------------------------
    def secrets(self) -> dict[str, str]:
        from devtools import deploy

        path = self.state / "secrets.env"
        if not path.exists():
            self.state.mkdir(parents=True, exist_ok=True)
            path.write_text("".join(f"{k}={v}\n" for k, v in deploy.generate_secrets().items()))
            path.chmod(0o600)
        return deploy.read_dotenv(path)

    def addresses(self) -> dict[str, str]:
        """The twin's values for the address variables of deploy/*.env (compose uses the service names)."""
        return {
            "POSTGRES_ADDR": f"{HOST}:{self.pg_port}",
            "REDIS_ADDR": f"{HOST}:{self.redis_port}",
            "AIRFLOW_API_SERVER_URL": self.url,
            "AIRFLOW_PUBLIC_URL": self.url,
            "MLFLOW_SERVER_URL": str(self.mlflow_url),
            "MLFLOW_PUBLIC_URL": str(self.mlflow_url),
            "MLFLOW_ARTIFACTS_DIR": str(self.state / "mlartifacts"),
            "RETRAINER_DATA_ROOT": str(self.state / "data"),
            "AIRFLOW_SCHEDULER_HEALTH_PORT": str(self.health_port),
            "AIRFLOW_PARALLELISM": str(self.workers * self.worker_concurrency),
            "AIRFLOW_WORKER_CONCURRENCY": str(self.worker_concurrency),
        }

    def _interp(self) -> dict[str, str]:
        return {**self.secrets(), **self.addresses()}

    def profile_env(self) -> dict[str, str]:
        from devtools import deploy

        return deploy.read_env_file(deploy.AIRFLOW_ENV, self._interp())

    def mlflow_env(self) -> dict[str, str]:
        from devtools import deploy

        env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "MLFLOW_TRACKING"))}
        env.update(deploy.read_env_file(deploy.MLFLOW_ENV, self._interp()))
        env["MLFLOW_AUTH_CONFIG_PATH"] = str(self.state / "mlflow-auth.ini")
        return env

    def client_env(self) -> dict[str, str]:
        """What a client of this twin (a test, the benchmark) sets to use its MLflow server and data root."""
        env = self.profile_env()
        keys = ("MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")
        return {k: env[k] for k in (*keys, "RETRAINER_DATA_ROOT")}

    def password(self, user: str = USER) -> str:
        """The FAB admin's password (from the twin's secrets); other users are created by whoever adds them."""
        if user != USER:
            raise KeyError(f"the twin knows the password of {USER!r} only, not {user!r}")
        return self.secrets()["AIRFLOW_ADMIN_PASSWORD"]

    # -- lifecycle ---------------------------------------------------------------------------------------
    def _pg_cmd(self, name: str, *args: str) -> list[str]:
        return [str(_pg_bin() / name), *args]

    def start_postgres(self) -> None:
        fresh = not (self.pg_dir / "PG_VERSION").exists()
        if fresh:
            self.pg_dir.mkdir(mode=0o700, exist_ok=True)
            if _as_postgres():
                shutil.chown(self.pg_dir, "postgres", "postgres")
            with open(self.logs / "postgres-init.log", "ab") as log:
                subprocess.run(
                    self._pg_cmd(
                        "initdb", "-D", str(self.pg_dir), "-U", "postgres", "--auth-local=trust",
                        "--auth-host=scram-sha-256", "--encoding=UTF8", "--locale=C.UTF-8",
                    ),
                    user=_as_postgres(), cwd="/", stdout=log, stderr=log, check=True,
                )  # fmt: skip
        self._spawn(
            "postgres",
            self._pg_cmd(
                "postgres", "-D", str(self.pg_dir), "-p", str(self.pg_port), "-k", str(self.pg_dir),
                "-c", f"listen_addresses={HOST}", "-c", "max_connections=200", "-c", "fsync=off",
            ),
            env={"PATH": os.environ.get("PATH", ""), "LANG": "C.UTF-8"},
            user=_as_postgres(),
        )  # fmt: skip
        wait_until("Postgres to accept connections", self._pg_ready, timeout=60, every=0.3)
        if fresh:  # the same script the postgres image runs on an empty volume
            env = {
                **os.environ, **self.secrets(), "PGHOST": str(self.pg_dir), "PGPORT": str(self.pg_port),
                "POSTGRES_USER": "postgres",
            }  # fmt: skip
            with open(self.logs / "postgres-init.log", "ab") as log:
                subprocess.run(
                    ["sh", str(REPO / "deploy" / "postgres-init.sh")],
                    env=env,
                    stdout=log,
                    stderr=log,
                    check=True,
                )

    def _pg_ready(self) -> bool:
        r = subprocess.run(
            [
                str(_pg_bin() / "pg_isready"),
                "-h",
                str(self.pg_dir),
                "-p",
                str(self.pg_port),
                "-U",
                "postgres",
            ],
            capture_output=True,
        )
        return r.returncode == 0

    def start_redis(self) -> None:
        (self.state / "redis").mkdir(parents=True, exist_ok=True)
        conf = (
            f"bind {HOST}\nport {self.redis_port}\nrequirepass {self.secrets()['REDIS_PASSWORD']}\n"
            f"dir {self.state / 'redis'}\nsave 3600 1\nappendonly no\nprotected-mode yes\n"
        )
        self._spawn(
            "redis", [redis_server(), "-"], env={"PATH": os.environ.get("PATH", "")}, stdin=conf.encode()
        )

    def start_mlflow(self) -> None:
        from devtools import deploy

        (self.state / "mlartifacts").mkdir(parents=True, exist_ok=True)
        env = self.mlflow_env()
        ini = Path(env["MLFLOW_AUTH_CONFIG_PATH"])
        ini.write_text(deploy.mlflow_auth_ini(env))
        ini.chmod(0o600)
        self._spawn(
            "mlflow",
            [_bin("mlflow"), "server", "--app-name", "basic-auth", "--host", HOST,
             "--port", str(self.mlflow_port), "--workers", "1"],
            env=env,
        )  # fmt: skip

    def start_worker(self, i: int) -> None:
        self._spawn(
            f"worker-{i}",
            [_bin("airflow"), "celery", "worker", "--skip-serve-logs", "--celery-hostname", f"worker-{i}@%h",
             "--concurrency", str(self.worker_concurrency)],
        )  # fmt: skip

    def migrate(self) -> None:
        """Migrate the metadata DB and create the FAB admin user (what compose's airflow-init does)."""
        self.home.mkdir(parents=True, exist_ok=True)
        env = self.env()
        with open(self.logs / "db-migrate.log", "ab") as log:
            subprocess.run([_bin("airflow"), "db", "migrate"], env=env, stdout=log, stderr=log, check=True)
            users = subprocess.run(
                [_bin("airflow"), "users", "list", "-o", "plain"], env=env, capture_output=True, text=True
            ).stdout
            if USER not in users.split():
                subprocess.run(
                    [_bin("airflow"), "users", "create", "--role", "Admin", "--username", USER,
                     "--password", self.password(), "--firstname", "Retrainer", "--lastname", "Admin",
                     "--email", f"{USER}@localhost"],
                    env=env, stdout=log, stderr=log, check=True,
                )  # fmt: skip

    def start(self, wait: float = 240) -> None:
        self.state.mkdir(parents=True, exist_ok=True)
        self.logs.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        try:
            self.start_postgres()
            self.start_redis()
            self.start_mlflow()
            self.migrate()
            for name in self.AIRFLOW_COMPONENTS:
                self._spawn_airflow(name)
            for i in range(1, self.workers + 1):
                self.start_worker(i)
            self._write_pids()
            self.wait_http(f"{self.url}/api/v2/monitor/health", wait)
            self.wait_http(f"{self.mlflow_url}/health", wait)
        except BaseException:
            self.stop()
            raise
        self.start_seconds = time.monotonic() - started

    def restart(self, name: str) -> None:
        """Stop one component (SIGTERM to its group, SIGKILL after a grace) and start it again."""
        stop_groups({name: self.procs[name].pid})
        self.procs[name].wait(timeout=10)
        self._respawn(name)

    def revive(self, stopping: Any = None) -> list[str]:
        """Start again every component that exited (what compose's ``restart: always`` does); their names.

        ``stopping`` (a callable) is asked before each restart: once a stop was requested nothing restarts."""
        dead = [name for name, p in self.procs.items() if p.poll() is not None]
        for name in dead:
            if stopping is not None and stopping():
                break
            print(f"{name} exited with {self.procs[name].returncode}; starting it again", file=sys.stderr)
            self._respawn(name)
        return dead

    def _respawn(self, name: str) -> None:
        if name == "postgres":
            self.start_postgres()  # the data folder exists: no initdb, no init script
        elif name == "redis":
            self.start_redis()
        elif name == "mlflow":
            self.start_mlflow()
        elif name.startswith("worker-"):
            self.start_worker(int(name.split("-")[1]))
        elif name in self.AIRFLOW_COMPONENTS:
            self._spawn_airflow(name)
        else:
            raise ValueError(f"no restart for {name}")
        self._write_pids()

    def _spawn(self, name: str, cmd: list[str], *args: Any, **kwargs: Any) -> None:
        super()._spawn(name, cmd, *args, **kwargs)
        if (self.state / "stack.json").exists():  # a restarted component: `stop` must find its new PID
            self._write_pids()

    def _write_pids(self) -> None:
        super()._write_pids()
        path = self.state / "stack.json"
        payload = json.loads(path.read_text())
        payload["profile"] = "production"
        payload["postgres_dir"] = str(self.pg_dir)
        path.write_text(json.dumps(payload, indent=2))

    def destroy(self) -> None:
        """Remove the Postgres data folder (outside the state folder); after :meth:`stop`."""
        shutil.rmtree(self.pg_dir, ignore_errors=True)


def redis_server() -> str:
    found = shutil.which("redis-server")
    if not found:
        raise RuntimeError(
            "redis-server not found: `make airflow-prod` installs it (apt-get install redis-server)"
        )
    return found


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

    from retrainer.ml.datasets import bikeshare, weekly_batches
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


def _started_at(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (with the PID, it names one process: PIDs are
    reused, start times with them are not)."""
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def this_supervisor() -> dict[str, int]:
    """What ``stack.json`` records of the current process as the supervisor."""
    pid = os.getpid()
    return {"pid": pid, "started": _started_at(pid) or 0}


def read_supervisor(state: Path) -> int | None:
    """The PID of the live foreground supervisor recorded in ``stack.json`` (None: none, or it exited)."""
    path = Path(state) / "stack.json"
    try:
        sup = json.loads(path.read_text()).get("supervisor") or {}
    except (OSError, ValueError):
        return None
    pid = int(sup.get("pid") or 0)
    if not pid or pid == os.getpid() or not alive(pid) or _started_at(pid) != sup.get("started"):
        return None
    return pid


def stop_supervisor(pid: int, timeout: float = 180) -> bool:
    """SIGTERM the supervisor (it stops its components and restarts none) and wait until it exited; SIGKILL
    (that process only: it shares the terminal's process group) if it did not. True if it exited by itself."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and alive(pid):
        time.sleep(0.2)
    if not alive(pid):
        return True
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and alive(pid):
        time.sleep(0.2)
    return False


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


STOP_ORDER = (
    "scheduler",
    *(f"worker-{i}" for i in range(1, 9)),
    "triggerer",
    "dag-processor",
    "api-server",
    "mlflow",
    "redis",
    "postgres",
)


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
    stack: Stack
    if args.prod:
        stack = ProdStack(state, port=args.port, mlflow_port=args.mlflow_port, workers=args.workers)
        print(
            f"Starting the production twin (Postgres, Redis, MLflow server, Airflow api-server, scheduler, "
            f"dag-processor, triggerer, {args.workers} Celery workers) in {state} ...",
            flush=True,
        )
    else:
        stack = Stack(state, port=args.port, mlflow_port=None if args.no_mlflow else args.mlflow_port)
        print(
            f"Starting Airflow (api-server, scheduler, dag-processor, triggerer) in {state} ...", flush=True
        )
    if not args.detach:  # `stop` signals this process first, so that it restarts nothing
        stack.supervisor = this_supervisor()
    stopping = False
    supervising = False

    def on_signal(signum: int, frame: Any) -> None:
        nonlocal stopping
        if not stopping:
            stopping = True
            if not supervising:  # starting up: interrupt it; the loops below check the flag instead, so
                raise KeyboardInterrupt  # that a stop never lands between a restart's spawn and its record

    signal.signal(signal.SIGTERM, on_signal)
    try:
        stack.start()
        for dag_id in args.unpause:
            stack.unpause(dag_id)
        password_file = stack.home / "passwords.json"
        mlflow_login = ""
        if isinstance(stack, ProdStack):
            password_file = state / "secrets.env"
            mlflow_login = (
                f"   (log in as {stack.client_env()['MLFLOW_TRACKING_USERNAME']}, see {password_file})"
            )
            print(f"Started in {stack.start_seconds:.0f} s", flush=True)
        print(
            f"""
Airflow UI      {stack.url}   (Retraining view: {stack.url}/plugin/retraining)
  log in as     {USER} / {stack.password()}   (password file {password_file})
MLflow UI       {stack.mlflow_url or "(not started: --no-mlflow)"}{mlflow_login}
Data root       {state / "data"}   (drop batches into landing/<model>/)
Logs            {stack.logs}/
Stop with Ctrl-C or `make stop`.""",
            flush=True,
        )
        if args.detach:
            return 0
        supervising = True
        if isinstance(stack, ProdStack):  # like compose's `restart: always`, until a stop is requested
            while not stopping:
                stack.revive(lambda: stopping)
                _pause(2, lambda: stopping)
            return 0
        while not stopping and all(p.poll() is None for p in stack.procs.values()):
            _pause(1, lambda: stopping)
        if stopping:
            return 0
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


def _pause(seconds: float, stopping: Any) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not stopping():
        time.sleep(0.1)


def _stop(args: argparse.Namespace) -> int:
    state = Path(args.state).resolve()
    pids = read_pids(state)
    if not pids:
        print(f"nothing recorded in {state / 'stack.json'}")
        return 0
    supervisor = read_supervisor(state)
    if supervisor is not None:  # a foreground `start`: it stops its components and restarts none
        print(f"stopping the supervisor ({supervisor}) ...", flush=True)
        stop_supervisor(supervisor)
        pids = {**pids, **read_pids(state)}  # what it may have restarted before the request
    stop_groups(pids)  # whatever is left (a detached start, or a supervisor that did not finish)
    (state / "stack.json").unlink(missing_ok=True)
    print(f"stopped {', '.join(f'{n} ({p})' for n, p in pids.items())}")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m devtools.stack",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("start", help="start the components in the foreground (Ctrl-C stops them)")
    p.add_argument("--state", default=str(REPO / ".airflow"))
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--mlflow-port", type=int, default=5000)
    p.add_argument("--no-mlflow", action="store_true", help="do not start the MLflow tracking server")
    p.add_argument("--detach", action="store_true", help="return once up; stop later with `stop`")
    p.add_argument("--unpause", nargs="*", default=[], help="DAG ids to unpause once parsed")
    p.add_argument(
        "--prod",
        action="store_true",
        help="the production twin: Postgres, Redis, CeleryExecutor, FAB auth, MLflow server with auth",
    )
    p.add_argument("--workers", type=int, default=2, help="Celery workers of the production twin")
    p.set_defaults(func=_start)
    p = sub.add_parser("stop", help="stop every process group recorded by `start`")
    p.add_argument("--state", default=str(REPO / ".airflow"))
    p.set_defaults(func=_stop)
    args = ap.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
