"""The trigger path, one function per monitor task: claim, gate, score, signals, decide, archive.

Each function takes the model config plus small JSON (what the previous task returned) and returns small
JSON, so Airflow's XCom carries paths and numbers, never frames or models. Every function is safe to run
twice for the same batch: results are keyed by the batch's name and content hash.

A run works on the one file it claimed (found through the claim, never by looking in ``landing/`` again)
and with the one champion version it resolved when it claimed the batch (``claim["notes"]``), so a
promotion during the run does not mix two models in one decision. The order is claim -> gate -> score ->
signals -> decide -> archive -> request a retrain, so the batch that fires a retrain is in the archive the
retrain snapshots.
"""

from __future__ import annotations

import contextlib
import json
import logging
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from retrainer import policy, settings
from retrainer.config import duration_hours
from retrainer.exceptions import BatchError, DataValidationError, PolicyStateError, RetrainerError
from retrainer.gates import quality
from retrainer.gates.drift import drift_report, drift_signals
from retrainer.ml import metrics
from retrainer.ml.estimation import CBPE, fit_estimator
from retrainer.ml.train import labelled, predict, predict_with_proba, prepare, split_holdout, thread_cap
from retrainer.stages import feeds
from retrainer.storage import (
    Claim,
    DataRoot,
    batch_columns,
    batch_stem,
    has_offset,
    iter_chunks,
    mixed_offsets_message,
    read_batch,
    read_columns,
    rows_sha256,
    sha256_file,
    write_json,
    write_parquet,
)
from retrainer.storage.snapshots import load_snapshot
from retrainer.tracking import registry
from retrainer.tracking import runs as tracking
from retrainer.tracking.artifacts import load_run_model, missing_features, model_config

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    import pandas as pd

    from retrainer.config import ModelConfig

log = logging.getLogger(__name__)
STATE_ARTIFACT = "policy_state.json"
HEAD_TAG = f"{tracking.TAG}policy_head"  # monitor experiment tag: the newest decision (constant-time read)


def root(cfg: ModelConfig) -> DataRoot:
    return DataRoot(settings.data_root(), cfg.name)


# -- 1. claim -----------------------------------------------------------------------------------------
def claim_batch(
    cfg: ModelConfig, run_id: str, owner_alive: Callable[[Claim], bool] | None = None
) -> dict[str, Any] | None:
    """Claim a batch for this run (the same run always gets the same batch back): a batch a dead run left
    in processing first, then the oldest delivered one. Files that can never be batches are quarantined
    and get a decision record. The run's champion version is resolved here, once, for every task."""
    dr = root(cfg)
    claim = dr.claim(run_id, owner_alive=owner_alive)
    record_quarantines(cfg)
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


def _champion(cfg: ModelConfig, claim: dict[str, Any]) -> registry.RegisteredVersion | None:
    """The champion this run resolved at claim time (resolved and recorded now for an older claim)."""
    notes = claim.get("notes") or {}
    if "champion_version" not in notes:
        champ = registry.champion(cfg.name)
        if claim.get("run_id"):
            root(cfg).annotate(claim, champion_version=champ.version if champ else None)
        return champ
    version = notes["champion_version"]
    return None if version is None else registry.get_version(cfg.name, int(version))


def _columns(cfg: ModelConfig, champ: registry.RegisteredVersion | None = None) -> list[str]:
    """The batch columns the monitor uses: time, features, target, and the id column if configured; with
    ``champ``, also the features the champion was trained on (it is scored with those)."""
    extra = [cfg.data.id_column] if cfg.data.id_column else []
    trained = scoring_config(cfg, champ).data.feature_names if champ is not None else []
    return list(
        dict.fromkeys([cfg.data.time_column, *cfg.data.feature_names, cfg.data.target, *extra, *trained])
    )


def scoring_config(cfg: ModelConfig, champ: registry.RegisteredVersion | None) -> ModelConfig:
    """``cfg`` with the feature list ``champ`` was trained on: what it predicts with (schema evolution:
    a feature added to or removed from the config takes effect at the next retrain)."""

    return cfg if champ is None else model_config(cfg, champ.run_id)


def unscorable(
    cfg: ModelConfig, champ: registry.RegisteredVersion, columns: list[str], what: str
) -> str | None:
    """Why ``champ`` cannot score ``what`` (a batch or a holdout with ``columns``): the features it was
    trained on that are missing; None when it can."""

    missing = missing_features(cfg, champ.run_id, columns)
    if not missing:
        return None
    return (
        f"champion v{champ.version} cannot score {what}: it was trained on feature(s) {missing} that "
        "are not there (removed from data.features?); the next retrain replaces it with a model of the "
        "configured features"
    )


def _batch_file(cfg: ModelConfig, claim: dict[str, Any]) -> Path:
    """What a task reads for a claimed batch: the typed Parquet copy the gate wrote for a CSV batch (the
    CSV is parsed once, by the gate), or the delivered file (a Parquet batch, or an older claim)."""
    typed = root(cfg).typed_copy(claim["sha256"])
    if typed.exists():
        return typed
    return root(cfg).path_of(claim)[1]


def _load(cfg: ModelConfig, claim: dict[str, Any], columns: list[str] | None = None) -> pd.DataFrame:
    """The claimed batch, prepared; only ``columns`` (those it has) when given."""

    path = _batch_file(cfg, claim)
    return prepare(cfg, read_batch(path) if columns is None else read_columns(path, columns))


def _predictions(scored: dict[str, Any]) -> Any:
    """The champion's predictions of the batch, in row order (what :func:`score_batch` stored)."""
    import pandas as pd

    return pd.read_parquet(scored["predictions"], columns=["prediction"])["prediction"].to_numpy()


