"""The trigger path, one function per monitor task: claim, gate, score, signals, decide, archive.

Each function takes the model config plus small JSON (what the previous task returned) and returns small
JSON, so Airflow's XCom carries paths and numbers, never frames or models. Every function is safe to run
twice for the same batch: results are keyed by the batch's name and content hash.
"""

from __future__ import annotations

import contextlib
import json
import logging
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from retrainer import policy, quality, registry, settings, tracking
from retrainer.exceptions import BatchError, DataValidationError, RetrainerError
from retrainer.storage import DataRoot, read_batch

if TYPE_CHECKING:
    import pandas as pd

    from retrainer.config import ModelConfig

log = logging.getLogger(__name__)
STEP = policy.step  # the policy entry point, shared with the backtest (retrainer.backtest.STEP)
STATE_ARTIFACT = "policy_state.json"


def root(cfg: ModelConfig) -> DataRoot:
    return DataRoot(settings.data_root(), cfg.name)


def _stem(batch: str) -> str:
    return batch.rsplit(".", 1)[0]


# -- 1. claim -----------------------------------------------------------------------------------------
def claim_batch(cfg: ModelConfig, run_id: str) -> dict[str, Any] | None:
    """Claim the oldest landed batch for this run (the same run always gets the same batch back)."""
    claim = root(cfg).claim(run_id)
    if claim:
        log.info("run %s claimed batch %s (sha256 %s)", run_id, claim.batch, claim.sha256[:12])
    return claim.to_dict() if claim else None


def _load(cfg: ModelConfig, claim: dict[str, Any]) -> pd.DataFrame:
    from retrainer.train import prepare

    _, path = root(cfg).locate(claim["batch"])
    return prepare(cfg, read_batch(path))


# -- 2. quality gate ------------------------------------------------------------------------------------
def validate_batch(cfg: ModelConfig, claim: dict[str, Any], run_id: str = "") -> dict[str, Any]:
    """Gate the batch with GX against the champion's reference; quarantine and raise on failure."""
    dr = root(cfg)
    batch = claim["batch"]
    stage, path = dr.locate(batch)
    if stage == "quarantine":  # a retry of a task that already quarantined this batch
        reason = dr.quarantine_reason(batch) or {}
        raise DataValidationError(reason.get("message", f"{batch} was quarantined"), reason.get("failures"))
    docs_dir = dr.reports / "gx" / _stem(batch)
    try:
        duplicate = dr.archived_with_hash(claim["sha256"], path.stat().st_size)
        if duplicate is not None:  # a re-delivery would count its rows twice in every training window
            raise BatchError(
                f"duplicate delivery: identical content was already processed as {duplicate.name}"
            )
        df = read_batch(path)
        reference = _reference_frame(cfg)
        from retrainer.train import prepare

        # leave the frame as read if it cannot be prepared: GX names the missing or mistyped column
        with contextlib.suppress(KeyError, ValueError, TypeError):
            df = prepare(cfg, df)
        result = quality.validate(
            df,
            quality.build_expectations(cfg, reference),
            name=f"{cfg.name}_{_stem(batch)}",
            docs_dir=docs_dir,
        )
    except (DataValidationError, BatchError) as exc:
        failures = getattr(exc, "failures", [])
        message = f"batch {batch} of model {cfg.name} rejected: {exc}"
        dest = dr.quarantine_batch(
            batch,
            {
                "message": message,
                "failures": failures,
                "run_id": run_id,
                "gx_result": getattr(exc, "report", None),
            },
        )
        _log_quarantine(cfg, claim, message, failures, docs_dir, run_id)
        log.error("%s\nquarantined at %s", message, dest)
        raise DataValidationError(message, failures, getattr(exc, "report", None)) from exc
    labelled = int(df[cfg.data.target].notna().sum()) if cfg.data.target in df else 0
    return {
        "batch": batch,
        "rows": len(df),
        "labelled_rows": labelled,
        "gx_result": result["result_path"],
        "gx_docs": result["docs"],
    }


def _log_quarantine(
    cfg: ModelConfig, claim: dict[str, Any], message: str, failures: list[Any], docs_dir: Any, run_id: str
) -> None:
    import mlflow

    tracking.client()
    with mlflow.start_run(experiment_id=tracking.experiment_id(cfg.name, "monitor"), run_name=claim["batch"]):
        mlflow.set_tags(
            tracking.flat_tags(
                {
                    "kind": "monitor",
                    "batch": claim["batch"],
                    "batch_sha256": claim["sha256"],
                    "verdict": "quarantined",
                    "reasons": [message[:4000]],
                    "dag_run_id": run_id,
                }
            )
        )
        mlflow.log_dict({"failures": failures}, "gx_failures.json")
        if docs_dir.exists():
            mlflow.log_artifacts(str(docs_dir), "gx")


