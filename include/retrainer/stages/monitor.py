"""The trigger path, one function per monitor task: claim, gate, score, signals, decide, archive.

Each function takes the model config plus small JSON (what the previous task returned) and returns small
JSON, so Airflow's XCom carries paths and numbers, never frames or models. Every function is safe to run
twice for the same batch: results are keyed by the batch's name and content hash. Each loads what it
needs, calls the pure functions of the modules beside this one, and records what they found:
:mod:`~retrainer.stages.batches` (the claimed batch, its champion, the reference data),
:mod:`~retrainer.stages.gate` (the quality gate and quarantine), :mod:`~retrainer.stages.scoring`
(predictions, drift, the estimated metric), :mod:`~retrainer.stages.signals` (performance and flags),
:mod:`~retrainer.stages.assess` (evidence to decision, shared with ``retrainer check``) and
:mod:`~retrainer.stages.decisions` (the decision log).

A run works on the one file it claimed (found through the claim, never by looking in ``landing/`` again)
and with the one champion version it resolved when it claimed the batch (``claim["notes"]``), so a
promotion during the run does not mix two models in one decision. The order is claim -> gate -> score ->
signals -> decide -> archive -> request a retrain, so the batch that fires a retrain is in the archive the
retrain snapshots.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from retrainer.exceptions import BatchError, DataValidationError
from retrainer.ml.train import labelled
from retrainer.stages import feeds, gate, scoring, signals
from retrainer.stages.assess import Evidence, assess
from retrainer.stages.batches import (
    batch_file,
    claimed_recently,
    labelled_evidence,
    load_batch,
    reference_predictions,
    root,
    run_champion,
    scored_frame,
    scoring_config,
    stored_predictions,
    unscorable,
)
from retrainer.stages.decisions import load_policy_state, record
from retrainer.storage import batch_columns, write_parquet
from retrainer.tracking import registry
from retrainer.tracking.artifacts import load_run_model

if TYPE_CHECKING:
    from collections.abc import Callable

    from retrainer.config import ModelConfig
    from retrainer.storage import Claim

log = logging.getLogger(__name__)

__all__ = [
    "archive_batch",
    "claim_batch",
    "claimed_recently",
    "decide",
    "flagged_rate",
    "ingest_feeds",
    "labelled_evidence",
    "measure_drift",
    "performance",
    "root",
    "score_batch",
    "scoring_config",
    "stuck",
    "unscorable",
    "validate_batch",
]


# -- 1. claim -----------------------------------------------------------------------------------------
def claim_batch(
    cfg: ModelConfig, run_id: str, owner_alive: Callable[[Claim], bool] | None = None
) -> dict[str, Any] | None:
    """Claim a batch for this run (the same run always gets the same batch back): a batch a dead run left
    in processing first, then the oldest delivered one. Files that can never be batches are quarantined
    and get a decision record. The run's champion version is resolved here, once, for every task.
    ``owner_alive`` says whether the run holding a batch in processing still runs (default: whether it
    claimed it recently, :func:`claimed_recently`)."""
    dr = root(cfg)
    claim = dr.claim(run_id, owner_alive=owner_alive)
    gate.record_quarantines(cfg)
    if claim is None:
        return None
    if "champion_version" not in claim.notes:
        champ = registry.champion(cfg.name)
        claim = dr.annotate(claim, champion_version=champ.version if champ else None)
    log.info(
        "run %s claimed batch %s (sha256 %s, attempt %d, champion v%s)",
        run_id,
        claim.batch,
        claim.sha256[:12],
        claim.attempt,
        claim.notes.get("champion_version"),
    )
    return claim.to_dict()


# -- 2. quality gate ------------------------------------------------------------------------------------
def validate_batch(cfg: ModelConfig, claim: dict[str, Any], run_id: str = "") -> dict[str, Any]:
    """Gate the batch with GX against the champion's reference; quarantine and raise on failure.

    A re-run after the batch was archived validates the archived file again and never moves it (training
    data stays in archive, and a file is not a duplicate of itself)."""
    dr = root(cfg)
    batch = claim["batch"]
    stage, path = dr.path_of(claim)
    if stage == "quarantine":  # a retry of a task that already quarantined this batch
        reason = dr.quarantine_reason(path.name) or {}
        raise DataValidationError(reason.get("message", f"{batch} was quarantined"), reason.get("failures"))
    try:
        df, result = gate.gate_claimed(cfg, claim, path)
    except (DataValidationError, BatchError) as exc:
        raise gate.reject(cfg, claim, stage, exc, run_id) from exc
    labelled_rows = int(df[cfg.data.target].notna().sum()) if cfg.data.target in df else 0
    known = {cfg.data.time_column, cfg.data.target, cfg.data.id_column, *cfg.data.feature_names}
    known.update(scoring_config(cfg, run_champion(cfg, claim)).data.feature_names)
    extra = sorted(str(c) for c in batch_columns(path) if c not in known)
    typed = dr.typed_copy(claim["sha256"])
    # a CSV batch as validated, typed, in Parquet: later tasks read only the columns they need from it
    # and the CSV is parsed once. A Parquet batch is already columnar and typed: tasks read it directly
    # (each prepares what it reads, as the gate did), so it is not copied.
    if path.suffix == ".csv" and not typed.exists():
        write_parquet(typed, df)
    if extra:  # accepted: the model reads only its configured columns
        log.warning("%s: extra column(s) %s ignored (not in the config)", batch, extra)
    return {
        "batch": batch,
        "rows": len(df),
        "extra_columns": extra,
        "labelled_rows": labelled_rows,
        "gx_result": result["result_path"],
        "gx_docs": result["docs"],
    }


# -- 3. score ---------------------------------------------------------------------------------------
def score_batch(cfg: ModelConfig, claim: dict[str, Any]) -> dict[str, Any]:
    """Predict the batch with the champion, chunk by chunk; predictions saved under ``predictions/<model>/``.

    Only the time column and the features are read, :data:`retrainer.storage.CHUNK_ROWS` rows at a time,
    so memory grows with the number of columns and the chunk size, not with the batch's rows.
    """

    champ = run_champion(cfg, claim)
    if champ is None:
        log.warning("model %s has no champion yet: nothing to score with", cfg.name)
        return {"champion_version": None, "predictions": None}
    path = batch_file(cfg, claim)
    why = unscorable(cfg, champ, batch_columns(path), f"batch {claim['batch']}")
    if why is not None:  # not the batch's fault: it passed the gate of the current config
        log.warning("%s", why)
        return {"champion_version": champ.version, "predictions": None, "unscorable": why}
    # class probabilities are kept beside the predictions when the decision estimates the metric (CBPE)
    out = scoring.predict_file(
        scoring_config(cfg, champ),
        load_run_model(champ.run_id, cfg),
        path,
        proba=cfg.triggers.estimation is not None,
    )
    path = write_parquet(root(cfg).batch_predictions(claim["batch"], champ.version), out)
    log.info("scored %d rows of %s with champion v%s", len(out), claim["batch"], champ.version)
    return {"champion_version": champ.version, "predictions": str(path)}


# -- 4. signals -------------------------------------------------------------------------------------
def measure_drift(cfg: ModelConfig, claim: dict[str, Any], scored: dict[str, Any]) -> dict[str, Any]:
    """Evidently data and prediction drift of the batch against the champion's training snapshot.

    Both sides are sampled to ``triggers.report_max_rows`` rows; ``sampled`` in the result says how many.
    """
    champ = run_champion(cfg, claim)
    if champ is None or scored.get("predictions") is None:
        return {"data_drift_share": None, "prediction_drift": None, "drifted_columns": [], "report": None}
    html = root(cfg).evidently_report(claim["batch"])
    out = scoring.drift_of(  # over the features the champion reads (its reference has no others)
        scoring_config(cfg, champ),
        reference_predictions(cfg, champ),
        batch_file(cfg, claim),
        stored_predictions(scored),
        html,
    )
    return {**out, "champion_version": champ.version}


def ingest_feeds(cfg: ModelConfig, claim: dict[str, Any]) -> dict[str, Any]:
    """Take in the labels and flags files that landed since the last run (``landing/<model>/labels/``,
    ``.../flags/``) before the performance and flag signals are computed. A no-op without files."""

    return feeds.ingest(cfg, by=f"monitor:{claim['sha256']}")


def performance(cfg: ModelConfig, claim: dict[str, Any], scored: dict[str, Any]) -> dict[str, Any]:
    """The champion's metric on the labels that arrived by now, against its own holdout metric.

    Without ``data.id_column``: the batch's own labelled rows. With it, also the labels feed: labels that
    arrived late for earlier batches score those batches' stored predictions (recorded per batch with how
    late they came), and labels delivered before their batch score it when it arrives."""

    champ = run_champion(cfg, claim)
    if champ is None or scored.get("predictions") is None:
        return {"metric": cfg.metric, "value": None, "reference": None, "labelled_rows": 0}
    version = scored.get("champion_version", champ.version)
    cols = [cfg.data.time_column, cfg.data.target, *([cfg.data.id_column] if cfg.data.id_column else [])]
    df = scored_frame(cfg, claim, scored, cols)
    extra: dict[str, Any] = {}
    if cfg.data.id_column and cfg.data.id_column in df:
        matured, extra = feeds.label_step(cfg, claim, df, version)
    else:
        matured = signals.own_labels(cfg, claim["batch"], version, labelled(cfg, df))
    perf, _ = signals.performance_of(cfg, matured, version, champ.metrics.get(cfg.metric))
    out = {**perf, **extra}
    log.info(
        "performance on %d labelled rows (%d late): %s (champion holdout %s)",
        out["labelled_rows"],
        out.get("late_labelled_rows", 0),
        out["all"],
        out["reference"],
    )
    return out


def flagged_rate(cfg: ModelConfig, claim: dict[str, Any], validation: dict[str, Any]) -> dict[str, Any]:
    """Share of the batch's predictions that people flagged: the sidecar ``<batch>.flags.csv`` and, with
    ``data.id_column``, the flags feed (late flags count towards the batch they refer to).

    Only the batch's own rows count: sidecar rows or ids the batch does not have are ignored (and counted
    under ``sidecar_unknown``). A sidecar that cannot be used (empty, unreadable, no ``row`` or id column)
    is quarantined with its reason and the batch's own flagged rate is not counted (None); a retry finds
    the quarantined sidecar's reason and gives the same answer."""

    dr = root(cfg)
    _, path = dr.path_of(claim)
    flags_file = dr.flags_path(path)
    id_col = cfg.data.id_column
    bad = dr.quarantined_sidecar(path, claim["sha256"])  # a retry after the sidecar was quarantined
    flags, key = None, None
    if bad is None:
        try:
            flags, key = signals.read_flags(cfg, flags_file)
        except BatchError as exc:
            message = f"flags sidecar {flags_file.name} of batch {claim['batch']} rejected: {exc}"
            bad = dr.quarantine_sidecar(path, claim["sha256"], message)
            log.error(
                "%s; quarantined at %s; the batch's flagged rate is not counted",
                message,
                bad["quarantined_as"],
            )
    sidecar: dict[str, Any] = {"flags_file": str(flags_file) if flags is not None else None}
    if bad is not None:
        sidecar["flags_sidecar_quarantined"] = {"file": bad["quarantined_as"], "message": bad["message"]}
    if id_col:
        current = load_batch(cfg, claim, [cfg.data.time_column, id_col])
        if id_col in current:
            ids = feeds.normalise_ids(current[id_col])
            rows, unknown = signals.sidecar_rows(flags, key, ids)
            out = feeds.flag_step(cfg, claim, current, {ids[r] for r in rows}, count_batch=bad is None)
            return {**out, **sidecar, "sidecar_unknown": unknown}
    if flags is None:
        return {"flagged_rate": None, "flagged": 0, **sidecar}
    n_rows = int(validation.get("rows", 0))
    rows, unknown = signals.sidecar_rows(flags, key, None, n_rows)
    return {
        "flagged_rate": len(rows) / max(n_rows, 1),
        "flagged": len(rows),
        **sidecar,
        "sidecar_unknown": unknown,
    }


