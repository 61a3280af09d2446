"""Alerts: tell people when something happens to a model, through Airflow's notifiers.

Each model's YAML chooses channels and events (``alerts:``, see :class:`retrainer.config.AlertsConfig`).
A message names the model, the event and the reason, and links to the Airflow run and the model's page in
the Retraining view. Channels are Airflow notifiers: ``smtp`` (``SmtpNotifier`` of the SMTP provider, which
is installed), ``slack`` and ``apprise`` (their providers are optional extras). Servers and credentials
live in Airflow connections (``conn_id``), never in the model config.

Message text is data, never a template: stored strings (reasons, batch names) are HTML-escaped into the
body and the notifier is called without Airflow's Jinja rendering, so a reason cannot inject markup or
template code. Sending is best effort: a channel that fails is logged and reported in the return value;
the pipeline step that raised the alert carries on.
"""

from __future__ import annotations

import html
import logging
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from retrainer.config import ALERT_EVENTS
from retrainer.exceptions import DataValidationError

if TYPE_CHECKING:
    from retrainer.config import AlertChannel, ModelConfig

log = logging.getLogger(__name__)

TITLES = {
    "quarantine": "batch quarantined",
    "rejected": "candidate rejected",
    "promotion": "new champion",
    "rollback": "champion rolled back",
    "approval_waiting": "approval waiting",
    "stuck_batch": "batch stuck",
    "task_failed": "task failed",
    "no_batch": "no batch arrived",
    "signal_suppressed": "signal without a retrain",
}
VIEW_PATH = "/retrainer/models/"


def base_url() -> str:
    """Where people reach Airflow (``[api] base_url``)."""
    from airflow.configuration import conf

    return str(conf.get("api", "base_url", fallback="") or "http://localhost:8080").rstrip("/")


def links(model: str, dag_id: str | None = None, run_id: str | None = None) -> dict[str, str]:
    """The run in Airflow and the model's page in the Retraining view."""
    base = base_url()
    out = {"view": f"{base}{VIEW_PATH}{quote(model)}"}
    if dag_id and run_id:
        out["run"] = f"{base}/dags/{quote(dag_id)}/runs/{quote(run_id, safe='')}"
    return out


def message(
    cfg: ModelConfig,
    event: str,
    reason: str,
    *,
    dag_id: str | None = None,
    run_id: str | None = None,
    details: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Subject, plain text and HTML of one alert."""
    title = TITLES.get(event, event)
    urls = links(cfg.name, dag_id, run_id)
    subject = f"[retrainer] {cfg.name}: {title}"
    rows = [("Model", cfg.name), ("Event", f"{event} ({title})"), ("Reason", reason)]
    if dag_id and run_id:
        rows.append(("Run", f"{dag_id} / {run_id}"))
    rows += [(k, str(v)) for k, v in (details or {}).items()]
    text = "\n".join(f"{k}: {v}" for k, v in rows)
    text += "\n\n" + "\n".join(
        f"{k}: {v}" for k, v in (("Airflow run", urls.get("run")), ("Retraining view", urls["view"])) if v
    )
    body = "".join(
        f"<tr><th align='left'>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in rows
    )
    anchors = " · ".join(
        f'<a href="{html.escape(u)}">{html.escape(label)}</a>'
        for label, u in (("Airflow run", urls.get("run")), ("Retraining view", urls["view"]))
        if u
    )
    return {
        "subject": subject,
        "text": text,
        "html": f"<p><b>{html.escape(subject)}</b></p><table>{body}</table><p>{anchors}</p>",
        "links": urls,
    }


def _notifier(channel: AlertChannel, msg: dict[str, Any]) -> Any:
    if channel.type == "smtp":
        from airflow.providers.smtp.notifications.smtp import SmtpNotifier

        return SmtpNotifier(
            to=list(channel.to),
            from_email=channel.from_email,
            subject=msg["subject"],
            html_content=msg["html"],
            smtp_conn_id=channel.conn_id or "smtp_default",
        )
    if channel.type == "slack":  # optional extra: apache-airflow-providers-slack
        from airflow.providers.slack.notifications.slack import SlackNotifier

        return SlackNotifier(
            slack_conn_id=channel.conn_id or "slack_api_default",
            text=msg["text"],
            channel=channel.channel or "#general",
        )
    from airflow.providers.apprise.notifications.apprise import AppriseNotifier  # optional extra

    return AppriseNotifier(
        body=msg["text"], title=msg["subject"], apprise_conn_id=channel.conn_id or "apprise_default"
    )


def send(
    cfg: ModelConfig,
    event: str,
    reason: str,
    *,
    dag_id: str | None = None,
    run_id: str | None = None,
    details: dict[str, Any] | None = None,
    context: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Send ``event`` to every channel of the model that wants it. Returns what was sent and what failed."""

    if event not in ALERT_EVENTS:
        raise ValueError(f"unknown alert event {event!r}; known: {', '.join(ALERT_EVENTS)}")
    out: dict[str, Any] = {"event": event, "sent": [], "failed": []}
    if event not in cfg.alerts.events or not cfg.alerts.channels:
        return out
    msg = message(cfg, event, reason, dag_id=dag_id, run_id=run_id, details=details)
    out["subject"] = msg["subject"]
    for i, channel in enumerate(cfg.alerts.channels):
        label = f"{channel.type}#{i}"
        try:
            # notify(), not __call__(): the message is final text, not a template to render
            _notifier(channel, msg).notify(dict(context or {}))
            out["sent"].append(label)
        except Exception as exc:  # best effort: an unreachable mail server must not fail the pipeline
            log.warning("alert %s for %s via %s failed: %s", event, cfg.name, label, exc)
            out["failed"].append({"channel": label, "error": f"{type(exc).__name__}: {exc}"})
    log.info("alert %s for %s: sent %s, failed %s", event, cfg.name, out["sent"], out["failed"])
    return out


def send_from_task(
    cfg: ModelConfig, event: str, reason: str, context: dict[str, Any], details: dict[str, Any] | None = None
) -> dict[str, Any]:
    """:func:`send` with the run taken from an Airflow task context."""
    ti = context.get("ti")
    dag_id = getattr(ti, "dag_id", None) or getattr(context.get("dag"), "dag_id", None)
    return send(
        cfg, event, reason, dag_id=dag_id, run_id=context.get("run_id"), details=details, context=context
    )


def _is_quarantine(exc: BaseException | None) -> bool:

    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, DataValidationError) or str(exc).startswith("DataValidationError:"):
            return True
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return False


