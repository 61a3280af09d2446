"""
### Retrainer: the no-batch check (`<model>__arrival_check`)

Built from every model config in `include/models/*.yaml` whose `alerts.no_batch_within` is set (no DAG
otherwise).

* **`<name>__arrival_check`**: every quarter of `alerts.no_batch_within` (at least a minute, at most an
  hour), `check_arrival` looks for the newest batch of the model (in landing, processing, archive or
  quarantine) and sends the `no_batch` alert when none arrived within `alerts.no_batch_within`, once per
  silence: the next one waits for a batch and a new silence.

All logic lives in the `retrainer` package; this file only wires it together.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow.sdk import dag, task

from retrainer import dagkit
from retrainer.stages.arrival import check_interval_seconds

if TYPE_CHECKING:
    from retrainer.config import ModelConfig


def build_arrival_check(cfg: ModelConfig, within: str) -> Any:
    @dag(
        dag_id=f"{cfg.name}__arrival_check",
        description=f"No-batch alert for {cfg.name}: nothing arrived within {within}",
        schedule=timedelta(seconds=check_interval_seconds(within)),
        **dagkit.alerting(cfg, dagkit.common(cfg.name, "arrival_check", __doc__)),
    )
    def arrival_check_dag() -> None:
        @task
        def check_arrival(**context: Any) -> dict[str, Any] | None:
            from retrainer import alerts
            from retrainer.stages.arrival import check_overdue

            due = dagkit.run(check_overdue, cfg)
            if due is not None:
                due["alert"] = alerts.send_from_task(cfg, "no_batch", due["reason"], context)
            return due

        check_arrival()

    return arrival_check_dag()


for _cfg in dagkit.configs("arrival_check")[0]:
    if _cfg.alerts.no_batch_within:
        build_arrival_check(_cfg, _cfg.alerts.no_batch_within)
