"""Shared test set-up: every test runs against a fresh temp data root and MLflow SQLite store."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))  # airflow_harness
# tests deliver batches by rename (the delivery contract), so nothing needs to settle first
os.environ.setdefault("RETRAINER_SETTLE_SECONDS", "0")


@pytest.fixture
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A temp data root and MLflow store for one test (env vars the package reads when called)."""
    return point_state_at(monkeypatch, tmp_path)


@pytest.fixture(scope="session")
def point_state():
    """:func:`point_state_at` for fixtures of wider scope than ``state``."""
    return point_state_at


def point_state_at(mp: pytest.MonkeyPatch, folder: Path) -> Path:
    """Point the data root, MLflow store and artifact root at ``folder`` (env vars read when called)."""
    mp.setenv("RETRAINER_DATA_ROOT", str(folder / "data"))
    mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{folder / 'mlflow.db'}")
    mp.setenv("RETRAINER_ARTIFACT_ROOT", str(folder / "mlartifacts"))
    mp.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    return folder


@pytest.fixture(scope="session")
def bikeshare_cfg():
    from retrainer.config import load_config

    return load_config(REPO / "include" / "models" / "bikeshare.yaml")


@pytest.fixture(scope="session")
def bikeshare_weeks():
    from retrainer.datasets import bikeshare, weekly_batches

    return weekly_batches(bikeshare(), "timestamp")
