"""Read model for dashboards: what each model is doing, as plain dicts (no Airflow needed).

Everything is read back from the system of record: MLflow (decision log runs, training runs, registered
versions, alias history) and the data root (landing, quarantine, report files). The Airflow plugin in
``plugins/`` renders these dicts; tests call the functions directly. Reading never creates anything.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from retrainer import settings
from retrainer.config import find_config, load_valid
from retrainer.storage import DataRoot, batch_stem
from retrainer.tracking import registry
from retrainer.tracking import runs as tracking

if TYPE_CHECKING:
    from pathlib import Path

    from mlflow.entities import Run

    from retrainer.config import ModelConfig


def _iso(ms: int | None) -> str | None:
    if not ms:
        return None
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="seconds")


def _json_tag(tags: dict[str, str], key: str, default: Any = None) -> Any:
    raw = tags.get(f"{tracking.TAG}{key}")
    if raw is None:
        return default
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def _runs(model: str, purpose: str, limit: int = 500) -> tuple[str | None, list[Run]]:
    """(experiment id, the newest ``limit`` runs oldest first) of ``retrainer/<model>/<purpose>``; nothing
    is created. Reading the newest first keeps the page current however long the history grows."""
    c = tracking.client()
    exp = c.get_experiment_by_name(f"retrainer/{model}/{purpose}")
    if exp is None:
        return None, []
    runs = c.search_runs([exp.experiment_id], max_results=limit, order_by=["attributes.start_time DESC"])
    return exp.experiment_id, list(reversed(list(runs)))


def _head(model: str) -> dict[str, Any] | None:
    """The decide task's pointer to the newest decision, with running counts (None before the first)."""
    exp = tracking.client().get_experiment_by_name(f"retrainer/{model}/monitor")
    raw = exp.tags.get(f"{tracking.TAG}policy_head") if exp is not None else None
    try:
        head = json.loads(raw) if raw else None
    except ValueError:
        return None
    return head if isinstance(head, dict) else None


def drift_level(share: float | None, cfg: ModelConfig) -> str:
    """``high`` at or above the trigger share, ``moderate`` above half of it, else ``low``."""
    if share is None:
        return "unknown"
    trigger = cfg.triggers.data_drift
    limit = trigger.share if trigger is not None else 0.3
    if share >= limit:
        return "high"
    return "moderate" if share >= limit / 2 else "low"


def _report_paths(dr: DataRoot, batch: str) -> dict[str, str | None]:
    """Evidently HTML and GX Data Docs of a batch, relative to the data root (None if absent)."""
    evidently = dr.evidently_report(batch)
    gx_docs = dr.gx_dir(batch_stem(batch)) / "docs" / "index.html"
    base = settings.data_root()
    return {
        "evidently": str(evidently.relative_to(base)) if evidently.exists() else None,
        "gx_docs": str(gx_docs.relative_to(base)) if gx_docs.exists() else None,
    }


def checks(cfg: ModelConfig, limit: int = 500) -> list[dict[str, Any]]:
    """One dict per monitor decision (the newest ``limit``, oldest first): batch, verdict, reasons,
    signals, links."""
    exp_id, runs = _runs(cfg.name, "monitor", limit)
    dr = DataRoot.for_model(cfg)
    out = []
    for r in runs:
        t, m = r.data.tags, r.data.metrics
        if t.get(f"{tracking.TAG}kind") != "monitor":
            continue
        batch = t.get(f"{tracking.TAG}batch", r.info.run_name or "")
        champ = t.get(f"{tracking.TAG}champion_version")
        out.append(
            {
                "at": _iso(r.info.start_time),
                "batch": batch,
                "verdict": t.get(f"{tracking.TAG}verdict", "unknown"),
                "reasons": _json_tag(t, "reasons", []),
                "suppressed_by": t.get(f"{tracking.TAG}suppressed_by"),
                "drifted_columns": _json_tag(t, "drifted_columns", []),
                "data_drift_share": m.get("data_drift_share"),
                "prediction_drift": m.get("prediction_drift"),
                "metric": m.get(f"batch_{cfg.metric}"),
                "estimate": m.get(f"estimated_{cfg.trigger_metric}"),  # CBPE / DLE, before the labels
                "scored_batches": _json_tag(t, "scored_batches", []) or [],
                "rows": m.get("rows"),
                "champion_version": int(champ) if champ and champ.isdigit() else None,
                "dag_run_id": t.get(f"{tracking.TAG}dag_run_id"),
                "mlflow_run_id": r.info.run_id,
                "mlflow_experiment_id": exp_id,
                **_report_paths(dr, batch),
            }
        )
    # a batch's realised metric: the step whose matured labels were that batch's alone (the same step
    # with prompt labels, a later one with late labels); None while its labels are pending
    realised = {c["scored_batches"][0]: c["metric"] for c in out if len(c["scored_batches"]) == 1}
    for c in out:
        c["realised"] = realised.get(c["batch"]) if cfg.trigger_metric == cfg.metric else None
    return out