# -- reference data -----------------------------------------------------------------------------------
def _reference_frame(cfg: ModelConfig) -> pd.DataFrame | None:
    """The champion's training snapshot (hash-verified), or None before the first champion."""
    from retrainer.snapshot import load_snapshot

    champ = registry.champion(cfg.name)
    if champ is None or not champ.snapshot_sha256:
        return None
    return load_snapshot(root(cfg).snapshots, champ.snapshot_sha256)


def _reference_predictions(cfg: ModelConfig, champ: registry.Champion) -> pd.DataFrame:
    """Reference frame plus the champion's predictions on it (cached per champion version)."""
    import pandas as pd

    from retrainer.models import load_run_model
    from retrainer.train import predict

    dr = root(cfg)
    cache = dr.predictions / f"reference-v{champ.version}.parquet"
    if cache.exists():
        return pd.read_parquet(cache)
    ref = _reference_frame(cfg)
    if ref is None:
        raise RetrainerError(f"champion v{champ.version} of {cfg.name} has no snapshot to use as reference")
    ref = ref.copy()
    ref["prediction"] = predict(cfg, load_run_model(champ.run_id), ref)
    cache.parent.mkdir(parents=True, exist_ok=True)
    ref.to_parquet(cache, index=False)
    return ref


# -- 3. score ---------------------------------------------------------------------------------------
def score_batch(cfg: ModelConfig, claim: dict[str, Any]) -> dict[str, Any]:
    """Predict the batch with the champion; predictions saved under ``predictions/<model>/``."""
    from retrainer.models import load_run_model
    from retrainer.train import predict

    champ = registry.champion(cfg.name)
    if champ is None:
        log.warning("model %s has no champion yet: nothing to score with", cfg.name)
        return {"champion_version": None, "predictions": None}
    df = _load(cfg, claim)
    out = df[[cfg.data.time_column]].copy()
    out["prediction"] = predict(cfg, load_run_model(champ.run_id), df)
    path = root(cfg).predictions / f"{_stem(claim['batch'])}.v{champ.version}.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    out.to_parquet(path, index=False)
    log.info("scored %d rows of %s with champion v%s", len(out), claim["batch"], champ.version)
    return {"champion_version": champ.version, "predictions": str(path)}


# -- 4. signals -------------------------------------------------------------------------------------
def drift(cfg: ModelConfig, claim: dict[str, Any], scored: dict[str, Any]) -> dict[str, Any]:
    """Evidently data and prediction drift of the batch against the champion's training snapshot."""
    import pandas as pd

    from retrainer.drift import drift_report

    champ = registry.champion(cfg.name)
    if champ is None or scored.get("predictions") is None:
        return {"data_drift_share": None, "prediction_drift": None, "drifted_columns": [], "report": None}
    ref = _reference_predictions(cfg, champ)
    cur = _load(cfg, claim)
    cur["prediction"] = pd.read_parquet(scored["predictions"])["prediction"].to_numpy()
    html = root(cfg).reports / "evidently" / f"{_stem(claim['batch'])}.html"
    return drift_report(cfg, ref, cur, html_path=html)


def performance(cfg: ModelConfig, claim: dict[str, Any], scored: dict[str, Any]) -> dict[str, Any]:
    """The champion's metric on the batch's labelled rows against its own holdout metric."""
    import pandas as pd

    from retrainer import metrics

    champ = registry.champion(cfg.name)
    if champ is None or scored.get("predictions") is None:
        return {"metric": cfg.metric, "value": None, "reference": None, "labelled_rows": 0}
    df = _load(cfg, claim)
    df["prediction"] = pd.read_parquet(scored["predictions"])["prediction"].to_numpy()
    lab = df[df[cfg.data.target].notna()] if cfg.data.target in df else df.iloc[0:0]
    values = metrics.compute(cfg.task, lab[cfg.data.target].to_numpy(), lab["prediction"].to_numpy())
    if cfg.task == "classification" and len(lab):  # probability metrics need the champion's probabilities
        from retrainer.models import load_run_model

        values = metrics.score(cfg, load_run_model(champ.run_id), lab)
    out = {
        "metric": cfg.metric,
        "value": values.get(cfg.metric),
        "all": values,
        "reference": champ.metrics.get(cfg.metric),
        "labelled_rows": len(lab),
    }
    log.info("performance on %d labelled rows: %s (champion holdout %s)", len(lab), values, out["reference"])
    return out