def _scored_frame(
    cfg: ModelConfig, claim: dict[str, Any], scored: dict[str, Any] | None, columns: list[str] | None
) -> pd.DataFrame:
    """The claimed batch (``columns`` of it when given) with what :func:`score_batch` stored when ``scored``
    is given: the champion's predictions (``prediction``) and any class probabilities (``proba:<class>``)."""
    import pandas as pd

    df = _load(cfg, claim, columns)
    if scored is not None:
        stored = pd.read_parquet(scored["predictions"])
        for col in ["prediction", *feeds.proba_columns(stored)]:
            df[col] = stored[col].to_numpy()
    return df


def labelled_batch(
    cfg: ModelConfig,
    claim: dict[str, Any],
    scored: dict[str, Any] | None = None,
    columns: list[str] | None = None,
) -> pd.DataFrame:
    """The claimed batch's rows whose label came with it, with the champion's predictions (column
    ``prediction``) when ``scored`` is given: what every per-batch score (performance, change detector,
    shadow, rollback watch) is computed on."""

    return labelled(cfg, _scored_frame(cfg, claim, scored, columns))


def labelled_evidence(cfg: ModelConfig, claim: dict[str, Any], earlier: list[str]) -> pd.DataFrame:
    """The rows of the claimed batch and of the archived batches named in ``earlier`` whose label has
    arrived by now, in the batch itself or through the labels feed (a later delivery corrects an earlier
    one, as in training), with every column the models need: what the rollback watch and the shadow
    comparison score both models on. A batch no longer in the archive gives no rows."""
    import pandas as pd

    labels = feeds.latest_labels(cfg) if cfg.data.id_column else None
    frames = [labelled(cfg, feeds.apply_labels(cfg, _load(cfg, claim, _columns(cfg)), labels))]
    dr = root(cfg)
    for batch in dict.fromkeys(earlier):
        if batch == claim["batch"]:
            continue
        try:
            stage, path = dr.locate(batch)
        except BatchError:  # collected by retention since: nothing to score
            continue
        if stage == "archive":
            df = prepare(cfg, read_columns(path, _columns(cfg)))
            frames.append(labelled(cfg, feeds.apply_labels(cfg, df, labels)))
    return pd.concat(frames, ignore_index=True)


def _read_rows(cfg: ModelConfig, path: Path, columns: list[str], positions: Any) -> pd.DataFrame:
    """Rows at ``positions`` (in that order) of a batch file's ``columns``, streamed in chunks."""
    import numpy as np
    import pandas as pd

    order = np.argsort(positions, kind="stable")
    wanted = np.asarray(positions)[order]
    parts, start = [], 0
    for chunk in iter_chunks(path, columns):
        lo, hi = np.searchsorted(wanted, [start, start + len(chunk)])
        if hi > lo:
            parts.append(chunk.iloc[wanted[lo:hi] - start])
        start += len(chunk)
    picked = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=columns)
    back = np.empty_like(order)
    back[order] = np.arange(len(order))
    return prepare(cfg, picked.iloc[back].reset_index(drop=True))


def record_quarantines(cfg: ModelConfig) -> list[str]:
    """One decision record (MLflow monitor run, verdict ``quarantined``) per quarantined file that has
    none yet; returns the MLflow run ids written."""
    dr = root(cfg)
    out = []
    for reason_file in dr.unrecorded_quarantines():
        try:
            reason = json.loads(reason_file.read_text())
        except (OSError, ValueError):
            continue
        name = reason_file.name.removesuffix(".reason.json")
        existing = tracking.find_runs(
            cfg.name, "monitor", f"tags.`{tracking.TAG}quarantine_file` = '{name}'", max_results=1
        )
        run_id = (
            existing[0].info.run_id
            if existing
            else _log_quarantine(
                cfg,
                {"batch": name, "sha256": reason.get("batch_sha256", "")},
                str(reason.get("message") or reason.get("reason") or "quarantined"),
                reason.get("failures") or [],
                None,
                str(reason.get("run_id", "")),
            )
        )
        reason["decision_run"] = run_id
        write_json(reason_file, reason)
        dr.mark_recorded(reason_file)
        out.append(run_id)
    return out


# -- 2. quality gate ------------------------------------------------------------------------------------
def max_future(cfg: ModelConfig) -> timedelta:

    return timedelta(hours=duration_hours(cfg.data.max_future))


def check_time_column(cfg: ModelConfig, df: pd.DataFrame, file: str) -> None:
    """Times must parse, carry a UTC offset on every row or on none (the time rule,
    :func:`~retrainer.storage.to_utc_naive`: offsets are converted to UTC), and not lie further ahead than
    ``data.max_future``: raise :class:`DataValidationError` naming the file, the column and example
    values otherwise."""
    import pandas as pd

    col = cfg.data.time_column
    if col not in df:
        return  # the GX gate names the missing column
    raw = df[col]
    parsed = pd.to_datetime(raw, errors="coerce", utc=True, format="mixed")
    bad = parsed.isna() & raw.notna()
    if bad.any():
        examples = [str(v) for v in raw[bad].head(3)]
        raise DataValidationError(
            f"{file}: column '{col}': {int(bad.sum())} value(s) cannot be parsed as times, e.g. {examples}",
            [
                {
                    "expectation": "time_parseable",
                    "column": col,
                    "kwargs": {},
                    "unexpected_count": int(bad.sum()),
                    "partial_unexpected_list": examples,
                }
            ],
        )
    offset = has_offset(raw)
    if offset is not None and offset[raw.notna()].nunique() > 1:  # the time rule cannot order them
        mixed = raw.notna() & ~offset
        examples = [str(v) for v in raw[raw.notna() & offset].head(2)] + [str(v) for v in raw[mixed].head(2)]
        raise DataValidationError(
            f"{file}: column '{col}': {mixed_offsets_message(raw, offset)}",
            [
                {
                    "expectation": "time_offsets_consistent",
                    "column": col,
                    "kwargs": {},
                    "unexpected_count": int(min(mixed.sum(), (raw.notna() & offset).sum())),
                    "partial_unexpected_list": examples,
                }
            ],
        )
    limit = pd.Timestamp(datetime.now(UTC) + max_future(cfg))
    ahead = parsed > limit
    if ahead.any():
        examples = [str(v) for v in raw[ahead].head(3)]
        raise DataValidationError(
            f"{file}: column '{col}': {int(ahead.sum())} value(s) lie in the future, beyond now + "
            f"data.max_future={cfg.data.max_future} (latest {parsed.max()}), e.g. {examples}",
            [
                {
                    "expectation": "time_not_in_future",
                    "column": col,
                    "kwargs": {"max_future": cfg.data.max_future},
                    "unexpected_count": int(ahead.sum()),
                    "partial_unexpected_list": examples,
                }
            ],
        )
    check_time_span(cfg, parsed, file)


