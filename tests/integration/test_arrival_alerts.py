"""The arrival and signal alerts through Airflow's SMTP notifier, captured by a real SMTP server on loopback:
``no_batch`` when nothing arrived within ``alerts.no_batch_within`` (once per silence), and
``signal_suppressed`` when a signal fired but the policy requested no retrain (cooldown, or below the vote).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
MODEL = "bikequiet"


def _cfg(**alerts: Any) -> Any:
    from retrainer.config import ModelConfig

    raw = yaml.safe_load((REPO / "include" / "models" / "bikeshare.yaml").read_text())
    raw["name"] = MODEL
    raw["alerts"] = {
        "channels": [{"type": "smtp", "to": ["ml-team@example.test"], "conn_id": "retrainer_smtp"}],
        **alerts,
    }
    return ModelConfig.model_validate(raw)


@pytest.fixture
def smtp_conn(smtp: Any, monkeypatch: pytest.MonkeyPatch, state: Path) -> Any:
    for k, v in smtp.connection_env().items():
        monkeypatch.setenv(k, v)
    smtp.messages.clear()
    return smtp


def _wait_for(smtp: Any, n: int) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 20
    while len(smtp.messages) < n and time.monotonic() < deadline:
        time.sleep(0.1)
    return list(smtp.messages)


def _body(msg: dict[str, Any]) -> str:
    return str(msg["msg"].get_body(("html",)).get_content())


def _deliver(name: str, hours_ago: float) -> Path:
    from retrainer import settings
    from retrainer.storage import DataRoot

    landing = DataRoot(settings.data_root(), MODEL).ensure().landing
    path = landing / name
    path.write_text("timestamp,bikers\n2011-01-01,1\n")
    t = time.time() - hours_ago * 3600
    os.utime(path, (t, t))
    return path


def test_no_batch_alert_once_per_silence(airflow_env: Path, smtp_conn: Any) -> None:
    from retrainer import alerts
    from retrainer.stages.arrival import check_interval_seconds, check_overdue

    cfg = _cfg(no_batch_within="2H")
    assert check_interval_seconds("2H") == 1800
    _deliver("2011-01-01.csv", hours_ago=1)
    assert check_overdue(cfg) is None  # the last batch is 1 h old: within 2 h

    later = time.time() + 2 * 3600  # two hours on, nothing new
    due = check_overdue(cfg, now=later)
    assert due is not None and "no batch arrived within 2H" in due["reason"], due
    assert "3.0 hours ago" in due["reason"]
    sent = alerts.send(cfg, "no_batch", due["reason"], dag_id=f"{MODEL}__arrival_check", run_id="r1")
    assert sent["sent"] == ["smtp#0"], sent
    (msg,) = _wait_for(smtp_conn, 1)
    assert MODEL in msg["subject"] and alerts.TITLES["no_batch"] in msg["subject"]
    assert "no batch arrived within 2H" in _body(msg)

    assert check_overdue(cfg, now=later + 3600) is None  # the same silence: said once
    _deliver("2011-01-08.csv", hours_ago=0)  # a batch, then a new silence
    assert check_overdue(cfg, now=later) is None
    assert check_overdue(cfg, now=time.time() + 3 * 3600) is not None


def test_no_check_without_a_duration(airflow_env: Path, smtp_conn: Any) -> None:
    from retrainer.stages.arrival import check_overdue

    _deliver("2011-01-01.csv", hours_ago=1000)
    assert check_overdue(_cfg()) is None


def test_a_signal_suppressed_by_the_cooldown_or_below_the_vote_is_alerted(
    airflow_env: Path, smtp_conn: Any
) -> None:
    from retrainer import alerts, policy
    from retrainer.policy.core import PolicyState, Signals

    cfg = _cfg()
    flagged = Signals(flagged_rate=0.5)  # 50% of predictions flagged: the flags signal fires
    cooled = policy.core.decide(flagged, cfg.triggers, PolicyState(batches_since_request=0))
    assert cooled.fired and not cooled.retrain and cooled.suppressed_by
    out = alerts.for_decision(cfg, {**cooled.to_dict(), "batch": "2011-02-12.parquet"}, {})
    assert out is not None and out["sent"] == ["smtp#0"], out

    vote = cfg.model_copy(update={"triggers": cfg.triggers.model_copy(update={"combine": "k_of_n", "k": 2})})
    below = policy.core.decide(flagged, vote.triggers, PolicyState())
    assert below.fired and not below.retrain and not below.suppressed_by
    assert alerts.for_decision(vote, {**below.to_dict(), "batch": "2011-02-19.parquet"}, {}) is not None

    quiet = policy.core.decide(Signals(), cfg.triggers, PolicyState())
    assert not quiet.fired
    assert alerts.for_decision(cfg, {**quiet.to_dict(), "batch": "2011-02-26.parquet"}, {}) is None
    retrain = policy.core.decide(flagged, cfg.triggers, PolicyState())
    assert retrain.retrain
    assert alerts.for_decision(cfg, {**retrain.to_dict(), "batch": "2011-03-05.parquet"}, {}) is None

    first, second = _wait_for(smtp_conn, 2)
    assert len(smtp_conn.messages) == 2  # nothing for a quiet batch or a requested retrain
    for msg in (first, second):
        assert alerts.TITLES["signal_suppressed"] in msg["subject"]
    assert "cooldown" in _body(first) and "2011-02-12.parquet" in _body(first)
    assert "below the policy&#x27;s vote (combine=k_of_n" in _body(
        second
    ) or "below the policy's vote" in _body(second)