def flagged_rate(cfg: ModelConfig, claim: dict[str, Any], validation: dict[str, Any]) -> dict[str, Any]:
    """Share of the batch's predictions that people flagged (sidecar ``<batch>.flags.csv``)."""
    import pandas as pd

    dr = root(cfg)
    _, path = dr.locate(claim["batch"])
    flags_file = dr.flags_path(path)
    rows = max(int(validation.get("rows", 0)), 1)
    if not flags_file.exists():
        return {"flagged_rate": None, "flagged": 0, "flags_file": None}
    flags = pd.read_csv(flags_file)
    key = "row" if "row" in flags else (cfg.data.id_column if cfg.data.id_column in flags else None)
    if key is None:
        raise BatchError(
            f"{flags_file.name}: needs a 'row' column (0-based row in the batch)"
            + (f" or '{cfg.data.id_column}'" if cfg.data.id_column else "")
        )
    n = int(flags[key].nunique())
    return {"flagged_rate": n / rows, "flagged": n, "flags_file": str(flags_file)}


# -- 5. decide ------------------------------------------------------------------------------------
def policy_state(cfg: ModelConfig, exclude_sha: str | None = None) -> policy.PolicyState:
    """The policy's state after the last decided batch, read back from the MLflow decision log.

    Each monitor run stores the state after its decision (counters, hysteresis, follow-up, and the river
    detector pickled) as ``policy_state.json``; the newest such run other than ``exclude_sha`` (a re-run of
    the same batch) gives the state. Runs without the artifact (older versions) fall back to counting
    batches since the last ``retrain`` verdict.
    """
    import mlflow

    runs = tracking.find_runs(cfg.name, "monitor", "tags.`retrainer.kind` = 'monitor'")
    decided = [
        r
        for r in runs
        if r.data.tags.get("retrainer.batch_sha256") != exclude_sha
        and r.data.tags.get("retrainer.verdict") != "quarantined"
    ]
    if decided and decided[-1].data.tags.get("retrainer.policy_state") == "1":
        try:
            stored = mlflow.artifacts.load_dict(f"{decided[-1].info.artifact_uri}/{STATE_ARTIFACT}")
            return policy.PolicyState.from_dict(stored)
        except Exception as exc:  # a missing/corrupt artifact must not stop the monitor: recount instead
            log.warning(
                "could not read %s of run %s (%s): recounting", STATE_ARTIFACT, decided[-1].info.run_id, exc
            )
    since: int | None = None
    for r in decided:
        if r.data.tags.get("retrainer.verdict") == "retrain":
            since = 0
        elif since is not None:
            since += 1
    return policy.PolicyState(batches_since_request=since)


def _errors(cfg: ModelConfig, claim: dict[str, Any], scored: dict[str, Any]) -> Any:
    """Per-row errors of the champion on the batch's labelled rows (for the change detector)."""
    import pandas as pd

    if cfg.triggers.error_detector is None or scored.get("predictions") is None:
        return None
    df = _load(cfg, claim)
    if cfg.data.target not in df:
        return None
    df["prediction"] = pd.read_parquet(scored["predictions"])["prediction"].to_numpy()
    lab = df[df[cfg.data.target].notna()]
    return policy.error_stream(cfg.task, lab[cfg.data.target].to_numpy(), lab["prediction"].to_numpy())


def _estimate(cfg: ModelConfig, claim: dict[str, Any], scored: dict[str, Any]) -> dict[str, Any]:
    """The champion's estimated metrics on the whole batch, labels or not (CBPE / DLE fitted on its
    holdout: the newest ``training.holdout`` of its snapshot); empty when it cannot be estimated."""
    from retrainer.estimation import fit_estimator
    from retrainer.models import load_run_model
    from retrainer.train import split_holdout

    champ = registry.champion(cfg.name)
    if cfg.triggers.estimation is None or champ is None or scored.get("predictions") is None:
        return {}
    try:
        reference = _reference_frame(cfg)
        if reference is None:
            return {}
        _, holdout = split_holdout(cfg, reference)
        model = load_run_model(champ.run_id)
        est = fit_estimator(cfg, model, holdout)
        if est is None:
            return {}
        return {"method": est.method, **est.estimate(cfg, model, _load(cfg, claim))}
    except (RetrainerError, ValueError) as exc:  # an estimate is advisory: never block the decision
        log.warning("no performance estimate for %s: %s", claim["batch"], exc)
        return {}


