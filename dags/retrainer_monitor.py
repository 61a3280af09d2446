"""
### Retrainer: the trigger path (`<model>__monitor`)

Built from every model config in `include/models/*.yaml` (adding a model is adding a YAML file).

* **`<name>__monitor`**: the trigger path, one run per batch announced by the landing trigger (it runs
  in the triggerer and watches `landing/<name>/`: no worker slot is held while waiting). `claim_batch`
  claims the oldest batch in `landing/<name>/` (nothing to claim: the run is skipped) -> `validate_batch` (Great Expectations gate; a failing batch is quarantined
  with a `.reason.json`) -> `score_batch` (champion predictions) -> `drift_report` (Evidently data and
  prediction drift) / `ingest_feeds` (labels and flags files that arrived since the last run) ->
  `performance` (labelled rows, late labels included) / `flagged_rate` (human flags) -> `decide` (policy with
  cooldown; every decision is an MLflow run) -> `archive_batch` -> `request_retrain` (emits the asset
  `retrainer://<name>/retrain-request` with the reasons; skipped when the policy does not fire). The batch
  is archived before the request, so the retrain it asks for trains on it. A batch a failed run left in
  `processing/` is resumed by the next run before newer batches.

Alerts (the model config's `alerts:`) go out through Airflow notifiers: a failed task or a quarantined
batch from every task's failure callback, the other events from the tasks that cause them (a signal that
fired without a retrain from `request_retrain`).

With `RETRAINER_ARRIVAL=sensor` the DAG is continuous instead and its first task, `wait_for_batch` (a
poke-mode sensor), waits for the batch while holding a worker slot.

All logic lives in the `retrainer` package; this file only wires it together.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow.sdk import PokeReturnValue, dag, task

from retrainer import dagkit, settings

if TYPE_CHECKING:
    from retrainer.config import ModelConfig


def build_monitor(cfg: ModelConfig) -> Any:
    name = cfg.name
    asset = dagkit.retrain_asset(name)

    @dag(
        dag_id=f"{name}__monitor",
        description=f"Trigger path for {name}: gate, score, drift, performance, flags, decide",
        schedule=dagkit.monitor_schedule(cfg),  # one run per announced batch (or a sensor: see below)
        **dagkit.alerting(cfg, dagkit.common(name, "monitor", __doc__)),
    )
    def monitor_dag() -> None:
        claim_task = _sensor_task(cfg) if settings.arrival_mode() == "sensor" else _claim_task(cfg)

        @task
        def validate_batch(claim: dict[str, Any], **context: Any) -> dict[str, Any]:
            from retrainer.stages import monitor

            return dagkit.run(monitor.validate_batch, cfg, claim, context["run_id"])

        @task
        def score_batch(claim: dict[str, Any], validation: dict[str, Any]) -> dict[str, Any]:
            from retrainer.stages import monitor

            return dagkit.run(monitor.score_batch, cfg, claim)

        @task
        def drift_report(claim: dict[str, Any], scored: dict[str, Any]) -> dict[str, Any]:
            from retrainer.stages import monitor

            return dagkit.run(monitor.measure_drift, cfg, claim, scored)

        @task
        def ingest_feeds(claim: dict[str, Any]) -> dict[str, Any]:
            from retrainer.stages import monitor

            return dagkit.run(monitor.ingest_feeds, cfg, claim)

        @task
        def performance(claim: dict[str, Any], scored: dict[str, Any]) -> dict[str, Any]:
            from retrainer.stages import monitor

            return dagkit.run(monitor.performance, cfg, claim, scored)

        @task
        def flagged_rate(claim: dict[str, Any], validation: dict[str, Any]) -> dict[str, Any]:
            from retrainer.stages import monitor

            return dagkit.run(monitor.flagged_rate, cfg, claim, validation)

        @task
        def decide(
            claim: dict[str, Any],
            validation: dict[str, Any],
            scored: dict[str, Any],
            drift: dict[str, Any],
            perf: dict[str, Any],
            flags: dict[str, Any],
            **context: Any,
        ) -> dict[str, Any]:
            from retrainer.stages import monitor

            return dagkit.run(
                monitor.decide, cfg, claim, validation, scored, drift, perf, flags, context["run_id"]
            )

        @task(outlets=[asset])
        def request_retrain(
            decision: dict[str, Any], archived: dict[str, Any], **context: Any
        ) -> dict[str, Any]:
            from airflow.sdk.exceptions import AirflowSkipException

            if not decision["retrain"]:
                from retrainer import alerts

                alerts.for_decision(cfg, decision, context)  # a signal fired, but no retrain: say why
                raise AirflowSkipException(
                    f"no retrain requested: {decision['verdict']} {decision['suppressed_by'] or ''}"
                )
            extra = {
                "reasons": decision["reasons"],
                "batch": decision["batch"],
                "monitor_run": decision["mlflow_run_id"],
                "dag_run_id": context["run_id"],
            }
            context["outlet_events"][asset].extra = extra
            return extra

        @task
        def archive_batch(claim: dict[str, Any], decision: dict[str, Any]) -> dict[str, Any]:
            from retrainer.stages import monitor

            return dagkit.run(monitor.archive_batch, cfg, claim)

        claim = claim_task()
        validation = validate_batch(claim)
        scored = score_batch(claim, validation)
        drift = drift_report(claim, scored)
        fed = ingest_feeds(claim)
        validation >> fed  # a batch that fails the gate stops the run before anything is ingested
        perf = performance(claim, scored)
        flags = flagged_rate(claim, validation)
        fed >> [perf, flags]  # late labels and flags that landed by now count in this run's signals
        decision = decide(claim, validation, scored, drift, perf, flags)
        archived = archive_batch(claim, decision)
        request_retrain(decision, archived)  # after the archive: the retrain must see this batch
        watch = _watch_task(cfg)(claim, decision) if cfg.promotion.rollback_batches else None
        if cfg.promotion.mode == "shadow":
            shadow = _shadow_task(cfg)(claim, decision)
            if watch is not None:
                watch >> shadow  # the challenger is compared with the champion the watch left in place

    return monitor_dag()


def _claim(cfg: ModelConfig, context: Any) -> dict[str, Any] | None:
    """Claim a batch for this run (None: nothing to claim); alert when it resumes a stuck batch."""
    from retrainer.stages.monitor import claim_batch, claimed_recently

    ti, dag_id = context["ti"], context["dag"].dag_id

    def owner_alive(claim: Any) -> bool:  # a batch in processing is resumed once its run ended
        try:
            return str(ti.get_dagrun_state(dag_id, claim.run_id)) in ("queued", "running")
        except Exception:  # run unknown to Airflow (deleted, or claimed outside it): go by age
            return claimed_recently(claim)

    claim = claim_batch(cfg, context["run_id"], owner_alive)
    if claim and claim.get("attempt", 1) > 1:  # a batch an earlier run left stuck in processing
        from retrainer import alerts

        alerts.send_from_task(
            cfg,
            "stuck_batch",
            f"batch {claim['batch']} was left in processing by run(s) "
            f"{', '.join(claim.get('previous_runs') or [])}; resumed by this run "
            f"(attempt {claim['attempt']})",
            context,
        )
    return claim


def _claim_task(cfg: ModelConfig) -> Any:
    @task
    def claim_batch(**context: Any) -> dict[str, Any]:
        """Claim the oldest delivered batch (the announcement only says there may be one): a run that
        finds nothing (a duplicate or replayed announcement) is skipped, so no batch is processed twice."""
        from airflow.sdk.exceptions import AirflowSkipException

        claim = _claim(cfg, context)
        if claim is None:
            announced = [e.extra.get("payload") for e in _triggering_events(context)]
            raise AirflowSkipException(f"nothing to claim (announced: {announced or 'none'})")
        return claim

    return claim_batch


def _triggering_events(context: Any) -> list[Any]:
    events = context.get("triggering_asset_events") or {}
    return [e for evs in events.values() for e in evs]


def _sensor_task(cfg: ModelConfig) -> Any:
    @task.sensor(
        poke_interval=cfg.triggers.poke_interval_seconds,
        timeout=cfg.triggers.sensor_timeout_hours * 3600,
        # poke, not reschedule: under the real Airflow 3.2 scheduler a reschedule-mode sensor with a
        # short interval races the executor (the previous poke's "success" event arrives after the TI
        # was re-queued, and the scheduler marks it up_for_retry, then failed). Poking in place costs
        # one worker slot per model while waiting, and a poke is a cheap directory listing.
        mode="poke",
        soft_fail=True,  # no batch within the timeout is not an error: the run is skipped
    )
    def wait_for_batch(**context: Any) -> PokeReturnValue:
        claim = _claim(cfg, context)
        return PokeReturnValue(is_done=claim is not None, xcom_value=claim)

    return wait_for_batch


def _watch_task(cfg: ModelConfig) -> Any:
    @task
    def watch_champion(
        claim: dict[str, Any], decision: dict[str, Any], **context: Any
    ) -> dict[str, Any] | None:
        """Automatic rollback: for the first labelled batches after a promotion, score the previous champion
        on the same rows and roll back when the new one trails it by more than the margin."""
        from retrainer import alerts
        from retrainer.stages import promotion

        out = dagkit.run(promotion.watch_champion, cfg, claim, decision, context["run_id"])
        if out is not None:
            alerts.for_result(cfg, "watch", out, context)
        return out

    return watch_champion


def _shadow_task(cfg: ModelConfig) -> Any:
    @task
    def shadow_score(claim: dict[str, Any], decision: dict[str, Any], **context: Any) -> dict[str, Any]:
        """Champion and challenger on the same labelled rows; promote or retire the challenger."""
        from retrainer import alerts
        from retrainer.stages import promotion

        out = dagkit.run(promotion.shadow_score, cfg, claim, decision, context["run_id"])
        alerts.for_result(cfg, "shadow", out, context)
        return out

    return shadow_score


for _cfg in dagkit.configs("monitor")[0]:
    build_monitor(_cfg)
