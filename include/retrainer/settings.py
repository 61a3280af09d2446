"""Where things live: data root, configs, MLflow. Read from the environment when called, never at import."""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
DEFAULT_CONFIG_DIR = PACKAGE_DIR.parent / "models"  # include/models beside the package


def data_root() -> Path:
    """The data root (``RETRAINER_DATA_ROOT``, default ``./data``), absolute."""
    return Path(os.environ.get("RETRAINER_DATA_ROOT", "data")).resolve()


def config_dir() -> Path:
    """Folder of model configs (``RETRAINER_CONFIG_DIR``, default ``include/models``)."""
    return Path(os.environ.get("RETRAINER_CONFIG_DIR", str(DEFAULT_CONFIG_DIR))).resolve()


def tracking_uri() -> str:
    """MLflow tracking URI (``MLFLOW_TRACKING_URI``, default a SQLite file ``./mlflow.db``)."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path('mlflow.db').resolve()}"


def artifact_root() -> str:
    """Artifact location for experiments we create (``RETRAINER_ARTIFACT_ROOT``, default ``./mlartifacts``).

    Ignored when the tracking URI is an HTTP server, which owns its artifact store.
    """
    return os.environ.get("RETRAINER_ARTIFACT_ROOT") or str(Path("mlartifacts").resolve())
