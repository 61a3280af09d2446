"""
### Retrainer: retention (`<model>__maintenance`)

Built from every model config in `include/models/*.yaml` (adding a model is adding a YAML file).

* **`<name>__maintenance`**: on the `retention.schedule` cron (no DAG when it is null): `gc` removes what
  the model's `retention:` rules allow (old archived batches, unreferenced snapshots, old reports,
  predictions and claim records), never what a registered version, a window or pending labels need.

Alerts (the model config's `alerts:`) go out through Airflow notifiers: a failed task or a quarantined
batch from every task's failure callback, the other events from the tasks that cause them.

All logic lives in the `retrainer` package; this file only wires it together.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow.sdk import CronTriggerTimetable, dag, task

from retrainer import dagkit

if TYPE_CHECKING:
    from retrainer.config import ModelConfig


def build_maintenance(cfg: ModelConfig) -> Any:
    @dag(
        dag_id=f"{cfg.name}__maintenance",
        description=f"Retention for {cfg.name}: remove what no window, registered version or label needs",
        schedule=CronTriggerTimetable(cfg.retention.schedule, timezone="UTC"),
        **dagkit.common(cfg.name, "maintenance", __doc__),
    )
    def maintenance_dag() -> None:
        @task
        def gc() -> dict[str, Any]:
            from retrainer.stages.retention import collect

            plan = dagkit.run(collect, cfg).to_dict()
            return {"bytes": plan["bytes"], "removed": {k: len(v) for k, v in plan["remove"].items()}}

        gc()

    return maintenance_dag()


for _cfg in dagkit.configs("maintenance")[0]:
    if _cfg.retention.schedule:
        build_maintenance(_cfg)