def decide(
    cfg: ModelConfig,
    claim: dict[str, Any],
    validation: dict[str, Any],
    scored: dict[str, Any],
    drift_result: dict[str, Any],
    perf: dict[str, Any],
    flags: dict[str, Any],
    run_id: str = "",
) -> dict[str, Any]:
    """Apply the policy and record the decision (fired or not) as an MLflow run."""
    import mlflow

    signals = policy.Signals(
        data_drift_share=drift_result.get("data_drift_share"),
        drifted_columns=tuple(drift_result.get("drifted_columns") or ()),
        prediction_drift=drift_result.get("prediction_drift"),
        metric_name=perf.get("metric"),
        metric_value=perf.get("value"),
        metric_reference=perf.get("reference"),
        lower_is_better=cfg.lower_is_better,
        labelled_rows=int(perf.get("labelled_rows") or 0),
        flagged_rate=flags.get("flagged_rate"),
        has_champion=scored.get("champion_version") is not None,
    )
    estimate = _estimate(cfg, claim, scored)
    if estimate.get(cfg.trigger_metric) is not None:
        signals = replace(
            signals, estimated_value=estimate[cfg.trigger_metric], estimate_method=estimate["method"]
        )
    state = policy_state(cfg, exclude_sha=claim["sha256"])
    version = scored.get("champion_version")
    decision, new_state, signals = STEP(
        signals,
        cfg.triggers,
        state,
        errors=_errors(cfg, claim, scored),
        model_id=None if version is None else f"v{version}",
    )
    tracking.client()
    existing = tracking.find_runs(
        cfg.name,
        "monitor",
        f"tags.`retrainer.batch_sha256` = '{claim['sha256']}' and tags.`retrainer.verdict` != 'quarantined'",
    )
    run_kwargs = (
        {"run_id": existing[-1].info.run_id}
        if existing
        else {"experiment_id": tracking.experiment_id(cfg.name, "monitor"), "run_name": claim["batch"]}
    )
    with mlflow.start_run(**run_kwargs) as run:
        mlflow.set_tags(
            tracking.flat_tags(
                {
                    "kind": "monitor",
                    "batch": claim["batch"],
                    "batch_sha256": claim["sha256"],
                    "dag_run_id": run_id,
                    "verdict": decision.verdict,
                    "reasons": decision.reasons,
                    "fired": decision.fired,
                    "suppressed_by": decision.suppressed_by,
                    "champion_version": scored.get("champion_version"),
                    "drifted_columns": drift_result.get("drifted_columns"),
                    "policy_state": "1",
                }
            )
        )
        mlflow.log_dict(new_state.to_dict(), STATE_ARTIFACT)
        values = {
            "data_drift_share": signals.data_drift_share,
            "prediction_drift": signals.prediction_drift,
            f"batch_{cfg.metric}": signals.metric_value,
            "flagged_rate": signals.flagged_rate,
            "error_change": None if signals.error_change is None else float(signals.error_change),
            f"estimated_{cfg.trigger_metric}": signals.estimated_value,
            "rows": validation.get("rows"),
            "labelled_rows": signals.labelled_rows,
            "retrain_requested": float(decision.retrain),
        }
        mlflow.log_metrics({k: float(v) for k, v in values.items() if v is not None})
        mlflow.log_dict(
            {
                "signals": {k: v for k, v in signals.__dict__.items()},
                "decision": decision.to_dict(),
                "drift": drift_result,
                "performance": perf,
                "flags": flags,
                "estimate": estimate,
                "state": {k: v for k, v in state.to_dict().items() if k != "detector"},
            },
            "decision.json",
        )
        if drift_result.get("report"):
            mlflow.log_artifact(drift_result["report"], "evidently")
        if validation.get("gx_result"):
            mlflow.log_artifact(validation["gx_result"], "gx")
    out = {
        **decision.to_dict(),
        "verdict": decision.verdict,
        "mlflow_run_id": run.info.run_id,
        "batch": claim["batch"],
        "batch_sha256": claim["sha256"],
    }
    log.info(
        "decision for %s: %s %s%s",
        claim["batch"],
        decision.verdict,
        json.dumps(decision.reasons),
        f" (suppressed: {decision.suppressed_by})" if decision.suppressed_by else "",
    )
    return out


# -- 6. archive -------------------------------------------------------------------------------------
def archive_batch(cfg: ModelConfig, claim: dict[str, Any]) -> dict[str, Any]:
    """Move the processed batch into ``archive/<model>/`` (a no-op if it is already there)."""
    dest = root(cfg).archive_batch(claim["batch"])
    return {"archived": str(dest)}