def max_batch_span(cfg: ModelConfig) -> str:
    """``data.max_batch_span``, or the training window when it is not set."""
    return cfg.data.max_batch_span or cfg.training.window


def check_time_span(cfg: ModelConfig, times: pd.Series, file: str) -> None:
    """The batch's rows must not span more than :func:`max_batch_span`: raise
    :class:`DataValidationError` naming the oldest and newest times otherwise."""
    import pandas as pd

    first, last = times.min(), times.max()
    if pd.isna(first) or last - first <= timedelta(hours=duration_hours(max_batch_span(cfg))):
        return
    examples = [str(first), str(last)]
    raise DataValidationError(
        f"{file}: column '{cfg.data.time_column}': rows span {last - first} (from {first} to {last}), "
        f"more than data.max_batch_span={max_batch_span(cfg)}: a row stamped that far from the rest would "
        "anchor the next training window and leave the rest of the archive outside it",
        [
            {
                "expectation": "time_span_at_most",
                "column": cfg.data.time_column,
                "kwargs": {"max_batch_span": max_batch_span(cfg)},
                "unexpected_count": 1,
                "partial_unexpected_list": examples,
            }
        ],
    )


def check_ids_unused(cfg: ModelConfig, df: pd.DataFrame, file: str, path: Path) -> None:
    """With ``data.id_column``, a batch's ids must not be in the archive already (labels and flags join on
    them, so a reused id would relabel another batch's row): raise :class:`DataValidationError` naming
    the batches that hold them and some of the ids otherwise. ``path`` (the batch itself once archived)
    does not count."""

    id_col = cfg.data.id_column
    if not id_col or id_col not in df:
        return  # no ids, or the GX gate names the missing column
    index = feeds.id_index(cfg, root(cfg))
    index = index[index["batch"] != path.name]
    ids = set(feeds.normalise_ids(df[id_col].dropna()))
    reused = index[index[feeds.ID].isin(ids)]
    if reused.empty:
        return
    examples = sorted(set(reused[feeds.ID]))[:5]
    holders = sorted(set(reused["batch"]))
    n = reused[feeds.ID].nunique()
    raise DataValidationError(
        f"{file}: column '{id_col}': {n} of {len(ids)} id(s) are already used by archived batch(es) "
        f"{holders[:5]}{' ...' if len(holders) > 5 else ''}, e.g. {examples}: ids must be unique across "
        "the model's archive (labels and flags are joined on them)",
        [
            {
                "expectation": "ids_unique_across_archive",
                "column": id_col,
                "kwargs": {"archived_batches": holders[:20]},
                "unexpected_count": n,
                "partial_unexpected_list": examples,
            }
        ],
    )


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
    docs_dir = dr.gx_dir(batch_stem(batch))
    try:
        duplicate = dr.archived_with_hash(claim["sha256"], path.stat().st_size, exclude=path)
        if duplicate is not None:  # a re-delivery would count its rows twice in every training window
            raise BatchError(
                f"duplicate delivery: identical content was already processed as {duplicate.name}"
            )
        # the columns the gate checks, the target and the id; the rest is not read
        champ = _champion(cfg, claim)
        # the configured columns, and those the champion was trained on (the typed copy keeps them)
        df = read_columns(path, _columns(cfg, champ))
        check_time_column(cfg, df, batch)
        reference = _reference_frame(cfg, champ)

        # leave the frame as read if it cannot be prepared: GX names the missing or mistyped column
        prepared = False
        with contextlib.suppress(KeyError, ValueError, TypeError):
            df, prepared = prepare(cfg, df), True
        if prepared:
            rows_hash = rows_sha256(df)
            copy = dr.archived_with_rows(rows_hash, exclude=path)
            if copy is not None:  # a re-export (other bytes, same rows) would count its rows twice too
                raise BatchError(
                    f"duplicate delivery: the same rows were already processed as {copy} (a re-export: "
                    "other bytes, same rows)"
                )
            dr.annotate(claim, rows_sha256=rows_hash)  # archive_batch records it in the archive index
        check_ids_unused(cfg, df, batch, path)
        result = quality.validate(
            df,
            quality.build_expectations(cfg, reference),
            name=f"{cfg.name}_{batch_stem(batch)}",
            docs_dir=docs_dir,
        )
    except (DataValidationError, BatchError) as exc:
        failures = getattr(exc, "failures", [])
        message = f"batch {batch} of model {cfg.name} rejected: {exc}"
        if stage == "archive":  # a re-run: the batch passed once and is training data now
            raise DataValidationError(
                message + " (already archived: left in place)", failures, getattr(exc, "report", None)
            ) from exc
        dest = dr.quarantine_claim(
            claim,
            {
                "message": message,
                "failures": failures,
                "run_id": run_id,
                "gx_result": getattr(exc, "report", None),
            },
        )
        record_quarantines(cfg)
        log.error("%s\nquarantined at %s", message, dest)
        raise DataValidationError(message, failures, getattr(exc, "report", None)) from exc
    labelled = int(df[cfg.data.target].notna().sum()) if cfg.data.target in df else 0
    known = {cfg.data.time_column, cfg.data.target, cfg.data.id_column, *cfg.data.feature_names}
    known.update(scoring_config(cfg, _champion(cfg, claim)).data.feature_names)
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
        "labelled_rows": labelled,
        "gx_result": result["result_path"],
        "gx_docs": result["docs"],
    }


