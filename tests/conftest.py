"""Shared test set-up: every test runs against a fresh temp data root and MLflow SQLite store."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
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
    from retrainer.ml.datasets import bikeshare, weekly_batches

    return weekly_batches(bikeshare(), "timestamp")


class SmtpSink:
    """A real SMTP server on 127.0.0.1 (aiosmtpd) that keeps every message it receives."""

    def __init__(self) -> None:
        import socket

        from aiosmtpd.controller import Controller

        self.messages: list[Any] = []
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = int(s.getsockname()[1])
        self.controller = Controller(self, hostname="127.0.0.1", port=self.port)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        from email import message_from_bytes, policy

        msg = message_from_bytes(envelope.content, policy=policy.default)
        self.messages.append({"to": list(envelope.rcpt_tos), "subject": str(msg["subject"]), "msg": msg})
        return "250 OK"

    def bodies(self, subject_part: str = "") -> list[str]:
        out = []
        for m in self.messages:
            if subject_part in m["subject"]:
                part = m["msg"].get_body(("html", "plain"))
                out.append(part.get_content() if part else "")
        return out

    def connection_env(self, conn_id: str = "retrainer_smtp") -> dict[str, str]:
        """``AIRFLOW_CONN_<ID>`` pointing Airflow's SMTP hook at this server (plain SMTP, no login)."""
        import json

        conn = {
            "conn_type": "smtp",
            "host": "127.0.0.1",
            "port": self.port,
            "extra": {"disable_ssl": True, "disable_tls": True, "from_email": "retrainer@example.test"},
        }
        return {f"AIRFLOW_CONN_{conn_id.upper()}": json.dumps(conn)}


@pytest.fixture(scope="session")
def smtp() -> Any:
    """A session-wide SMTP sink on loopback; tests look at ``smtp.messages``."""
    sink = SmtpSink()
    sink.controller.start()
    try:
        yield sink
    finally:
        sink.controller.stop()
