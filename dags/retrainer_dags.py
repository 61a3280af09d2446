"""
### Retrainer DAGs

Built from every model config in `include/models/*.yaml` (adding a model is adding a YAML file).
For each model `<name>`:

* **`<name>__monitor`**: the trigger path. `wait_for_batch` (sensor, poke mode) claims the oldest
  batch in `landing/<name>/` -> `validate_batch` (Great Expectations gate; a failing batch is quarantined
  with a `.reason.json`) -> `score_batch` (champion predictions) -> `drift_report` (Evidently data and
  prediction drift) / `ingest_feeds` (labels and flags files that arrived since the last run) ->
  `performance` (labelled rows, late labels included) / `flagged_rate` (human flags) -> `decide` (policy with
  cooldown; every decision is an MLflow run) -> `archive_batch` -> `request_retrain` (emits the asset
  `retrainer://<name>/retrain-request` with the reasons; skipped when the policy does not fire). The batch
  is archived before the request, so the retrain it asks for trains on it. A batch a failed run left in
  `processing/` is resumed by the next run before newer batches.
* **`<name>__retrain`**: runs on the config's cron *or* when that asset is updated, and on manual
  trigger (Params: `force`, `reason`, `window`). `resolve_trigger` -> `snapshot` (immutable, sha256)
  -> `gate_training_data` (GX) -> `train` (MLflow run) -> `evaluate` (vs champion on the most recent
  holdout) -> `register` (only if it passed) -> `promote` (alias `champion`, or `challenger` in the
  `shadow` / `approval` promotion modes; history recorded). Approval mode adds `request_approval`, which
  hands the challenger to `<name>__approval` and ends the run; shadow mode adds `shadow_score` to the
  monitor DAG, and `promotion.rollback_batches` adds `watch_champion` (automatic rollback) before it.
* **`<name>__approval`** (approval mode only): runs when a challenger is staged. `pending_approval` ->
  `approval` (human-in-the-loop; only the config's `promotion.approvers` when set; no answer within
  `promotion.approval_timeout`, default 24H, chooses Reject) -> `apply_approval` (promote, or retire and
  record who rejected or that it timed out). New retrain requests keep being recorded meanwhile.
* **`<name>__maintenance`**: on the `retention.schedule` cron (no DAG when it is null): `gc` removes what
  the model's `retention:` rules allow (old archived batches, unreferenced snapshots, old reports,
  predictions and claim records), never what a registered version, a window or pending labels need.
* **`<name>__rollback`**: manual only (Params: `version`, empty = the previous champion; `reason`): moves
  the `champion` alias back and records it in the history, with the Airflow user who triggered the run.

Alerts (the model config's `alerts:`) go out through Airflow notifiers: a failed task or a quarantined
batch from every task's failure callback, the other events from the tasks that cause them.

A model whose config file is invalid gets no DAGs but a `<file>__invalid_config` DAG whose description
and doc show the error; the other models are unaffected.

All logic lives in the `retrainer` package; these tasks only wire it together.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import Asset, AssetOrTimeSchedule, CronTriggerTimetable, Param, PokeReturnValue, dag, task

from retrainer import settings
from retrainer.alerts import FailureAlert
from retrainer.config import ModelConfig, load_valid

DEFAULT_ARGS = {"owner": "retrainer", "retries": 1, "retry_delay": timedelta(seconds=30)}
START = datetime(2024, 1, 1)


def _common(name: str, kind: str) -> dict[str, Any]:
    """What every Retrainer DAG shares: start date, no catch-up, one run at a time (a retrain's requests
    arriving during a run are merged into the next), retries, tags and this docstring as its doc."""
    return {
        "start_date": START,
        "catchup": False,
        "max_active_runs": 1,
        "default_args": DEFAULT_ARGS,
        "tags": ["retrainer", name, kind],
        "doc_md": __doc__,
    }


def retrain_asset(name: str) -> Asset:
    return Asset(name=f"{name}__retrain_request", uri=f"retrainer://{name}/retrain-request")


def approval_asset(name: str) -> Asset:
    return Asset(name=f"{name}__approval_request", uri=f"retrainer://{name}/approval-request")


def _alerting(cfg: ModelConfig, common: dict[str, Any]) -> dict[str, Any]:
    """``common`` with the model's failure alert on every task (quarantine or task failure)."""
    return {**common, "default_args": {**common["default_args"], "on_failure_callback": FailureAlert(cfg)}}


def _user(context: Any) -> str:
    """The Airflow user who triggered the run (None for the scheduler and the asset path)."""
    return str(getattr(context["dag_run"], "triggering_user_name", None) or "unknown")