def _log_quarantine(
    cfg: ModelConfig, claim: dict[str, Any], message: str, failures: list[Any], docs_dir: Any, run_id: str
) -> str:
    import mlflow

    tracking.client()
    with mlflow.start_run(
        experiment_id=tracking.experiment_id(cfg.name, "monitor"), run_name=claim["batch"]
    ) as run:
        mlflow.set_tags(
            tracking.flat_tags(
                {
                    "kind": "monitor",
                    "batch": claim["batch"],
                    "batch_sha256": claim.get("sha256") or None,
                    "quarantine_file": claim["batch"],
                    "verdict": "quarantined",
                    "reasons": [message[:4000]],
                    "dag_run_id": run_id,
                }
            )
        )
        mlflow.log_dict({"failures": failures, "message": message}, "gx_failures.json")
        if docs_dir is not None and docs_dir.exists():
            mlflow.log_artifacts(str(docs_dir), "gx")
    return run.info.run_id


# -- reference data -----------------------------------------------------------------------------------
def _reference_frame(cfg: ModelConfig, champ: registry.RegisteredVersion | None) -> pd.DataFrame | None:
    """The champion's training snapshot (hash-verified), or None before the first champion."""

    if champ is None or not champ.snapshot_sha256:
        return None
    return load_snapshot(root(cfg).snapshots, champ.snapshot_sha256)


def _reference_predictions(cfg: ModelConfig, champ: registry.RegisteredVersion) -> pd.DataFrame:
    """Reference frame plus the champion's predictions on it (cached per champion version)."""
    import pandas as pd

    dr = root(cfg)
    cache = dr.reference_predictions(champ.version)
    if cache.exists():
        try:
            return pd.read_parquet(cache)
        except Exception as exc:  # pyarrow raises many types for a damaged file; it is derived: rebuild
            log.warning(
                "reference predictions %s cannot be read (%s: %s): rebuilding", cache, type(exc).__name__, exc
            )
    ref = _reference_frame(cfg, champ)
    if ref is None:
        raise RetrainerError(f"champion v{champ.version} of {cfg.name} has no snapshot to use as reference")
    ref = ref.copy()
    ref["prediction"] = predict(scoring_config(cfg, champ), load_run_model(champ.run_id, cfg), ref)
    write_parquet(cache, ref)
    return ref


# -- 3. score ---------------------------------------------------------------------------------------
def score_batch(cfg: ModelConfig, claim: dict[str, Any]) -> dict[str, Any]:
    """Predict the batch with the champion, chunk by chunk; predictions saved under ``predictions/<model>/``.

    Only the time column and the features are read, :data:`retrainer.storage.CHUNK_ROWS` rows at a time,
    so memory grows with the number of columns and the chunk size, not with the batch's rows.
    """

    champ = _champion(cfg, claim)
    if champ is None:
        log.warning("model %s has no champion yet: nothing to score with", cfg.name)
        return {"champion_version": None, "predictions": None}
    path = _batch_file(cfg, claim)
    why = unscorable(cfg, champ, batch_columns(path), f"batch {claim['batch']}")
    if why is not None:  # not the batch's fault: it passed the gate of the current config
        log.warning("%s", why)
        return {"champion_version": champ.version, "predictions": None, "unscorable": why}
    # class probabilities are kept beside the predictions when the decision estimates the metric (CBPE)
    out = _predict_file(
        scoring_config(cfg, champ),
        load_run_model(champ.run_id, cfg),
        path,
        proba=cfg.triggers.estimation is not None,
    )
    path = write_parquet(root(cfg).batch_predictions(claim["batch"], champ.version), out)
    log.info("scored %d rows of %s with champion v%s", len(out), claim["batch"], champ.version)
    return {"champion_version": champ.version, "predictions": str(path)}


def _predict_file(cfg: ModelConfig, model: Any, path: Path, proba: bool = False) -> pd.DataFrame:
    """Time column and predictions of a batch file (and, with ``proba``, the classifier's probabilities
    as ``proba:<class>``), predicted :data:`~retrainer.storage.CHUNK_ROWS` rows at a time."""
    import numpy as np
    import pandas as pd

    # class probabilities are stored beside the predictions, one column per class (``proba:<class>``),
    # when the decision estimates the metric (CBPE) or a probability metric is the watched one (the labels
    # that arrive later are scored with them)
    proba = proba or cfg.trigger_metric in metrics.PROBABILITY_METRICS
    classes = [str(c) for c in getattr(model, "classes_", [])] if proba else []
    times, preds, probas = [], [], []
    for chunk in iter_chunks(path, [cfg.data.time_column, *cfg.data.feature_names]):
        chunk = prepare(cfg, chunk)
        times.append(chunk[cfg.data.time_column].to_numpy())
        if proba and classes:
            pred, p = predict_with_proba(cfg, model, chunk)
            if p is not None:
                probas.append(np.asarray(p, dtype=float))
        else:
            pred = predict(cfg, model, chunk)
        preds.append(np.asarray(pred))
    out = pd.DataFrame(
        {
            cfg.data.time_column: np.concatenate(times) if times else np.array([], "datetime64[ns]"),
            "prediction": np.concatenate(preds) if preds else np.array([]),
        }
    )
    if probas and len(probas) == len(preds):
        stacked = np.concatenate(probas)
        for j, c in enumerate(classes):
            out[f"{feeds.PROBA}{c}"] = stacked[:, j]
    return out


# -- 4. signals -------------------------------------------------------------------------------------
def measure_drift(cfg: ModelConfig, claim: dict[str, Any], scored: dict[str, Any]) -> dict[str, Any]:
    """Evidently data and prediction drift of the batch against the champion's training snapshot.

    Both sides are sampled to ``triggers.report_max_rows`` rows; ``sampled`` in the result says how many.
    """
    champ = _champion(cfg, claim)
    if champ is None or scored.get("predictions") is None:
        return {"data_drift_share": None, "prediction_drift": None, "drifted_columns": [], "report": None}
    html = root(cfg).evidently_report(claim["batch"])
    out = _drift_of(  # over the features the champion reads (its reference has no others)
        scoring_config(cfg, champ),
        _reference_predictions(cfg, champ),
        _batch_file(cfg, claim),
        _predictions(scored),
        html,
    )
    return {**out, "champion_version": champ.version}


