"""Where things live: data root, configs, MLflow. Read from the environment when called, never at import."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import cast

PACKAGE_DIR = Path(__file__).resolve().parent
DEFAULT_CONFIG_DIR = PACKAGE_DIR.parent / "models"  # include/models beside the package


def data_root() -> Path:
    """The data root (``RETRAINER_DATA_ROOT``, default ``./data``): a local folder, absolute, or a URL
    such as ``s3://bucket/prefix`` (see :func:`data_root_at`)."""
    return data_root_at(os.environ.get("RETRAINER_DATA_ROOT", "data"))


def data_root_at(value: str) -> Path:
    """A data root from its text: a folder (or ``file://`` URL) as an absolute path; any other URL as a
    ``upath.UPath`` over fsspec, with the filesystem's options from ``RETRAINER_DATA_STORAGE_OPTIONS``
    (JSON, e.g. ``{"endpoint_url": "http://127.0.0.1:9000"}``; credentials come from the usual
    ``AWS_*`` variables). Listings are not cached: other workers change the bucket."""
    if "://" not in value or value.startswith("file://"):
        return Path(value.removeprefix("file://")).resolve()
    from upath import UPath

    options = json.loads(os.environ.get("RETRAINER_DATA_STORAGE_OPTIONS") or "{}")
    return cast("Path", UPath(value, **{"use_listings_cache": False, **options}))  # Path's interface


def config_dir() -> Path:
    """Folder of model configs (``RETRAINER_CONFIG_DIR``, default ``include/models``)."""
    return Path(os.environ.get("RETRAINER_CONFIG_DIR", str(DEFAULT_CONFIG_DIR))).resolve()


def tracking_uri() -> str:
    """MLflow tracking URI (``MLFLOW_TRACKING_URI``, default a SQLite file ``./mlflow.db``)."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path('mlflow.db').resolve()}"


def threads() -> int | None:
    """BLAS/OpenMP threads for a task's model fits and the small scorings beside them (``RETRAINER_THREADS``,
    default 1; ``0``: the libraries' own defaults, one thread per core). Airflow runs several tasks side
    by side on a worker, and scikit-learn's tree models start one thread per core in each of them: on
    shared cores the threads wait on each other (docs/scale.md, "Threads")."""
    raw = os.environ.get("RETRAINER_THREADS", "1").strip()
    try:
        n = int(raw)
    except ValueError:
        n = -1
    if n < 0:
        raise ValueError(
            f"RETRAINER_THREADS={raw!r}: give a whole number of threads, or 0 for the libraries' defaults"
        )
    return n or None


def artifact_root() -> str:
    """Artifact location for experiments we create (``RETRAINER_ARTIFACT_ROOT``, default ``./mlartifacts``).

    Ignored when the tracking URI is an HTTP server, which owns its artifact store.
    """
    return os.environ.get("RETRAINER_ARTIFACT_ROOT") or str(Path("mlartifacts").resolve())


ARRIVAL_MODES = ("event", "sensor")


def arrival_mode() -> str:
    """How a monitor DAG learns of a new batch (``RETRAINER_ARRIVAL``): ``event`` (default) - a trigger in
    Airflow's triggerer watches ``landing/<model>/`` and each batch it announces starts one monitor run, no
    worker slot held while waiting; ``sensor`` - the earlier design, a continuous DAG whose first task pokes
    landing/ and holds one worker slot per model while it waits. Read when the DAG files are parsed: set it
    alike on the DAG processor, the scheduler and the workers."""
    raw = os.environ.get("RETRAINER_ARRIVAL", "event").strip().lower() or "event"
    if raw not in ARRIVAL_MODES:
        raise ValueError(f"RETRAINER_ARRIVAL={raw!r}: use one of {', '.join(ARRIVAL_MODES)}")
    return raw


def arrival_poll_seconds() -> float:
    """How often the arrival trigger looks at each model's landing folder (``RETRAINER_ARRIVAL_POLL_SECONDS``,
    default 2): one directory listing per model, in the triggerer."""
    raw = os.environ.get("RETRAINER_ARRIVAL_POLL_SECONDS", "2").strip()
    try:
        value = float(raw)
    except ValueError:
        value = 0.0
    if value <= 0:
        raise ValueError(f"RETRAINER_ARRIVAL_POLL_SECONDS={raw!r}: give a positive number of seconds")
    return value
