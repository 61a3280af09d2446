"""
### Retrainer: invalid model configs

A model whose config file is invalid gets no DAGs but a `<file>__invalid_config` DAG whose description
and doc show the error; the other models are unaffected.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import dag, task

from retrainer import dagkit


def build_invalid(stem: str, error: str) -> Any:
    """A DAG that shows why a model's config is invalid (its real DAGs are not built until it is fixed)."""
    safe = dagkit.safe_stem(stem)

    @dag(
        dag_id=f"{safe}__invalid_config",
        description=f"INVALID CONFIG: {error.splitlines()[0][:180]}",
        schedule=None,
        start_date=dagkit.START,
        catchup=False,
        default_args={**dagkit.DEFAULT_ARGS, "retries": 0},
        tags=["retrainer", safe, "invalid-config"],
        doc_md=f"### The config of model `{safe}` is invalid\n\nFix the file; its DAGs come back on the next "
        f"parse.\n\n```\n{error}\n```",
    )
    def invalid_dag() -> None:
        @task
        def config_error() -> None:
            from airflow.sdk.exceptions import AirflowFailException

            raise AirflowFailException(error)

        config_error()

    return invalid_dag()


for _stem, _error in dagkit.configs("invalid_config")[1].items():
    build_invalid(_stem, _error)