def _drift_of(
    cfg: ModelConfig, ref: pd.DataFrame, path: Path, predictions: Any, html: Path | None
) -> dict[str, Any]:
    """Drift of a batch file (with its predictions) against the reference, on sampled rows."""
    import numpy as np

    # the same rows drift_report would sample (pandas' seeded DataFrame.sample), read without loading
    # the rest of the batch: the report's cost and memory stay at report_max_rows whatever the batch size
    total, n = len(predictions), cfg.triggers.report_max_rows
    positions = np.random.RandomState(0).choice(total, n, replace=False) if total > n else np.arange(total)
    cur = _read_rows(cfg, path, [cfg.data.time_column, *cfg.data.feature_names], positions)
    cur["prediction"] = np.asarray(predictions)[positions]
    out = drift_report(cfg, ref, cur, html_path=html) if html is not None else drift_signals(cfg, ref, cur)
    out["sampled"] = (
        f"{out.get('current_rows', len(cur))} of {total} batch rows, "
        f"{out.get('reference_rows', len(ref))} of {len(ref)} reference rows (seeded random sample)"
    )
    return out


def ingest_feeds(cfg: ModelConfig, claim: dict[str, Any]) -> dict[str, Any]:
    """Take in the labels and flags files that landed since the last run (``landing/<model>/labels/``,
    ``.../flags/``) before the performance and flag signals are computed. A no-op without files."""

    return feeds.ingest(cfg, by=f"monitor:{claim['sha256']}")


