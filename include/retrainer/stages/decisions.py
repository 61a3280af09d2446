"""The monitor's decision log in MLflow: the policy state a decision starts from, and the record of each
decision (one monitor run per batch: tags, metrics, the policy state after it, the evidence, the Evidently
and GX reports), then the head pointer moved to it.

A re-run of a batch updates its run instead of adding one, so the log holds one decision per batch.
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any

from retrainer import policy
from retrainer.tracking import policy_state as store
from retrainer.tracking import runs as tracking

if TYPE_CHECKING:
    from retrainer.config import ModelConfig
    from retrainer.stages.assess import Assessment, Evidence

log = logging.getLogger(__name__)
Prior = tuple[policy.PolicyState, str | None, str | None]  # (state, note, MLflow run it came from)


def load_policy_state(cfg: ModelConfig, exclude_sha: str | None = None) -> Prior:
    """The policy's state after the newest decision other than a re-run of ``exclude_sha``:
    (state, note, MLflow run it came from); see :func:`retrainer.tracking.policy_state.load_state`. A
    stored state that is not one we wrote is rejected and the policy starts fresh, ``note`` saying so."""
    return store.load_state(cfg.name, policy.PolicyState.from_dict, policy.PolicyState, exclude_sha)


def policy_state(cfg: ModelConfig, exclude_sha: str | None = None) -> policy.PolicyState:
    """The policy's state after the newest decided batch (see :func:`load_policy_state`)."""
    return load_policy_state(cfg, exclude_sha)[0]


def _tags(
    cfg: ModelConfig, claim: dict[str, Any], run_id: str, evidence: Evidence, result: Assessment, prior: Prior
) -> dict[str, Any]:
    decision, drift, perf = result.decision, evidence.drift, evidence.performance
    return {
        "kind": "monitor",
        "batch": claim["batch"],
        "delivered_as": claim.get("delivered_as") or None,  # a redelivery under a used name
        "batch_sha256": claim["sha256"],
        "dag_run_id": run_id,
        "verdict": decision.verdict,
        "reasons": decision.reasons,
        "fired": decision.fired,
        "suppressed_by": decision.suppressed_by,
        "champion_version": evidence.champion_version,
        "drifted_columns": drift.get("drifted_columns"),
        "no_data_columns": drift.get("no_data_columns") or None,  # all null in batch
        # the batches whose labels made this step's realised metric (the view pairs a batch's
        # estimate with its realised metric once its labels arrive)
        "scored_batches": [b["batch"] for b in perf.get("scored_batches") or [] if b.get("scored")] or None,
        "policy_state": "1",
        "policy_state_from": prior[2],
        "policy_state_note": prior[1],
    }


def _metrics(
    cfg: ModelConfig, validation: dict[str, Any], evidence: Evidence, result: Assessment
) -> dict[str, float]:
    s = result.signals
    values = {
        "data_drift_share": s.data_drift_share,
        "prediction_drift": s.prediction_drift,
        f"batch_{cfg.metric}": s.metric_value,
        "flagged_rate": s.flagged_rate,
        "error_change": None if s.error_change is None else float(s.error_change),
        f"estimated_{cfg.trigger_metric}": s.estimated_value,
        "rows": validation.get("rows"),
        "labelled_rows": s.labelled_rows,
        "late_labelled_rows": evidence.performance.get("late_labelled_rows"),  # labels feed: earlier batches
        "retrain_requested": float(result.decision.retrain),
    }
    return {k: float(v) for k, v in values.items() if v is not None}


def _details(evidence: Evidence, flags: dict[str, Any], result: Assessment, prior: Prior) -> dict[str, Any]:
    """``decision.json``: everything the decision was made from."""
    state, note, source = prior
    return {
        "signals": {k: v for k, v in result.signals.__dict__.items()},
        "decision": result.decision.to_dict(),
        "drift": evidence.drift,
        "performance": evidence.performance,
        "flags": flags,
        "estimate": evidence.estimate,
        "state": {k: v for k, v in state.to_dict().items() if k != "detector"},
        "state_note": note,
        "state_from": source,
    }


def record(
    cfg: ModelConfig,
    claim: dict[str, Any],
    run_id: str,
    validation: dict[str, Any],
    flags: dict[str, Any],
    evidence: Evidence,
    result: Assessment,
    prior: Prior,
) -> dict[str, Any]:
    """Record the decision ``result`` on the claimed batch (made from ``prior``) as its monitor run and move
    the head to it; returns what the decide task hands on (the decision, its verdict and MLflow run)."""
    import mlflow

    tracking.client()
    existing = store.decision_run(cfg.name, claim["sha256"])
    # the state this batch's first attempt was decided from: a retry whose head write never happened
    # (the head still names that state) must advance the head, not leave it behind
    first_from = existing.data.tags.get(f"{tracking.TAG}policy_state_from") if existing else None
    run_kwargs = (
        {"run_id": existing.info.run_id}
        if existing
        else {"experiment_id": tracking.experiment_id(cfg.name, "monitor"), "run_name": claim["batch"]}
    )
    with mlflow.start_run(**run_kwargs) as run:
        mlflow.set_tags(tracking.flat_tags(_tags(cfg, claim, run_id, evidence, result, prior)))
        mlflow.log_dict(result.state.to_dict(), store.STATE_ARTIFACT)
        mlflow.log_metrics(_metrics(cfg, validation, evidence, result))
        mlflow.log_dict(_details(evidence, flags, result, prior), "decision.json")
        if evidence.drift.get("report"):
            mlflow.log_artifact(evidence.drift["report"], "evidently")
        if validation.get("gx_result"):
            mlflow.log_artifact(validation["gx_result"], "gx")
    sha, decision = claim["sha256"], result.decision
    rerun = existing is not None and not store.head_missed(cfg.name, run.info.run_id, sha, first_from)
    store.advance_head(cfg.name, run.info.run_id, sha, prior[2], decision.retrain, rerun)
    log.info(
        "decision for %s: %s %s%s",
        claim["batch"],
        decision.verdict,
        json.dumps(decision.reasons),
        f" (suppressed: {decision.suppressed_by})" if decision.suppressed_by else "",
    )
    return {
        **decision.to_dict(),
        "verdict": decision.verdict,
        "mlflow_run_id": run.info.run_id,
        "batch": claim["batch"],
        "batch_sha256": claim["sha256"],
    }