def _run(fn: Any, *args: Any) -> Any:
    """Call a stage; our own errors (bad data, bad config, too little data) are not transient, so they
    fail the task without retries, keeping the message. Anything else (a database hiccup) is retried."""
    from airflow.sdk.exceptions import AirflowFailException

    from retrainer.exceptions import RetrainerError

    try:
        return fn(*args)
    except RetrainerError as exc:
        raise AirflowFailException(f"{type(exc).__name__}: {exc}") from exc


def build_monitor(cfg: ModelConfig) -> Any:
    name = cfg.name
    asset = retrain_asset(name)

    @dag(
        dag_id=f"{name}__monitor",
        description=f"Trigger path for {name}: gate, score, drift, performance, flags, decide",
        schedule="@continuous",  # each run waits for one batch; the next run starts when it ends
        **_alerting(cfg, _common(name, "monitor")),
    )
    def monitor_dag() -> None:
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
            from retrainer.stages.monitor import claim_batch
            from retrainer.storage import DataRoot

            ti, dag_id = context["ti"], context["dag"].dag_id

            def owner_alive(claim: Any) -> bool:  # a batch in processing is resumed once its run ended
                try:
                    return str(ti.get_dagrun_state(dag_id, claim.run_id)) in ("queued", "running")
                except Exception:  # run unknown to Airflow (deleted, or claimed outside it): go by age
                    return DataRoot._recent(claim)

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
            return PokeReturnValue(is_done=claim is not None, xcom_value=claim)

        @task
        def validate_batch(claim: dict[str, Any], **context: Any) -> dict[str, Any]:
            from retrainer.stages import monitor

            return _run(monitor.validate_batch, cfg, claim, context["run_id"])

        @task
        def score_batch(claim: dict[str, Any], validation: dict[str, Any]) -> dict[str, Any]:
            from retrainer.stages import monitor

            return _run(monitor.score_batch, cfg, claim)

        @task
        def drift_report(claim: dict[str, Any], scored: dict[str, Any]) -> dict[str, Any]:
            from retrainer.stages import monitor

            return _run(monitor.measure_drift, cfg, claim, scored)

        @task
        def ingest_feeds(claim: dict[str, Any]) -> dict[str, Any]:
            from retrainer.stages import monitor

            return _run(monitor.ingest_feeds, cfg, claim)

        @task
        def performance(claim: dict[str, Any], scored: dict[str, Any]) -> dict[str, Any]:
            from retrainer.stages import monitor

            return _run(monitor.performance, cfg, claim, scored)

        @task
        def flagged_rate(claim: dict[str, Any], validation: dict[str, Any]) -> dict[str, Any]:
            from retrainer.stages import monitor

            return _run(monitor.flagged_rate, cfg, claim, validation)

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

            return _run(monitor.decide, cfg, claim, validation, scored, drift, perf, flags, context["run_id"])

        @task(outlets=[asset])
        def request_retrain(
            decision: dict[str, Any], archived: dict[str, Any], **context: Any
        ) -> dict[str, Any]:
            from airflow.sdk.exceptions import AirflowSkipException

            if not decision["retrain"]:
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

            return _run(monitor.archive_batch, cfg, claim)

        claim = wait_for_batch()
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


def _watch_task(cfg: ModelConfig) -> Any:
    @task
    def watch_champion(
        claim: dict[str, Any], decision: dict[str, Any], **context: Any
    ) -> dict[str, Any] | None:
        """Automatic rollback: for the first labelled batches after a promotion, score the previous champion
        on the same rows and roll back when the new one trails it by more than the margin."""
        from retrainer import alerts
        from retrainer.stages import promotion

        out = _run(promotion.watch_champion, cfg, claim, decision, context["run_id"])
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

        out = _run(promotion.shadow_score, cfg, claim, decision, context["run_id"])
        alerts.for_result(cfg, "shadow", out, context)
        return out

    return shadow_score


def _request_approval(cfg: ModelConfig, staged: Any) -> None:
    """Approval mode: hand a staged challenger to the model's approval DAG and end this run, so that the
    retrain DAG (one active run) keeps taking new requests while a person decides."""
    asset = approval_asset(cfg.name)

    @task(outlets=[asset])
    def request_approval(staged: dict[str, Any], **context: Any) -> dict[str, Any]:
        from airflow.sdk.exceptions import AirflowSkipException

        if staged.get("awaiting") != "approval":  # the first model, or a no-op, needs no approval
            raise AirflowSkipException("nothing waits for approval")
        extra = {"version": staged["version"], "retrain_run": context["run_id"]}
        context["outlet_events"][asset].extra = extra
        return extra

    request_approval(staged)


