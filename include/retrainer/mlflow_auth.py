"""The MLflow basic-auth app's config file, written from the environment when the MLflow server starts.

python -m retrainer.mlflow_auth PATH    # docker-compose.yaml's MLflow service runs this before `mlflow server`
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from retrainer.exceptions import ConfigError

if TYPE_CHECKING:
    from collections.abc import Mapping


def mlflow_auth_ini(env: Mapping[str, str]) -> str:
    """The basic-auth app's config: its user store and the permission of users on others' resources.

    The admin account itself comes from ``MLFLOW_AUTH_ADMIN_USERNAME`` / ``MLFLOW_AUTH_ADMIN_PASSWORD``.
    """
    uri = env.get("MLFLOW_AUTH_DATABASE_URI")
    if not uri:
        raise ConfigError("MLFLOW_AUTH_DATABASE_URI is not set (see deploy/mlflow.env)")
    permission = env.get("MLFLOW_AUTH_DEFAULT_PERMISSION", "READ")
    cache = env.get("MLFLOW_AUTH_CACHE_TTL_SECONDS", "60")
    return (
        "[mlflow]\n"
        f"default_permission = {permission}\n"
        f"database_uri = {uri}\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
        # each uncached check is a PBKDF2 hash (~0.5 s of CPU, 2 s per request on a busy 2-core machine);
        # a password change reaches the other server workers after at most this many seconds
        f"auth_cache_ttl_seconds = {cache}\n"
    )


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m retrainer.mlflow_auth PATH", file=sys.stderr)
        return 2
    try:
        text = mlflow_auth_ini(os.environ)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    path = Path(args[0])
    path.write_text(text)
    path.chmod(0o600)
    return 0


if __name__ == "__main__":
    sys.exit(main())