def performance(cfg: ModelConfig, claim: dict[str, Any], scored: dict[str, Any]) -> dict[str, Any]:
    """The champion's metric on the labels that arrived by now, against its own holdout metric.

    Without ``data.id_column``: the batch's own labelled rows. With it, also the labels feed: labels that
    arrived late for earlier batches score those batches' stored predictions (recorded per batch with how
    late they came), and labels delivered before their batch score it when it arrives."""

    champ = _champion(cfg, claim)
    if champ is None or scored.get("predictions") is None:
        return {"metric": cfg.metric, "value": None, "reference": None, "labelled_rows": 0}
    version = scored.get("champion_version", champ.version)
    cols = [cfg.data.time_column, cfg.data.target, *([cfg.data.id_column] if cfg.data.id_column else [])]
    df = _scored_frame(cfg, claim, scored, cols)
    extra: dict[str, Any] = {}
    if cfg.data.id_column and cfg.data.id_column in df:
        matured, extra = feeds.label_step(cfg, claim, df, version)
    else:
        lab = labelled(cfg, df)
        proba, classes = feeds.stored_proba(lab)
        matured = [
            feeds.Matured(
                claim["batch"],
                f"v{version}",
                lab[cfg.data.target].to_numpy(),
                lab["prediction"].to_numpy(),
                proba=proba,
                classes=classes,
            )
        ]
    signal = feeds.performance_signal(cfg, matured, f"v{version}")
    out = {
        "metric": cfg.metric,
        "value": signal["value"],
        "all": signal["all"],
        "reference": champ.metrics.get(cfg.metric),
        "labelled_rows": signal["labelled_rows"],
        "scored_batches": signal["batches"],
        **extra,
    }
    log.info(
        "performance on %d labelled rows (%d late): %s (champion holdout %s)",
        out["labelled_rows"],
        out.get("late_labelled_rows", 0),
        signal["all"],
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
            flags, key = _read_flags(cfg, flags_file)
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
        current = _load(cfg, claim, [cfg.data.time_column, id_col])
        if id_col in current:
            ids = feeds.normalise_ids(current[id_col])
            rows, unknown = _sidecar_rows(flags, key, ids)
            out = feeds.flag_step(cfg, claim, current, {ids[r] for r in rows}, count_batch=bad is None)
            return {**out, **sidecar, "sidecar_unknown": unknown}
    if flags is None:
        return {"flagged_rate": None, "flagged": 0, **sidecar}
    n_rows = int(validation.get("rows", 0))
    rows, unknown = _sidecar_rows(flags, key, None, n_rows)
    return {
        "flagged_rate": len(rows) / max(n_rows, 1),
        "flagged": len(rows),
        **sidecar,
        "sidecar_unknown": unknown,
    }


def _read_flags(cfg: ModelConfig, flags_file: Path) -> tuple[pd.DataFrame | None, str | None]:
    """The batch's sidecar flags file (None if there is none) and the column naming the flagged rows:
    ``row`` (0-based position in the batch) or the id column. :class:`BatchError` says why a sidecar
    cannot be used: empty, unreadable, neither column, or a ``row`` that is not a whole number."""
    import pandas as pd

    if not flags_file.exists() and not flags_file.is_symlink():
        return None, None
    if flags_file.is_symlink() or not flags_file.is_file():
        raise BatchError("not a regular file (a symbolic link or a folder): drop the file itself")
    try:
        flags = pd.read_csv(flags_file)
    except Exception as exc:  # pandas raises many types for an empty or corrupt file
        raise BatchError(f"cannot read it: {type(exc).__name__}: {exc}") from exc
    id_col = cfg.data.id_column
    key = "row" if "row" in flags else (id_col if id_col and id_col in flags else None)
    if key is None:
        raise BatchError(
            "needs a 'row' column (0-based row in the batch)"
            + (f" or '{id_col}'" if id_col else "")
            + f"; it has {list(flags.columns)[:20]}"
        )
    if key == "row":
        rows = pd.to_numeric(flags["row"], errors="coerce")
        bad = flags.index[flags["row"].notna() & ((rows % 1 != 0) | rows.isna())].tolist()
        if bad:
            raise BatchError(
                f"column 'row' must hold whole numbers; lines {[b + 2 for b in bad[:5]]} do not "
                f"(e.g. {flags['row'][bad[0]]!r})"
            )
    return flags, key


def _sidecar_rows(
    flags: pd.DataFrame | None, key: str | None, ids: pd.Series | None, n_rows: int = 0
) -> tuple[set[int], int]:
    """Positions of the batch rows the sidecar flags, and how many distinct sidecar entries name no row
    of the batch (not counted). ``ids``: the batch's normalised ids (their count sets the rows)."""

    if flags is None or key is None:
        return set(), 0
    n = len(ids) if ids is not None else n_rows
    if key == "row":
        wanted = {int(r) for r in flags["row"].dropna()}
        rows = {r for r in wanted if 0 <= r < n}
        return rows, len(wanted - rows)
    named = set(feeds.normalise_ids(flags[key].dropna()))
    known = list(ids) if ids is not None else []  # a batch without its id column: no id names a row
    rows = {i for i, v in enumerate(known) if v in named}
    return rows, len(named - set(known))


# -- 5. decide ------------------------------------------------------------------------------------
def policy_head(cfg: ModelConfig) -> dict[str, Any] | None:
    """The newest decision as the decide task recorded it on the monitor experiment (tag
    ``retrainer.policy_head``): ``{run_id, batch_sha256, prev, decisions, retrain_requests}``."""
    exp = tracking.client().get_experiment(tracking.experiment_id(cfg.name, "monitor"))
    raw = exp.tags.get(HEAD_TAG)
    if not raw:
        return None
    try:
        head = json.loads(raw)
    except ValueError:
        return None
    return head if isinstance(head, dict) and head.get("run_id") else None


def load_policy_state(
    cfg: ModelConfig, exclude_sha: str | None = None
) -> tuple[policy.PolicyState, str | None, str | None]:
    """The policy's state after the newest decision other than a re-run of ``exclude_sha``:
    (state, note, MLflow run it came from). Constant time whatever the history length: the head pointer
    names the run; stores without a pointer take the newest decision with one ordered query.

    The state is JSON checked field by field; a state that is not one we wrote (tampered, an older pickled
    format) is rejected, the policy starts fresh and ``note`` says so (recorded with the decision). An
    unreachable tracking store raises: deciding without the state would be wrong, the task retries."""
    import mlflow
    from mlflow.exceptions import MlflowException

    head = policy_head(cfg)
    if head is not None:
        source = head.get("prev") if head.get("batch_sha256") == exclude_sha else head["run_id"]
    else:
        query = f"tags.`{tracking.TAG}policy_state` = '1'"
        if exclude_sha:
            query += f" and tags.`{tracking.TAG}batch_sha256` != '{exclude_sha}'"
        newest = tracking.find_runs(
            cfg.name, "monitor", query, max_results=1, order_by=["attributes.start_time DESC"]
        )
        source = newest[0].info.run_id if newest else None
    if not source:
        return policy.PolicyState(), None, None
    try:
        uri = tracking.client().get_run(source).info.artifact_uri
        return (
            policy.PolicyState.from_dict(mlflow.artifacts.load_dict(f"{uri}/{STATE_ARTIFACT}")),
            None,
            source,
        )
    except (PolicyStateError, ValueError, FileNotFoundError) as exc:
        problem = str(exc)
    except MlflowException as exc:
        if exc.error_code not in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            raise
        problem = str(exc)
    note = (
        f"stored policy state of decision run {source} rejected ({problem[:300]}): "
        "starting fresh (no cooldown, hysteresis or detector history)"
    )
    log.warning(note)
    return policy.PolicyState(), note, source


def policy_state(cfg: ModelConfig, exclude_sha: str | None = None) -> policy.PolicyState:
    """The policy's state after the newest decided batch (see :func:`load_policy_state`)."""
    return load_policy_state(cfg, exclude_sha)[0]


def _errors(cfg: ModelConfig, claim: dict[str, Any], scored: dict[str, Any]) -> Any:
    """Per-row errors of the champion on the labels of this step (for the change detector)."""
    import pandas as pd

    if cfg.triggers.error_detector is None or scored.get("predictions") is None:
        return None
    version = scored.get("champion_version")
    step = feeds.FeedStore(cfg, "labels").step_path(claim["sha256"])
    if cfg.data.id_column and step.exists():  # the labels the performance task scored (feeds included)
        rows = pd.read_parquet(step)
        matured = [
            feeds.Matured(str(b), g["predicted_by"].iloc[0], g["y"].to_numpy(), g["prediction"].to_numpy())
            for b, g in rows.groupby("batch", sort=False)
        ]
        return feeds.performance_signal(cfg, matured, f"v{version}")["errors"]
    lab = labelled_batch(cfg, claim, scored, [cfg.data.time_column, cfg.data.target])
    if cfg.data.target not in lab:
        return None
    return policy.error_stream(cfg.task, lab[cfg.data.target].to_numpy(), lab["prediction"].to_numpy())


def _estimate(cfg: ModelConfig, claim: dict[str, Any], scored: dict[str, Any]) -> dict[str, Any]:
    """The champion's estimated metrics on the whole batch, labels or not (CBPE / DLE fitted on its
    holdout: the newest ``training.holdout`` of its snapshot); empty when it cannot be estimated."""

    champ = _champion(cfg, claim)
    if cfg.triggers.estimation is None or champ is None or scored.get("predictions") is None:
        return {}
    try:
        reference = _reference_frame(cfg, champ)
        if reference is None:
            return {}
        view = scoring_config(cfg, champ)  # the features the champion was trained on
        _, holdout = split_holdout(view, reference)
        model = load_run_model(champ.run_id, cfg)
        with thread_cap(cfg, settings.threads()):  # the fit; the batch is predicted as the score task does
            est = fit_estimator(view, model, holdout)
        if est is None:
            return {}
        return {"method": est.method, **_estimate_batch(view, est, model, claim, scored)}
    except (RetrainerError, ValueError) as exc:  # an estimate is advisory: never block the decision
        log.warning("no performance estimate for %s: %s", claim["batch"], exc)
        return {}


def _signals(
    cfg: ModelConfig,
    drift_result: dict[str, Any],
    perf: dict[str, Any],
    flagged_rate: float | None,
    has_champion: bool,
) -> policy.Signals:
    """The policy's input from what the signal tasks returned (drift, performance, flagged rate)."""
    return policy.Signals(
        data_drift_share=drift_result.get("data_drift_share"),
        drifted_columns=tuple(drift_result.get("drifted_columns") or ()),
        prediction_drift=drift_result.get("prediction_drift"),
        metric_name=perf.get("metric"),
        metric_value=perf.get("value"),
        metric_reference=perf.get("reference"),
        lower_is_better=cfg.lower_is_better,
        labelled_rows=int(perf.get("labelled_rows") or 0),
        flagged_rate=flagged_rate,
        has_champion=has_champion,
    )


def _estimate_batch(
    cfg: ModelConfig, est: Any, model: Any, claim: dict[str, Any], scored: dict[str, Any]
) -> dict[str, float]:
    """The estimator's metrics on the batch without holding its rows: CBPE reads the predictions and
    probabilities the score task stored (computed chunk by chunk if they were not stored); DLE reads the
    features :data:`~retrainer.storage.CHUNK_ROWS` rows at a time beside the stored predictions."""
    import numpy as np
    import pandas as pd
    import pyarrow.parquet as pq

    stored = scored["predictions"]
    columns = [cfg.data.time_column, *cfg.data.feature_names]
    names = pq.read_schema(stored).names
    proba_cols = [c for c in names if c.startswith(feeds.PROBA)]  # written in the model's class order
    preds = pd.read_parquet(stored, columns=["prediction", *proba_cols])
    y_pred = preds["prediction"].to_numpy()
    if isinstance(est.impl, CBPE):
        if proba_cols:
            proba = preds[proba_cols].to_numpy()
        else:  # predictions stored without probabilities: compute them chunk by chunk
            parts = []
            for chunk in iter_chunks(_batch_file(cfg, claim), columns):
                _, p = predict_with_proba(cfg, model, prepare(cfg, chunk))
                if p is None:
                    return {}
                parts.append(np.asarray(p, dtype=float))
            proba = np.concatenate(parts) if parts else np.empty((0, len(est.impl.classes)))
        return est.impl.estimate(proba, y_pred)
    # DLE: expected squared and absolute loss per chunk, combined as the mean over all rows
    sq = ab = 0.0
    start = 0
    for chunk in iter_chunks(_batch_file(cfg, claim), columns):
        part = est.impl.estimate(
            prepare(cfg, chunk)[cfg.data.feature_names],
            y_pred[start : start + len(chunk)],
            cfg.data.categorical,
        )
        if part:
            sq += part["rmse"] ** 2 * len(chunk)
            ab += part["mae"] * len(chunk)
        start += len(chunk)
    if not start:
        return {}
    return {"rmse": float(np.sqrt(sq / start)), "mae": float(ab / start)}


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

    why = scored.get("unscorable")
    signals = _signals(  # a champion that cannot score the batch counts as none: a retrain replaces it
        cfg,
        drift_result,
        perf,
        flags.get("flagged_rate"),
        scored.get("champion_version") is not None and not why,
    )
    estimate = _estimate(cfg, claim, scored)
    if estimate.get(cfg.trigger_metric) is not None:
        signals = replace(
            signals, estimated_value=estimate[cfg.trigger_metric], estimate_method=estimate["method"]
        )
    state, state_note, state_from = load_policy_state(cfg, exclude_sha=claim["sha256"])
    version = scored.get("champion_version")
    decision, new_state, signals = policy.step(
        signals,
        cfg.triggers,
        state,
        errors=_errors(cfg, claim, scored),
        model_id=None if version is None else f"v{version}",
    )
    if why and decision.fired == ["no_champion"]:
        decision = replace(decision, reasons=[why], fired=["champion_unscorable"])
    tracking.client()
    existing = tracking.find_runs(
        cfg.name,
        "monitor",
        f"tags.`retrainer.batch_sha256` = '{claim['sha256']}' and tags.`retrainer.verdict` != 'quarantined'",
        max_results=1,
    )
    # the state this batch's first attempt was decided from: a retry whose head write never happened
    # (the head still names that state) must advance the head, not leave it behind
    first_from = existing[-1].data.tags.get(f"{tracking.TAG}policy_state_from") if existing else None
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
                    "delivered_as": claim.get("delivered_as") or None,  # a redelivery under a used name
                    "batch_sha256": claim["sha256"],
                    "dag_run_id": run_id,
                    "verdict": decision.verdict,
                    "reasons": decision.reasons,
                    "fired": decision.fired,
                    "suppressed_by": decision.suppressed_by,
                    "champion_version": scored.get("champion_version"),
                    "drifted_columns": drift_result.get("drifted_columns"),
                    "no_data_columns": drift_result.get("no_data_columns") or None,  # all null in batch
                    # the batches whose labels made this step's realised metric (the view pairs a batch's
                    # estimate with its realised metric once its labels arrive)
                    "scored_batches": [
                        b["batch"] for b in perf.get("scored_batches") or [] if b.get("scored")
                    ]
                    or None,
                    "policy_state": "1",
                    "policy_state_from": state_from,
                    "policy_state_note": state_note,
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
            "late_labelled_rows": perf.get("late_labelled_rows"),  # labels feed: rows of earlier batches
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
                "state_note": state_note,
                "state_from": state_from,
            },
            "decision.json",
        )
        if drift_result.get("report"):
            mlflow.log_artifact(drift_result["report"], "evidently")
        if validation.get("gx_result"):
            mlflow.log_artifact(validation["gx_result"], "gx")
    rerun = bool(existing) and not _head_missed(cfg, run.info.run_id, claim["sha256"], first_from)
    _advance_head(cfg, run.info.run_id, claim["sha256"], state_from, decision.retrain, rerun)
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


