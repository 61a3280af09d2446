"""Alerts through Airflow's SMTP notifier, captured by a real SMTP server on 127.0.0.1 (aiosmtpd).

Each message names the model, the event and the reason, and links to the Airflow run and the model's page
in the Retraining view; stored text is escaped; only the configured events are sent. A failing task of a
real DAG run (``dag.test()``) sends ``task_failed`` from the failure callback every task carries.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import yaml

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
MODEL = "bikealert"


def _cfg(smtp: Any, events: list[str] | None = None) -> Any:
    from retrainer.config import ModelConfig

    raw = yaml.safe_load((REPO / "include" / "models" / "bikeshare.yaml").read_text())
    raw["name"] = MODEL
    raw["alerts"] = {
        "channels": [{"type": "smtp", "to": ["ml-team@example.test"], "conn_id": "retrainer_smtp"}],
        **({"events": events} if events is not None else {}),
    }
    return ModelConfig.model_validate(raw), raw


@pytest.fixture
def smtp_conn(smtp: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    for k, v in smtp.connection_env().items():
        monkeypatch.setenv(k, v)
    smtp.messages.clear()
    return smtp


def _wait_for(smtp: Any, n: int) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 20
    while len(smtp.messages) < n and time.monotonic() < deadline:
        time.sleep(0.1)
    return list(smtp.messages)


def test_every_event_reaches_a_real_smtp_server(airflow_env: Path, smtp_conn: Any) -> None:
    from retrainer import alerts
    from retrainer.config import ALERT_EVENTS

    cfg, _ = _cfg(smtp_conn)
    run_id = "manual__2026-11-29T05:51:13.243611+00:00"
    results = [
        alerts.send(cfg, ev, f"because <b>{ev}</b>", dag_id=f"{MODEL}__retrain", run_id=run_id)
        for ev in ALERT_EVENTS
    ]

    assert all(r["sent"] == ["smtp#0"] and not r["failed"] for r in results), results
    got = _wait_for(smtp_conn, len(ALERT_EVENTS))
    assert len(got) == len(ALERT_EVENTS)
    for ev, msg in zip(ALERT_EVENTS, got, strict=True):
        body = msg["msg"].get_body(("html",)).get_content()
        assert msg["to"] == ["ml-team@example.test"]
        assert MODEL in msg["subject"] and alerts.TITLES[ev] in msg["subject"]
        assert f"{ev} ({alerts.TITLES[ev]})" in body  # the event
        assert f"because &lt;b&gt;{ev}&lt;/b&gt;" in body  # the reason, escaped
        assert f"/dags/{MODEL}__retrain/runs/manual__2026-11-29T05%3A51%3A13.243611%2B00%3A00" in body
        assert f"/retrainer/models/{MODEL}" in body  # the Retraining view


def test_only_configured_events_are_sent_and_a_dead_server_does_not_raise(
    airflow_env: Path, smtp_conn: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from retrainer import alerts

    cfg, _ = _cfg(smtp_conn, events=["promotion"])

    skipped = alerts.send(cfg, "quarantine", "bad batch")
    sent = alerts.send(cfg, "promotion", "v2 beats v1")

    assert skipped["sent"] == [] and sent["sent"] == ["smtp#0"]
    assert [m["subject"] for m in _wait_for(smtp_conn, 1)] == [f"[retrainer] {MODEL}: new champion"]
    with pytest.raises(ValueError, match="unknown alert event"):
        alerts.send(cfg, "promoted", "typo")
    monkeypatch.setenv("AIRFLOW_CONN_RETRAINER_SMTP", '{"conn_type": "smtp", "host": "127.0.0.1", "port": 9}')
    failed = alerts.send(cfg, "promotion", "server down")
    assert failed["sent"] == [] and failed["failed"][0]["channel"] == "smtp#0"


def test_quarantine_failure_is_told_apart_from_other_failures(airflow_env: Path, smtp_conn: Any) -> None:
    from airflow.sdk.exceptions import AirflowFailException

    from retrainer import alerts
    from retrainer.exceptions import DataValidationError

    cfg, _ = _cfg(smtp_conn)

    def failed(exc: BaseException) -> dict[str, Any]:
        return {
            "exception": exc,
            "run_id": "scheduled__1",
            "ti": type("TI", (), {"task_id": "validate_batch", "dag_id": f"{MODEL}__monitor"})(),
        }

    try:
        try:
            raise DataValidationError("week.csv: column 'season' has unexpected values ['x']")
        except DataValidationError as exc:
            raise AirflowFailException(f"DataValidationError: {exc}") from exc
    except AirflowFailException as wrapped:
        alerts.FailureAlert(cfg)(failed(wrapped))
    alerts.FailureAlert(cfg)(failed(RuntimeError("database is locked")))

    subjects = [m["subject"] for m in _wait_for(smtp_conn, 2)]
    assert subjects == [f"[retrainer] {MODEL}: batch quarantined", f"[retrainer] {MODEL}: task failed"]
    assert "unexpected values" in smtp_conn.bodies("quarantined")[0]


def test_a_failed_task_of_a_real_dag_run_sends_task_failed(
    airflow_env: Path, smtp_conn: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, point_state: Any
) -> None:
    from devtools import harness

    point_state(monkeypatch, tmp_path)
    _, raw = _cfg(smtp_conn)
    folder = airflow_env / "models"
    (folder / f"{MODEL}.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    harness.reload_dags()
    try:
        res = harness.run_dag(f"{MODEL}__rollback", {"reason": "no champion yet"})
    finally:
        (folder / f"{MODEL}.yaml").unlink()
        harness.reload_dags()

    assert res["state"] == "failed" and res["tasks"]["rollback"]["state"] == "failed", res
    got = _wait_for(smtp_conn, 1)
    assert [m["subject"] for m in got] == [f"[retrainer] {MODEL}: task failed"]
    body = smtp_conn.bodies("task failed")[0]
    assert "has no champion to roll back" in body and "rollback" in body
    assert f"/dags/{MODEL}__rollback/runs/" in body
