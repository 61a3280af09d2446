"""
### Retrainer: manual rollback (`<model>__rollback`)

Built from every model config in `include/models/*.yaml` (adding a model is adding a YAML file).

* **`<name>__rollback`**: manual only (Params: `version`, empty = the previous champion; `reason`): moves
  the `champion` alias back and records it in the history, with the Airflow user who triggered the run.

Alerts (the model config's `alerts:`) go out through Airflow notifiers: a failed task or a quarantined
batch from every task's failure callback, the other events from the tasks that cause them.

A model whose config file is invalid gets no DAGs but a `<file>__invalid_config` DAG whose description
and doc show the error; the other models are unaffected.

All logic lives in the `retrainer` package; these tasks only wire it together.

Alerts (the model config's `alerts:`) go out through Airflow notifiers: a failed task or a quarantined
batch from every task's failure callback, the other events from the tasks that cause them.

All logic lives in the `retrainer` package; this file only wires it together.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow.sdk import Param, dag, task

from retrainer import dagkit

if TYPE_CHECKING:
    from retrainer.config import ModelConfig


def build_rollback(cfg: ModelConfig) -> Any:
    name = cfg.name

    @dag(
        dag_id=f"{name}__rollback",
        description=f"Manual: move {name}'s champion alias back to an earlier version (recorded in history)",
        schedule=None,
        **dagkit.alerting(cfg, dagkit.common(name, "rollback", __doc__)),
        params={
            "version": Param(
                None,
                type=["null", "integer"],
                minimum=1,
                title="Version",
                description="Registered version to restore. Empty: the previous champion (from the history).",
            ),
            "reason": Param(
                "",
                type="string",
                maxLength=500,
                title="Reason",
                description="Why you are rolling back (recorded in the history).",
            ),
        },
    )
    def rollback_dag() -> None:
        @task
        def rollback(**context: Any) -> dict[str, Any]:
            from retrainer import alerts
            from retrainer.stages.promotion import rollback as do_rollback

            params = context["params"]
            version = params.get("version")
            out = dagkit.run(
                do_rollback,
                name,
                int(version) if version is not None else None,
                str(params.get("reason") or ""),
                f"{dagkit.user(context)} (dag_run:{context['run_id']})",  # the Airflow user who triggered it
            )
            alerts.for_result(cfg, "rollback", out, context)
            return out

        rollback()

    return rollback_dag()


for _cfg in dagkit.configs("rollback")[0]:
    build_rollback(_cfg)