def _head_missed(cfg: ModelConfig, run_id: str, sha: str, first_from: str | None) -> bool:
    """Whether the decision run ``run_id`` (recorded earlier, decided from ``first_from``) never became the
    head: its attempt failed after recording the run and before the head write, so the head still names
    the decision it was computed from. Its retry then advances the head as a first run would."""
    head = policy_head(cfg)
    if head is None:  # the model's very first decision, unless older decisions predate the head
        query = f"tags.`{tracking.TAG}policy_state` = '1' and tags.`{tracking.TAG}batch_sha256` != '{sha}'"
        return first_from is None and not tracking.find_runs(cfg.name, "monitor", query, max_results=1)
    return head.get("run_id") != run_id and head.get("run_id") == first_from


def _advance_head(
    cfg: ModelConfig, run_id: str, sha: str, prev: str | None, retrain: bool, rerun: bool
) -> None:
    """Point the head at this decision (one tag write, atomic). A re-run of an older batch leaves the
    head alone; a re-run of the newest keeps its counts (adjusting the request count if it changed)."""
    head = policy_head(cfg) or {"decisions": 0, "retrain_requests": 0}
    if rerun and head.get("run_id") != run_id:
        return
    decisions, requests = int(head.get("decisions", 0)), int(head.get("retrain_requests", 0))
    if rerun:
        requests += int(retrain) - int(bool(head.get("retrain")))
    else:
        decisions, requests = decisions + 1, requests + int(retrain)
    value = {
        "run_id": run_id,
        "batch_sha256": sha,
        "prev": head.get("prev") if rerun else prev,
        "retrain": retrain,
        "decisions": decisions,
        "retrain_requests": requests,
    }
    c = tracking.client()
    c.set_experiment_tag(tracking.experiment_id(cfg.name, "monitor"), HEAD_TAG, json.dumps(value))


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


