"""What every Retrainer DAG file shares: the configs to build (only the one DAG a task process needs), the
common DAG arguments, the assets, and the wrapper that turns our own errors into non-retried task failures.

Importing it imports no pandas, scikit-learn, MLflow, Evidently or Great Expectations (the DAG files are
parsed often); Airflow is imported where it is used."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from retrainer import assets, settings
from retrainer.alerts import FailureAlert
from retrainer.config import load_valid
from retrainer.exceptions import RetrainerError
from retrainer.triggers import LandingTrigger

if TYPE_CHECKING:
    from airflow.sdk import Asset

    from retrainer.config import ModelConfig

DEFAULT_ARGS = {"owner": "retrainer", "retries": 1, "retry_delay": timedelta(seconds=30)}
START = datetime(2024, 1, 1)


def configs(kind: str) -> tuple[list[ModelConfig], dict[str, str]]:
    """The valid model configs whose ``<name>__<kind>`` DAG this process must build, and the invalid files.

    A task process (``get_parsing_context().dag_id`` set) builds only the DAG it runs; the DAG processor
    builds all of them. One broken file affects only its own model."""
    from airflow.sdk import get_parsing_context

    valid, errors = load_valid(settings.config_dir())
    wanted = get_parsing_context().dag_id
    if wanted:
        valid = [c for c in valid if f"{c.name}__{kind}" == wanted]
        errors = {stem: e for stem, e in errors.items() if f"{safe_stem(stem)}__{kind}" == wanted}
    return valid, errors


def safe_stem(stem: str) -> str:
    """A config file's stem as it may appear in a DAG id (``<stem>__invalid_config``)."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", stem)[:200] or "unnamed"


def common(name: str, kind: str, doc: str | None) -> dict[str, Any]:
    """What every Retrainer DAG shares: start date, no catch-up, one run at a time (a retrain's requests
    arriving during a run are merged into the next), retries, tags and the DAG file's docstring as its doc."""
    return {
        "start_date": START,
        "catchup": False,
        "max_active_runs": 1,
        "default_args": DEFAULT_ARGS,
        "tags": ["retrainer", name, kind],
        "doc_md": doc,
    }


def alerting(cfg: ModelConfig, shared: dict[str, Any]) -> dict[str, Any]:
    """``shared`` with the model's failure alert on every task (quarantine or task failure)."""
    return {**shared, "default_args": {**shared["default_args"], "on_failure_callback": FailureAlert(cfg)}}


def retrain_asset(name: str) -> Asset:
    from airflow.sdk import Asset

    return Asset(name=assets.retrain_request_name(name), uri=assets.retrain_request_uri(name))


def arrival_asset(cfg: ModelConfig) -> Asset:
    """The asset a batch's arrival updates: watched by the landing trigger in the triggerer."""
    from airflow.sdk import Asset, AssetWatcher

    trigger = LandingTrigger(
        model=cfg.name, data_root=str(settings.data_root()), poll_seconds=settings.arrival_poll_seconds()
    )
    return Asset(
        name=assets.arrival_name(cfg.name),
        uri=assets.arrival_uri(cfg.name),
        watchers=[AssetWatcher(name=f"{cfg.name}__landing", trigger=trigger)],
    )


def monitor_schedule(cfg: ModelConfig) -> Any:
    """The monitor DAG's schedule: the arrival asset (one run per announced batch), or with
    ``RETRAINER_ARRIVAL=sensor`` a continuous schedule whose runs each wait for a batch in a sensor."""
    return [arrival_asset(cfg)] if settings.arrival_mode() == "event" else "@continuous"


def approval_asset(name: str) -> Asset:
    from airflow.sdk import Asset

    return Asset(name=assets.approval_request_name(name), uri=assets.approval_request_uri(name))


def user(context: Any) -> str:
    """The Airflow user who triggered the run (None for the scheduler and the asset path)."""
    return str(getattr(context["dag_run"], "triggering_user_name", None) or "unknown")


def run(fn: Any, *args: Any) -> Any:
    """Call a stage; our own errors (bad data, bad config, too little data) are not transient, so they
    fail the task without retries, keeping the message. Anything else (a database hiccup) is retried."""
    from airflow.sdk.exceptions import AirflowFailException

    try:
        return fn(*args)
    except RetrainerError as exc:
        raise AirflowFailException(f"{type(exc).__name__}: {exc}") from exc
