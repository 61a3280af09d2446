"""MLflow tracking: configured on first use (never at import), experiments per model and purpose.

Experiments: ``retrainer/<model>/monitor`` (one run per batch check, fired or not) and
``retrainer/<model>/train`` (one run per retrain attempt, registered or rejected).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from retrainer import settings

if TYPE_CHECKING:
    from mlflow.entities import Run
    from mlflow.tracking import MlflowClient

TAG = "retrainer."  # prefix of every tag we write


def _configure(uri: str) -> None:
    import mlflow

    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    if mlflow.get_tracking_uri() != uri:  # cheap; re-checked on every call so a changed env var takes effect
        mlflow.set_tracking_uri(uri)


def client() -> MlflowClient:
    """An MLflow client on the configured tracking URI (sets the URI for the fluent API too)."""
    from mlflow.tracking import MlflowClient

    uri = settings.tracking_uri()
    _configure(uri)
    return MlflowClient(tracking_uri=uri)


def experiment_id(model: str, purpose: str) -> str:
    """Id of ``retrainer/<model>/<purpose>``, created with an explicit artifact location if missing."""
    c = client()
    name = f"retrainer/{model}/{purpose}"
    exp = c.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    location = None
    if not settings.tracking_uri().startswith("http"):
        location = f"{settings.artifact_root()}/{model}/{purpose}"
    try:
        return c.create_experiment(name, artifact_location=location, tags={f"{TAG}model": model})
    except Exception:  # a concurrent task created it first
        exp = c.get_experiment_by_name(name)
        if exp is None:
            raise
        return exp.experiment_id


def find_runs(
    model: str,
    purpose: str,
    filter_string: str = "",
    max_results: int = 1000,
    order_by: list[str] | None = None,
) -> list[Run]:
    c = client()
    return list(
        c.search_runs(
            [experiment_id(model, purpose)],
            filter_string=filter_string,
            max_results=max_results,
            order_by=order_by or ["attributes.start_time ASC"],
        )
    )


def flat_tags(prefix_dict: dict[str, Any]) -> dict[str, str]:
    """Our tags with the ``retrainer.`` prefix, values as strings (MLflow tags are strings)."""
    out = {}
    for k, v in prefix_dict.items():
        if v is None:
            continue
        out[f"{TAG}{k}"] = v if isinstance(v, str) else _json(v)
    return out


def _json(v: Any) -> str:
    import json

    return json.dumps(v, default=str)