class FailureAlert:
    """``on_failure_callback`` for every task of a model's DAGs: a quarantined batch sends ``quarantine``,
    any other final failure ``task_failed``. Light to build at DAG parse time (imports when called)."""

    def __init__(self, cfg: ModelConfig):
        self.cfg = cfg

    def __call__(self, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        ti = context.get("ti")
        task = getattr(ti, "task_id", "?")
        if _is_quarantine(exc if isinstance(exc, BaseException) else None):
            send_from_task(self.cfg, "quarantine", str(exc), context, {"Task": task})
        else:
            reason = f"task {task} failed: {exc}" if exc else f"task {task} failed"
            send_from_task(self.cfg, "task_failed", reason, context, {"Task": task})


def for_decision(
    cfg: ModelConfig, decision: dict[str, Any], context: dict[str, Any]
) -> dict[str, Any] | None:
    """``signal_suppressed`` when signals fired but the decision requested no retrain (suppressed by the
    cooldown, budget or hysteresis, or below the policy's vote); None when there is nothing to say."""
    fired = list(decision.get("fired") or [])
    if decision.get("retrain") or not fired:
        return None
    why = decision.get("suppressed_by") or (
        f"below the policy's vote (combine={cfg.triggers.combine}, score {decision.get('score', 0):g})"
    )
    return send_from_task(
        cfg,
        "signal_suppressed",
        f"{', '.join(fired)} fired on batch {decision.get('batch')}, no retrain requested: {why}",
        context,
        {"Signals": "; ".join(decision.get("reasons") or []), "Batch": decision.get("batch")},
    )


def _reason(result: dict[str, Any] | None, fallback: str) -> str:
    event = (result or {}).get("event") or {}
    return str(event.get("reason") or (result or {}).get("reason") or fallback)


def for_result(
    cfg: ModelConfig, step: str, result: dict[str, Any], context: dict[str, Any]
) -> list[dict[str, Any]]:
    """The alerts a pipeline step's result calls for (``promote``, ``watch``, ``shadow``, ``approval``,
    ``rollback``, ``approval_waiting``), sent; returns what :func:`send` reported for each."""
    out: list[dict[str, Any]] = []

    def emit(event: str, reason: str, **details: Any) -> None:
        out.append(
            send_from_task(cfg, event, reason, context, {k: v for k, v in details.items() if v is not None})
        )

    if step == "promote" and result.get("promoted"):
        emit("promotion", _reason(result, "new champion"), Version=f"v{result['version']}")
    elif step == "watch":
        if result.get("action") == "rolled_back":
            emit("rollback", _reason(result.get("rollback"), "automatic rollback"), Kind="automatic")
    elif step == "shadow":
        if result.get("action") == "promoted":
            emit("promotion", _reason(result, "shadow promotion"), Version=f"v{result['challenger_version']}")
        elif result.get("action") == "retired":
            emit(
                "rejected",
                _reason(result, "challenger retired in shadow"),
                Version=f"v{result['challenger_version']}",
            )
    elif step == "approval":
        decision = result.get("decision")
        if decision == "approved" and result.get("event"):
            emit("promotion", f"approved by {result.get('by')}", Version=f"v{result['version']}")
        elif decision in ("rejected", "timed_out") and result.get("event"):
            emit("rejected", _reason(result, str(decision)), Version=f"v{result['version']}")
    elif step == "rollback":
        emit(
            "rollback",
            _reason(result, "rollback"),
            Kind="manual",
            Move=f"v{result['from_version']} -> v{result['to_version']}",
        )
    elif step == "approval_waiting":
        emit(
            "approval_waiting",
            f"challenger v{result['version']} waits for approval: {result.get('reason')}",
            Approvers=", ".join(result.get("approvers") or []) or "anyone allowed to edit the DAG",
            Timeout=f"{result.get('timeout')} (then rejected)",
        )
    return out
