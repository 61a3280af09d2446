"""The names and URIs of the Airflow assets Retrainer's DAGs exchange, in one place.

Plain strings, so the DAG files, the demo, the Retraining view and the tests agree without importing Airflow."""

from __future__ import annotations


def retrain_request_name(model: str) -> str:
    """The asset the monitor updates to ask for a retrain (the retrain DAG is scheduled on it)."""
    return f"{model}__retrain_request"


def retrain_request_uri(model: str) -> str:
    return f"retrainer://{model}/retrain-request"


def approval_request_name(model: str) -> str:
    """The asset a retrain in approval mode updates to hand its challenger to the approval DAG."""
    return f"{model}__approval_request"


def approval_request_uri(model: str) -> str:
    return f"retrainer://{model}/approval-request"


def arrival_name(model: str) -> str:
    """The asset a batch's arrival updates (watched by the landing trigger; the monitor DAG is scheduled on it)."""
    return f"{model}__batch_arrival"


def arrival_uri(model: str) -> str:
    return f"retrainer://{model}/batch-arrival"
