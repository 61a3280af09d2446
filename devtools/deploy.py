"""Production profile settings for the developer tools: one source for docker-compose.yaml and the native twin.

The settings live in ``deploy/airflow.env`` (every Airflow component) and ``deploy/mlflow.env`` (the MLflow
tracking server). Compose loads them with ``env_file``; the native twin (:mod:`devtools.stack`)
reads them here with the same interpolation rules (``${VAR}``, ``${VAR:-default}``, ``${VAR:?message}``).
Secrets come from ``.env`` (compose) or the twin's state folder; none has a default.

    python -m devtools.deploy env [--out .env] [--force]   # a .env with fresh random secrets
    python -m devtools.deploy mlflow-auth-ini PATH          # the MLflow basic-auth config from the env

Developer tooling (run from the checkout); the production image needs only :mod:`retrainer.mlflow_auth`.
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from retrainer.exceptions import ConfigError
from retrainer.mlflow_auth import mlflow_auth_ini

if TYPE_CHECKING:
    from collections.abc import Mapping

REPO = Path(__file__).resolve().parents[1]  # the checkout: devtools/ is at its top
DEPLOY_DIR = REPO / "deploy"
AIRFLOW_ENV = DEPLOY_DIR / "airflow.env"
MLFLOW_ENV = DEPLOY_DIR / "mlflow.env"
ENV_EXAMPLE = REPO / ".env.example"

# Every secret of the production profile: name -> what it protects. `make env` fills each with a random value.
SECRETS: dict[str, str] = {
    "POSTGRES_PASSWORD": "Postgres superuser (compose's postgres container only)",
    "AIRFLOW_DB_PASSWORD": "Postgres role `airflow` (metadata DB, Celery results)",
    "MLFLOW_DB_PASSWORD": "Postgres role `mlflow` (tracking, registry, MLflow users)",
    "REDIS_PASSWORD": "Redis `requirepass` (Celery broker)",
    "AIRFLOW_FERNET_KEY": "Fernet key encrypting connections and variables (same on every component)",
    "AIRFLOW_API_SECRET_KEY": "[api] secret_key: signs worker log-fetch tokens (same on every component)",
    "AIRFLOW_JWT_SECRET": "[api_auth] jwt_secret: signs API and task tokens (same on every component)",
    "AIRFLOW_ADMIN_PASSWORD": "password of the first Airflow (FAB) admin user, created by airflow-init",
    "MLFLOW_ADMIN_PASSWORD": "MLflow basic-auth admin: the account tasks and the Retraining view use",
    "MLFLOW_FLASK_SECRET_KEY": "MLflow server's Flask secret key (sessions, CSRF of the auth app)",
}

_VAR = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:-|:\?|-|\?)(?P<arg>[^}]*))?\}")


def _secret_value(name: str) -> str:
    if name == "AIRFLOW_FERNET_KEY":
        from cryptography.fernet import Fernet

        return Fernet.generate_key().decode()
    if name in ("AIRFLOW_JWT_SECRET", "AIRFLOW_API_SECRET_KEY", "MLFLOW_FLASK_SECRET_KEY"):
        return secrets.token_urlsafe(64)  # >= 64 bytes: PyJWT warns on shorter HS512 keys
    return secrets.token_urlsafe(24)


def generate_secrets() -> dict[str, str]:
    """Fresh random values for every secret (URL-safe: they go into connection URIs unquoted)."""
    return {name: _secret_value(name) for name in SECRETS}


def interpolate(text: str, env: Mapping[str, str], source: str = "") -> str:
    """Compose's rules: ``${X}``, ``${X:-default}`` (also when empty), ``${X:?message}`` (error when unset or empty)."""

    def sub(m: re.Match[str]) -> str:
        name, op, arg = m["name"], m["op"], m["arg"] or ""
        value = env.get(name)
        if op in (":-", "-"):
            return value if value or (op == "-" and value is not None) else arg
        if op in (":?", "?") and (value is None or (op == ":?" and value == "")):
            raise ConfigError(f"{source}: required variable {name} is missing a value: {arg}".lstrip(": "))
        return value or ""

    return _VAR.sub(sub, text)


def read_env_file(path: Path, env: Mapping[str, str]) -> dict[str, str]:
    """``KEY=value`` lines of a dotenv file, values interpolated from ``env``; comments and blanks skipped."""
    out: dict[str, str] = {}
    for n, raw in enumerate(Path(path).read_text().splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep:
            raise ConfigError(f"{path}:{n}: expected KEY=value, got {line!r}")
        out[key.strip()] = interpolate(value.strip(), env, f"{path}:{n}")
    return out


def read_dotenv(path: Path) -> dict[str, str]:
    """A ``.env`` file's plain ``KEY=value`` pairs (no interpolation), as compose reads it."""
    pairs = {}
    for line in Path(path).read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#") and "=" in line:
            key, _, value = line.partition("=")
            pairs[key.strip()] = value.strip()
    return pairs


def write_env(out: Path, force: bool = False) -> Path:
    """Write ``out`` from ``.env.example`` with every secret set to a fresh random value (mode 0600)."""
    out = Path(out)
    if out.exists() and not force:
        raise ConfigError(f"{out} exists; keep it (its secrets are in use) or pass --force")
    fresh = generate_secrets()
    lines = []
    for line in ENV_EXAMPLE.read_text().splitlines():
        key = line.partition("=")[0].strip()
        lines.append(f"{key}={fresh[key]}" if key in fresh and not line.lstrip().startswith("#") else line)
    out.write_text("\n".join(lines) + "\n")
    out.chmod(0o600)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("env", help="write a .env with fresh random secrets from .env.example")
    p.add_argument("--out", default=".env")
    p.add_argument("--force", action="store_true", help="overwrite an existing file")
    p = sub.add_parser("mlflow-auth-ini", help="write MLflow's basic-auth config from the environment")
    p.add_argument("path")
    args = ap.parse_args(argv)
    try:
        if args.cmd == "env":
            print(f"wrote {write_env(Path(args.out), args.force)} (fresh secrets; keep it out of git)")
        else:
            path = Path(args.path)
            path.write_text(mlflow_auth_ini(os.environ))
            path.chmod(0o600)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
