"""`promotion`, `alerts`, `backtest` and `retention`: how a model is operated once trained."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator

from retrainer.config.schema.base import (
    ALERT_EVENTS,
    NAME_RE,
    RESERVED_POLICIES,
    Duration,
    _format_errors,
    _Strict,
    cron,
)
from retrainer.config.schema.triggers import TriggerConfig


class PromotionConfig(_Strict):
    """How a validated candidate reaches the ``champion`` alias."""

    mode: Literal["immediate", "shadow", "approval"] = Field(
        "immediate",
        description="`immediate`: the candidate becomes `champion`; `shadow`: it becomes `challenger` and is "
        "scored beside the champion on the next labelled batches; `approval`: it becomes `challenger` "
        "and a person approves or rejects it",
    )
    shadow_batches: int = Field(
        3,
        ge=1,
        description="shadow mode: labelled batches the challenger must be non-inferior on before it is promoted",
    )
    margin: float = Field(
        0.05,
        ge=0,
        lt=1,
        description="shadow mode: how much worse (relative) than the champion the challenger may be on a "
        "batch; also the automatic-rollback margin",
    )
    rollback_batches: int = Field(
        0,
        ge=0,
        description="automatic rollback: batches after a promotion on which the new champion is compared "
        "with the previous one (moved back if worse by more than `margin`); `0` disables",
    )
    min_labelled_rows: int = Field(
        30,
        ge=1,
        description="shadow mode and automatic rollback: labelled rows (the batch's own and late labels for "
        "the batches seen since the promotion or the staging) needed before the two models are compared; "
        "with fewer the decision waits for more labels",
    )
    approval_timeout: str = Field(
        "24H",
        pattern=r"^[0-9]+[SMHD]$",
        description="approval mode: how long a request waits for a person (e.g. 90S, 30M, 24H, 2D); "
        "then the challenger is rejected and retired, recorded as a timeout",
    )
    approvers: list[str] = Field(
        default_factory=list,
        description="approval mode: Airflow user names who may answer (the human-in-the-loop operator's "
        "`assigned_users`); empty: anyone allowed to edit the DAG",
    )

    @property
    def approval_timeout_seconds(self) -> int:
        n, unit = int(self.approval_timeout[:-1]), self.approval_timeout[-1]
        return n * {"S": 1, "M": 60, "H": 3600, "D": 86400}[unit]


class AlertChannel(_Strict):
    """Where alerts go: ``smtp`` (the SMTP provider, installed); ``slack`` / ``apprise`` need their Airflow
    provider installed (optional extras)."""

    type: Literal["smtp", "slack", "apprise"] = Field("smtp", description="the Airflow notifier to use")
    to: list[str] = Field(default_factory=list, description="smtp: recipients")
    conn_id: str | None = Field(
        None,
        description="Airflow connection holding the server and credentials "
        "(default smtp_default / slack_api_default / apprise_default)",
    )
    from_email: str | None = Field(None, description="smtp: sender; default: the connection's from_email")
    channel: str | None = Field(None, description="slack: channel, e.g. #ml-alerts")

    @model_validator(mode="after")
    def _target(self) -> AlertChannel:
        if self.type == "smtp" and not self.to:
            raise ValueError("an smtp channel needs `to` (a list of addresses)")
        return self


class AlertsConfig(_Strict):
    """Per-model alerts: which events go to which channels."""

    channels: list[AlertChannel] = Field(default_factory=list, description="empty: no alerts")
    no_batch_within: Duration | None = Field(
        None,
        description="send no_batch when no batch arrived in landing/ for this long (checked every quarter "
        "of it, at most hourly); null: no such check",
    )
    events: list[Literal[ALERT_EVENTS]] = Field(  # type: ignore[valid-type]
        default_factory=lambda: list(ALERT_EVENTS), description="which events are sent; default: all"
    )


class BacktestConfig(_Strict):
    """Defaults of ``retrainer backtest`` for this model (the command line overrides them)."""

    batch_freq: Duration | None = Field(None, description="batch length of the replay; default 7D")
    warmup_batches: int | None = Field(
        None, ge=1, description="batches used to train the first model; default: the training window"
    )
    max_k: int = Field(8, ge=2, le=52, description="largest k of the every_k schedule frontier")
    alternatives: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="named trigger policies to compare: overrides of `triggers`"
    )

    @model_validator(mode="after")
    def _alternatives_valid(self) -> BacktestConfig:
        for name, override in self.alternatives.items():
            if not NAME_RE.match(name) or name in RESERVED_POLICIES or name.startswith("every_"):
                raise ValueError(f"alternative name {name!r}: use lower case, not a built-in policy name")
            try:
                TriggerConfig.model_validate(override)
            except ValidationError as exc:
                raise ValueError(f"alternative {name!r}: {_format_errors('triggers', exc)}") from exc
        return self


class RetentionConfig(_Strict):
    """What ``retrainer gc`` (and the ``<model>__maintenance`` DAG) may remove. Never removed: batches in
    landing, processing or quarantine, snapshots of registered versions, archived batches inside the
    training window, and predictions the current champion or challenger uses."""

    archive: Duration = Field(
        "26W",
        description="archived batches are kept while their newest row is within this (or the training "
        "window, if longer) of the second-newest batch's newest row; whatever this says, gc keeps every "
        "batch the next training window (which ends at the newest labelled row) can read",
    )
    label_wait: Duration = Field(
        "8W", description="archived batches with unlabelled rows are kept this long (data time) for labels"
    )
    snapshots: Duration = Field(
        "7D", description="snapshots no registered version uses are kept this long after they were written"
    )
    reports: Duration = Field("30D", description="GX and Evidently reports are kept this long")
    predictions: Duration = Field(
        "30D", description="stored batch predictions are kept this long, and while their labels are pending"
    )
    records: Duration = Field("30D", description="claim records of finished batches are kept this long")
    schedule: str | None = Field(
        "0 4 * * 0", description="cron of the <model>__maintenance DAG that runs gc; null for no DAG"
    )

    @field_validator("schedule")
    @classmethod
    def _cron(cls, value: str | None) -> str | None:
        return cron(value)
