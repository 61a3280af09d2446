"""
### Retrainer: the schedule path and retrain requests (`<model>__retrain`)

Built from every model config in `include/models/*.yaml` (adding a model is adding a YAML file).

* **`<name>__retrain`**: runs on the config's cron *or* when that asset is updated, and on manual
  trigger (Params: `force`, `reason`, `window`). `resolve_trigger` -> `snapshot` (immutable, sha256)
  -> `gate_training_data` (GX) -> `train` (MLflow run) -> `evaluate` (vs champion on the most recent
  holdout) -> `register` (only if it passed) -> `promote` (alias `champion`, or `challenger` in the
  `shadow` / `approval` promotion modes; history recorded). Approval mode adds `request_approval`, which
  hands the challenger to `<name>__approval` and ends the run; shadow mode adds `shadow_score` to the
  monitor DAG, and `promotion.rollback_batches` adds `watch_champion` (automatic rollback) before it.

Alerts (the model config's `alerts:`) go out through Airflow notifiers: a failed task or a quarantined
batch from every task's failure callback, the other events from the tasks that cause them.

All logic lives in the `retrainer` package; this file only wires it together.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow.sdk import AssetOrTimeSchedule, CronTriggerTimetable, Param, dag, task

from retrainer import dagkit

if TYPE_CHECKING:
    from retrainer.config import ModelConfig


def _request_approval(cfg: ModelConfig, staged: Any) -> None:
    """Approval mode: hand a staged challenger to the model's approval DAG and end this run, so that the
    retrain DAG (one active run) keeps taking new requests while a person decides."""
    asset = dagkit.approval_asset(cfg.name)

    @task(outlets=[asset])
    def request_approval(staged: dict[str, Any], **context: Any) -> dict[str, Any]:
        from airflow.sdk.exceptions import AirflowSkipException

        if staged.get("awaiting") != "approval":  # the first model, or a no-op, needs no approval
            raise AirflowSkipException("nothing waits for approval")
        extra = {"version": staged["version"], "retrain_run": context["run_id"]}
        context["outlet_events"][asset].extra = extra
        return extra

    request_approval(staged)


def build_retrain(cfg: ModelConfig) -> Any:
    name = cfg.name
    asset = dagkit.retrain_asset(name)
    schedule: Any = asset
    if cfg.schedule:
        schedule = AssetOrTimeSchedule(
            timetable=CronTriggerTimetable(cfg.schedule, timezone="UTC"), assets=asset
        )

    @dag(
        dag_id=f"{name}__retrain",
        description=f"Retrain {name}: snapshot, gate, train, evaluate vs champion, register, promote",
        schedule=schedule,
        **dagkit.alerting(cfg, dagkit.common(name, "retrain", __doc__)),
        params={
            "force": Param(
                False,
                type="boolean",
                title="Force",
                description="Promote even if the candidate does not beat the champion (absolute floors and the data gate still apply).",
            ),
            "reason": Param(
                None,
                type=["null", "string"],  # nullable: the UI form does not mark it required
                maxLength=500,
                title="Reason",
                description="Why you are retraining (recorded in MLflow and the history).",
            ),
            "window": Param(
                None,
                type=["null", "string"],
                pattern=r"^[0-9]+[DWH]$",
                title="Training window",
                description=f"Override the config's training window (e.g. 12W, 90D). Default: {cfg.training.window}.",
            ),
            "trigger_source": Param(
                "",
                type=["null", "string"],  # nullable: not a required field in the UI form
                enum=["", "asset", "schedule", "manual", None],
                title="Trigger source",
                description="Leave empty: worked out from the run. A manual run that names another path is "
                "recorded as manual, with this value as a claim of the user who triggered it.",
            ),
        },
    )
    def retrain_dag() -> None:
        @task
        def resolve_trigger(**context: Any) -> dict[str, Any]:
            from retrainer.stages.retrain import resolve_trigger as resolve

            events = [
                {"extra": dict(e.extra or {})}
                for evs in (context.get("triggering_asset_events") or {}).values()
                for e in evs
            ]
            dag_run = context["dag_run"]
            run_type = str(getattr(dag_run.run_type, "value", dag_run.run_type))
            return resolve(run_type, events, dict(context["params"]), dagkit.user(context))

        @task
        def snapshot(trigger: dict[str, Any]) -> dict[str, Any]:
            from retrainer.stages import retrain

            return dagkit.run(retrain.snapshot, cfg, trigger["window"], trigger.get("batches"))

        @task
        def gate_training_data(snap: dict[str, Any]) -> dict[str, Any]:
            from retrainer.stages import retrain

            return dagkit.run(retrain.gate, cfg, snap)

        @task
        def train(
            snap: dict[str, Any], gate: dict[str, Any], trigger: dict[str, Any], **context: Any
        ) -> dict[str, Any]:
            from retrainer.stages import retrain

            return dagkit.run(retrain.train, cfg, snap, trigger, context["run_id"])

        @task
        def evaluate(
            snap: dict[str, Any], trained: dict[str, Any], trigger: dict[str, Any]
        ) -> dict[str, Any]:
            from retrainer.stages import retrain

            return dagkit.run(retrain.evaluate, cfg, snap, trained, trigger["force"])

        @task
        def register(
            snap: dict[str, Any],
            trained: dict[str, Any],
            evaluation: dict[str, Any],
            trigger: dict[str, Any],
            **context: Any,
        ) -> dict[str, Any]:
            from airflow.sdk.exceptions import AirflowSkipException

            from retrainer import alerts
            from retrainer.exceptions import ModelRejected
            from retrainer.stages import retrain

            try:
                return retrain.register(cfg, snap, trained, evaluation, trigger)
            except ModelRejected as exc:  # a rejection is a valid outcome, recorded on the MLflow run
                alerts.send_from_task(cfg, "rejected", str(exc), context)
                raise AirflowSkipException(str(exc)) from exc

        @task
        def promote(
            registered: dict[str, Any], evaluation: dict[str, Any], trigger: dict[str, Any], **context: Any
        ) -> dict[str, Any]:
            from retrainer import alerts
            from retrainer.stages import retrain

            out = dagkit.run(retrain.promote, cfg, registered, evaluation, trigger, context["run_id"])
            alerts.for_result(cfg, "promote", out, context)
            return out

        trigger = resolve_trigger()
        snap = snapshot(trigger)
        gate = gate_training_data(snap)
        trained = train(snap, gate, trigger)
        evaluation = evaluate(snap, trained, trigger)
        registered = register(snap, trained, evaluation, trigger)
        staged = promote(registered, evaluation, trigger)
        if cfg.promotion.mode == "approval":
            _request_approval(cfg, staged)

    return retrain_dag()


for _cfg in dagkit.configs("retrain")[0]:
    build_retrain(_cfg)