def retrains(cfg: ModelConfig, limit: int = 500) -> list[dict[str, Any]]:
    """One dict per training run (the newest ``limit``, oldest first): when, why, outcome, version."""
    exp_id, runs = _runs(cfg.name, "train", limit)
    out = []
    for r in runs:
        t = r.data.tags
        validation = _json_tag(t, "validation", {}) or {}
        version = t.get(f"{tracking.TAG}registered_version")
        out.append(
            {
                "at": _iso(r.info.start_time),
                "trigger_source": t.get(f"{tracking.TAG}trigger_source"),
                "triggered_by": t.get(f"{tracking.TAG}triggered_by"),
                "claimed_source": t.get(f"{tracking.TAG}claimed_source"),
                "reasons": _json_tag(t, "trigger_reasons", []),
                "outcome": t.get(f"{tracking.TAG}outcome", r.info.status.lower()),
                "failed_checks": validation.get("failed_checks", []) if isinstance(validation, dict) else [],
                "holdout_metric": r.data.metrics.get(f"holdout_{cfg.metric}"),
                "champion_metric": r.data.metrics.get(f"champion_holdout_{cfg.metric}"),
                "version": int(version) if version and version.isdigit() else None,
                "dag_run_id": t.get(f"{tracking.TAG}dag_run_id"),
                "mlflow_run_id": r.info.run_id,
                "mlflow_experiment_id": exp_id,
            }
        )
    return out


def versions(cfg: ModelConfig) -> list[dict[str, Any]]:
    """Registered versions, newest first, with aliases and holdout metric."""
    from mlflow.exceptions import MlflowException

    c = tracking.client()
    try:
        mvs = c.search_model_versions(f"name = '{cfg.name}'")
    except MlflowException:
        return []
    aliases: dict[str, list[str]] = {}
    try:
        for alias, v in c.get_registered_model(cfg.name).aliases.items():
            aliases.setdefault(str(v), []).append(alias)
    except MlflowException:
        pass
    metric_tag = f"{tracking.TAG}holdout_{cfg.metric}"
    out = []
    for mv in mvs:
        raw = mv.tags.get(metric_tag)
        out.append(
            {
                "version": int(mv.version),
                "created": _iso(mv.creation_timestamp),
                "aliases": sorted(aliases.get(str(mv.version), [])),
                "holdout_metric": float(raw) if raw not in (None, "") else None,
                "trigger_source": mv.tags.get(f"{tracking.TAG}trigger_source"),
                "snapshot_sha256": mv.tags.get(f"{tracking.TAG}snapshot_sha256"),
                "mlflow_run_id": mv.run_id,
            }
        )
    return sorted(out, key=lambda v: v["version"], reverse=True)


def quarantined(cfg: ModelConfig) -> list[dict[str, Any]]:
    """Batches in quarantine with the first line of their reason."""
    dr = DataRoot.for_model(cfg)
    if not dr.quarantine.exists():
        return []
    out = []
    for reason_file in sorted(dr.quarantine.glob("*.reason.json")):
        try:
            reason = json.loads(reason_file.read_text())
        except (OSError, ValueError):
            reason = {}
        out.append(
            {
                "batch": reason_file.name.removesuffix(".reason.json"),
                "message": str(reason.get("message") or reason.get("reason") or ""),
            }
        )
    return out