# -- 5. decide ------------------------------------------------------------------------------------
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
    """Apply the policy to what the signal tasks found and record the decision (fired or not) as an
    MLflow run: the evidence (with the estimated metric and the change detector's errors), the state after
    the newest earlier decision, :func:`~retrainer.stages.assess.assess`, the decision log."""
    evidence = Evidence(
        drift=drift_result,
        performance=perf,
        flagged_rate=flags.get("flagged_rate"),
        champion_version=scored.get("champion_version"),
        unscorable=scored.get("unscorable"),
        estimate=scoring.estimate(cfg, claim, scored),
        errors=signals.step_errors(cfg, claim, scored),
    )
    prior = load_policy_state(cfg, exclude_sha=claim["sha256"])
    return record(cfg, claim, run_id, validation, flags, evidence, assess(cfg, evidence, prior[0]), prior)


# -- 6. archive -------------------------------------------------------------------------------------
def archive_batch(cfg: ModelConfig, claim: dict[str, Any]) -> dict[str, Any]:
    """Move the claimed batch into ``archive/<model>/`` (a no-op if it is already there)."""
    dr = root(cfg)
    dest = dr.archive_claim(claim)
    typed = dr.typed_copy(claim["sha256"]) if claim.get("sha256") else None
    # the archive index learns the batch's time range now (from the typed copy: one column), so no
    # retrain has to open the file to find out whether it falls in its window
    dr.index_archived(
        dest,
        cfg.data.time_column,
        typed if typed is not None and typed.exists() else None,
        rows_hash=dr.claim_notes(claim).get("rows_sha256"),  # what the gate hashed: re-exports are caught
    )
    return {"archived": str(dest)}


def stuck(cfg: ModelConfig) -> list[dict[str, Any]]:
    """Batches in processing longer than ``RETRAINER_STUCK_AFTER_MINUTES``: {batch, since, claimed_by}."""
    return root(cfg).stuck()