def build_approval(cfg: ModelConfig) -> Any:
    """``<name>__approval``: asks a person about the current challenger (Airflow's human-in-the-loop
    operator); no answer within ``promotion.approval_timeout`` rejects and retires it."""
    from airflow.providers.standard.operators.hitl import HITLOperator

    name = cfg.name
    timeout = timedelta(seconds=cfg.promotion.approval_timeout_seconds)

    @dag(
        dag_id=f"{name}__approval",
        description=f"Approval of {name}'s challenger: promote or retire; rejected after {cfg.promotion.approval_timeout}",
        schedule=approval_asset(name),
        **_alerting(cfg, _common(name, "approval")),
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

            out = _run(promotion.apply_approval, cfg, pending, dict(response), f"dag_run:{context['run_id']}")
            alerts.for_result(cfg, "approval", out, context)
            return out

        pending >> approval
        apply_approval(pending, approval.output)

    return approval_dag()


def build_retrain(cfg: ModelConfig) -> Any:
    name = cfg.name
    asset = retrain_asset(name)
    schedule: Any = asset
    if cfg.schedule:
        schedule = AssetOrTimeSchedule(
            timetable=CronTriggerTimetable(cfg.schedule, timezone="UTC"), assets=asset
        )

    @dag(
        dag_id=f"{name}__retrain",
        description=f"Retrain {name}: snapshot, gate, train, evaluate vs champion, register, promote",
        schedule=schedule,
        **_alerting(cfg, _common(name, "retrain")),
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
            return resolve(run_type, events, dict(context["params"]), _user(context))

        @task
        def snapshot(trigger: dict[str, Any]) -> dict[str, Any]:
            from retrainer.stages import retrain

            return _run(retrain.snapshot, cfg, trigger["window"], trigger.get("batches"))

        @task
        def gate_training_data(snap: dict[str, Any]) -> dict[str, Any]:
            from retrainer.stages import retrain

            return _run(retrain.gate, cfg, snap)

        @task
        def train(
            snap: dict[str, Any], gate: dict[str, Any], trigger: dict[str, Any], **context: Any
        ) -> dict[str, Any]:
            from retrainer.stages import retrain

            return _run(retrain.train, cfg, snap, trigger, context["run_id"])

        @task
        def evaluate(
            snap: dict[str, Any], trained: dict[str, Any], trigger: dict[str, Any]
        ) -> dict[str, Any]:
            from retrainer.stages import retrain

            return _run(retrain.evaluate, cfg, snap, trained, trigger["force"])

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

            out = _run(retrain.promote, cfg, registered, evaluation, trigger, context["run_id"])
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


def build_rollback(cfg: ModelConfig) -> Any:
    name = cfg.name

    @dag(
        dag_id=f"{name}__rollback",
        description=f"Manual: move {name}'s champion alias back to an earlier version (recorded in history)",
        schedule=None,
        **_alerting(cfg, _common(name, "rollback")),
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
            out = _run(
                do_rollback,
                name,
                int(version) if version is not None else None,
                str(params.get("reason") or ""),
                f"{_user(context)} (dag_run:{context['run_id']})",  # the Airflow user who triggered it
            )
            alerts.for_result(cfg, "rollback", out, context)
            return out

        rollback()

    return rollback_dag()


def build_maintenance(cfg: ModelConfig) -> Any:
    @dag(
        dag_id=f"{cfg.name}__maintenance",
        description=f"Retention for {cfg.name}: remove what no window, registered version or label needs",
        schedule=CronTriggerTimetable(cfg.retention.schedule, timezone="UTC"),
        **_common(cfg.name, "maintenance"),
    )
    def maintenance_dag() -> None:
        @task
        def gc() -> dict[str, Any]:
            from retrainer.stages.retention import collect

            plan = _run(collect, cfg).to_dict()
            return {"bytes": plan["bytes"], "removed": {k: len(v) for k, v in plan["remove"].items()}}

        gc()

    return maintenance_dag()


def build_invalid(stem: str, error: str) -> Any:
    """A DAG that shows why a model's config is invalid (its real DAGs are not built until it is fixed)."""
    import re

    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", stem)[:200] or "unnamed"

    @dag(
        dag_id=f"{safe}__invalid_config",
        description=f"INVALID CONFIG: {error.splitlines()[0][:180]}",
        schedule=None,
        start_date=START,
        catchup=False,
        default_args={**DEFAULT_ARGS, "retries": 0},
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


_configs, _errors = load_valid(settings.config_dir())  # one broken file affects only its own model
for _cfg in _configs:
    globals()[f"{_cfg.name}__monitor"] = build_monitor(_cfg)
    globals()[f"{_cfg.name}__retrain"] = build_retrain(_cfg)
    globals()[f"{_cfg.name}__rollback"] = build_rollback(_cfg)
    if _cfg.promotion.mode == "approval":
        globals()[f"{_cfg.name}__approval"] = build_approval(_cfg)
    if _cfg.retention.schedule:
        globals()[f"{_cfg.name}__maintenance"] = build_maintenance(_cfg)
for _stem, _error in _errors.items():
    globals()[f"{_stem}__invalid_config"] = build_invalid(_stem, _error)
