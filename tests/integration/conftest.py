"""Real Airflow for the integration tests: one temp AIRFLOW_HOME + SQLite metadata DB per session."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def airflow_env(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Configure and reset Airflow once; tests then point the data root and MLflow where they like."""
    from devtools import harness

    base = tmp_path_factory.mktemp("airflow")
    configs = base / "models"
    configs.mkdir()
    shutil.copy(REPO / "include" / "models" / "bikeshare.yaml", configs / "bikeshare.yaml")
    harness.configure(base, unit_test_mode=True)
    import os

    os.environ["RETRAINER_CONFIG_DIR"] = str(configs)
    harness.reset_db()
    return base