def pending(cfg: ModelConfig) -> int:
    """Batches waiting in ``landing/<model>/``."""
    dr = DataRoot.for_model(cfg)
    return len(dr.pending()) if dr.landing.exists() else 0


def summary(cfg: ModelConfig) -> dict[str, Any]:
    """One overview row: champion, last check, drift level, last retrain, challenger."""
    champ = registry.champion(cfg.name)
    challenger = registry.challenger(cfg.name)
    log = checks(cfg)
    trains = retrains(cfg)
    last = log[-1] if log else None
    last_scored = next((c for c in reversed(log) if c["data_drift_share"] is not None), None)
    history = registry.history(cfg.name)
    promotions = [e for e in history if e.get("alias") == registry.CHAMPION]
    head = _head(cfg.name)
    quarantines = len(quarantined(cfg))
    return {
        "name": cfg.name,
        "task": cfg.task,
        "description": cfg.description,
        "metric": cfg.metric,
        "lower_is_better": cfg.lower_is_better,
        "champion": (
            {
                "version": champ.version,
                "metric": champ.metrics.get(cfg.metric),
                "since": promotions[-1]["at"] if promotions else None,
            }
            if champ
            else None
        ),
        "challenger": (
            {"version": challenger.version, "metric": challenger.metrics.get(cfg.metric)}
            if challenger
            else None
        ),
        "last_check": last,
        "drift_level": drift_level(last_scored["data_drift_share"] if last_scored else None, cfg),
        "drift_share": last_scored["data_drift_share"] if last_scored else None,
        "last_retrain": trains[-1] if trains else None,
        "checks": head["decisions"] + quarantines if head else len(log),
        "retrain_requests": head["retrain_requests"]
        if head
        else sum(1 for c in log if c["verdict"] == "retrain"),
        "pending_batches": pending(cfg),
        "quarantined": quarantines,
        "stuck": len(stuck(cfg)),
        "config_error": None,
    }


def stuck(cfg: ModelConfig) -> list[dict[str, Any]]:
    """Batches in ``processing/`` longer than ``RETRAINER_STUCK_AFTER_MINUTES`` (a run died between claim
    and archive; the next monitor run resumes them): {batch, since (ISO), claimed_by (run id)}."""
    return DataRoot.for_model(cfg).stuck()


def invalid(name: str, error: str) -> dict[str, Any]:
    """The overview row of a model whose config file is invalid (its DAGs are not built)."""
    return {
        "name": name,
        "config_error": error,
        "champion": None,
        "challenger": None,
        "last_check": None,
        "drift_level": "unknown",
        "drift_share": None,
        "last_retrain": None,
        "checks": 0,
        "retrain_requests": 0,
        "pending_batches": 0,
        "quarantined": 0,
        "stuck": 0,
        "task": None,
        "description": "invalid config",
        "metric": None,
        "lower_is_better": None,
    }


def overview() -> list[dict[str, Any]]:
    """One summary per model config (``include/models/*.yaml``), sorted by name; an invalid config is a
    row with ``config_error`` and does not hide the others."""
    configs, errors = load_valid(settings.config_dir())
    rows = [summary(cfg) for cfg in configs] + [invalid(n, e) for n, e in errors.items()]
    return sorted(rows, key=lambda r: r["name"])


def model_detail(name: str) -> dict[str, Any]:
    """Everything the model page shows: summary, per-batch series, decision log, retrains, versions."""
    cfg = find_config(name, settings.config_dir())
    return {
        "summary": summary(cfg),
        "checks": checks(cfg),
        "retrains": retrains(cfg),
        "versions": versions(cfg),
        "history": registry.history(cfg.name),
        "quarantined": quarantined(cfg),
        "stuck": stuck(cfg),
        "thresholds": {
            "data_drift_share": cfg.triggers.data_drift.share if cfg.triggers.data_drift else None,
            "prediction_drift": (
                cfg.triggers.prediction_drift.threshold if cfg.triggers.prediction_drift else None
            ),
        },
    }


def data_file(relative: str) -> Path:
    """A file under the data root's ``reports/`` (for serving report HTML); refuses anything else."""
    base = settings.data_root()
    path = (base / relative).resolve()
    reports = base / "reports"
    if not path.is_relative_to(reports) or not path.is_file():
        raise FileNotFoundError(relative)
    return path
