"""
### Retrainer: human approval of a challenger (`<model>__approval`)

Built from every model config in `include/models/*.yaml` (adding a model is adding a YAML file).

* **`<name>__approval`** (approval mode only): runs when a challenger is staged. `pending_approval` ->
  `approval` (human-in-the-loop; only the config's `promotion.approvers` when set; no answer within
  `promotion.approval_timeout`, default 24H, chooses Reject) -> `apply_approval` (promote, or retire and
  record who rejected or that it timed out). New retrain requests keep being recorded meanwhile.

Alerts (the model config's `alerts:`) go out through Airflow notifiers: a failed task or a quarantined
batch from every task's failure callback, the other events from the tasks that cause them.

All logic lives in the `retrainer` package; this file only wires it together.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow.sdk import dag, task

from retrainer import dagkit

if TYPE_CHECKING:
    from retrainer.config import ModelConfig


def build_approval(cfg: ModelConfig) -> Any:
    """``<name>__approval``: asks a person about the current challenger (Airflow's human-in-the-loop
    operator); no answer within ``promotion.approval_timeout`` rejects and retires it."""
    from airflow.providers.standard.operators.hitl import HITLOperator

    name = cfg.name
    timeout = timedelta(seconds=cfg.promotion.approval_timeout_seconds)

    @dag(
        dag_id=f"{name}__approval",
        description=f"Approval of {name}'s challenger: promote or retire; rejected after {cfg.promotion.approval_timeout}",
        schedule=dagkit.approval_asset(name),
        **dagkit.alerting(cfg, dagkit.common(name, "approval", __doc__)),
    )
    def approval_dag() -> None:
        @task.short_circuit
        def pending_approval(**context: Any) -> dict[str, Any] | None:
            from retrainer import alerts
            from retrainer.stages import promotion

            pending = promotion.pending_approval(cfg)
            if pending:  # a request answered meanwhile (or superseded and retired) leaves nothing to ask
                alerts.for_result(cfg, "approval_waiting", pending, context)
            return pending

        pending = pending_approval()
        version = "{{ ti.xcom_pull(task_ids='pending_approval')['version'] }}"
        approval = HITLOperator(
            task_id="approval",
            subject=f"Promote {name} v{version} to champion?",
            body=(
                f"Candidate **v{version}** of `{name}` passed validation and holds the `challenger` alias "
                "(champion: v{{ ti.xcom_pull(task_ids='pending_approval')['champion_version'] }}).\n\n"
                "Why it was staged: {{ ti.xcom_pull(task_ids='pending_approval')['reason'] }}\n\n"
                "**Approve** moves `champion` to it; **Reject** retires it. Both are recorded in the history. "
                f"Without an answer within {cfg.promotion.approval_timeout} it is rejected and retired."
            ),
            options=["Approve", "Reject"],
            defaults=["Reject"],  # what a timeout chooses
            multiple=False,
            response_timeout=timeout,
            assigned_users=[{"id": u, "name": u} for u in cfg.promotion.approvers] or None,
        )

        @task
        def apply_approval(
            pending: dict[str, Any], response: dict[str, Any], **context: Any
        ) -> dict[str, Any]:
            from retrainer import alerts
            from retrainer.stages import promotion

            out = dagkit.run(
                promotion.apply_approval, cfg, pending, dict(response), f"dag_run:{context['run_id']}"
            )
            alerts.for_result(cfg, "approval", out, context)
            return out

        pending >> approval
        apply_approval(pending, approval.output)

    return approval_dag()


for _cfg in dagkit.configs("approval")[0]:
    if _cfg.promotion.mode == "approval":
        build_approval(_cfg)