# -- one batch without Airflow ------------------------------------------------------------------------
def check_file(cfg: ModelConfig, path: Path, report_dir: Path | None = None) -> dict[str, Any]:
    """Gate, score, signals and the policy's decision for one batch file against the current champion.

    What ``retrainer check`` runs: the same functions as the monitor DAG, but nothing is claimed, moved,
    quarantined or recorded in the decision log (the policy state is read, not written). With
    ``report_dir`` the GX result, Data Docs and the Evidently report are written there.
    """

    stem = batch_stem(path.name)
    champ = registry.champion(cfg.name)
    df = read_columns(path, _columns(cfg, champ))  # the gate checks row ids too
    with contextlib.suppress(KeyError, ValueError, TypeError):  # GX names what cannot be prepared
        df = prepare(cfg, df)
    gate = quality.validate(
        df,
        quality.build_expectations(cfg, _reference_frame(cfg, champ)),
        name=f"{cfg.name}_check_{stem}",
        docs_dir=None if report_dir is None else report_dir / "gx",
        raise_on_failure=False,
    )
    out: dict[str, Any] = {
        "model": cfg.name,
        "file": str(path),
        "rows": len(df),
        "gate": {
            "passed": gate["success"],
            "failures": [quality.describe(f) for f in gate["failures"]],
            "result": gate["result_path"],
        },
    }
    if not gate["success"]:
        out["verdict"] = "rejected by the quality gate (the monitor would quarantine it)"
        return out
    out["champion_version"] = champ.version if champ else None
    drift_result: dict[str, Any] = {}
    perf: dict[str, Any] = {"metric": cfg.metric, "value": None, "reference": None, "labelled_rows": 0}
    errors = None
    why = None if champ is None else unscorable(cfg, champ, batch_columns(path), f"{path.name}")
    if why is not None:
        out["unscorable"] = why
    if champ is not None and why is None:
        view = scoring_config(cfg, champ)
        preds = _predict_file(view, load_run_model(champ.run_id, cfg), path)["prediction"].to_numpy()
        html = None if report_dir is None else report_dir / "evidently" / f"{stem}.html"
        drift_result = _drift_of(view, _reference_predictions(cfg, champ), path, preds, html)
        if cfg.data.target in df:
            lab = labelled(cfg, df.assign(prediction=preds))
            y, p = lab[cfg.data.target].to_numpy(), lab["prediction"].to_numpy()
            values = metrics.compute(cfg.task, y, p, custom=metrics.custom(cfg))
            perf = {
                "metric": cfg.metric,
                "value": values.get(cfg.metric),
                "all": values,
                "reference": champ.metrics.get(cfg.metric),
                "labelled_rows": len(lab),
            }
            if cfg.triggers.error_detector is not None:
                errors = policy.error_stream(cfg.task, y, p)
    flagged_rate = None
    try:
        flags, key = _read_flags(cfg, root(cfg).flags_path(path))
    except BatchError as exc:  # the monitor would quarantine the sidecar and not count it
        out["flags_sidecar_problem"] = str(exc)
        flags, key = None, None
    if flags is not None:
        id_col = cfg.data.id_column
        ids = feeds.normalise_ids(df[id_col]) if id_col and id_col in df else None
        flagged_rate = len(_sidecar_rows(flags, key, ids, len(df))[0]) / max(len(df), 1)
    signals = _signals(cfg, drift_result, perf, flagged_rate, champ is not None and why is None)
    state = policy_state(cfg, exclude_sha=sha256_file(path))
    decision, _, signals = policy.step(
        signals,
        cfg.triggers,
        state,
        errors=errors,
        model_id=None if champ is None else f"v{champ.version}",
    )
    if why and decision.fired == ["no_champion"]:
        decision = replace(decision, reasons=[why], fired=["champion_unscorable"])
    out.update(
        {
            "drift": {k: v for k, v in drift_result.items() if k != "column_drift"},
            "column_drift": drift_result.get("column_drift"),
            "performance": perf,
            "flagged_rate": flagged_rate,
            "decision": decision.to_dict(),
            "verdict": decision.verdict,
        }
    )
    return out
