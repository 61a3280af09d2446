"""The monitor's quality gate on a claimed batch: the time rules, duplicate deliveries, reused row ids and
the Great Expectations suite built from the champion's reference; a batch that fails is quarantined with
its reason, and every quarantined file gets one decision record in MLflow.

:func:`gx_gate` is the GX step itself, shared with ``retrainer check``.
"""

from __future__ import annotations

import contextlib
import json
import logging
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from retrainer.config import duration_hours
from retrainer.exceptions import BatchError, DataValidationError
from retrainer.gates import quality
from retrainer.ml.train import prepare
from retrainer.stages import feeds
from retrainer.stages.batches import monitor_columns, reference_frame, root, run_champion
from retrainer.storage import (
    batch_stem,
    has_offset,
    mixed_offsets_message,
    read_columns,
    rows_sha256,
    write_json,
)
from retrainer.tracking import runs as tracking

if TYPE_CHECKING:
    from pathlib import Path

    import pandas as pd

    from retrainer.config import ModelConfig

log = logging.getLogger(__name__)


def _failure(
    expectation: str, column: str, kwargs: dict[str, Any], n: int, examples: list[str]
) -> dict[str, Any]:
    """One failed check in the shape GX reports its failed expectations."""
    return {
        "expectation": expectation,
        "column": column,
        "kwargs": kwargs,
        "unexpected_count": n,
        "partial_unexpected_list": examples,
    }


# -- the time rules -------------------------------------------------------------------------------------
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
            [_failure("time_parseable", col, {}, int(bad.sum()), examples)],
        )
    offset = has_offset(raw)
    if offset is not None and offset[raw.notna()].nunique() > 1:  # the time rule cannot order them
        mixed = raw.notna() & ~offset
        examples = [str(v) for v in raw[raw.notna() & offset].head(2)] + [str(v) for v in raw[mixed].head(2)]
        n = int(min(mixed.sum(), (raw.notna() & offset).sum()))
        raise DataValidationError(
            f"{file}: column '{col}': {mixed_offsets_message(raw, offset)}",
            [_failure("time_offsets_consistent", col, {}, n, examples)],
        )
    limit = pd.Timestamp(datetime.now(UTC) + max_future(cfg))
    ahead = parsed > limit
    if ahead.any():
        examples = [str(v) for v in raw[ahead].head(3)]
        raise DataValidationError(
            f"{file}: column '{col}': {int(ahead.sum())} value(s) lie in the future, beyond now + "
            f"data.max_future={cfg.data.max_future} (latest {parsed.max()}), e.g. {examples}",
            [
                _failure(
                    "time_not_in_future", col, {"max_future": cfg.data.max_future}, int(ahead.sum()), examples
                )
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
            _failure(
                "time_span_at_most",
                cfg.data.time_column,
                {"max_batch_span": max_batch_span(cfg)},
                1,
                examples,
            )
        ],
    )


# -- duplicates and ids ---------------------------------------------------------------------------------
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
        [_failure("ids_unique_across_archive", id_col, {"archived_batches": holders[:20]}, n, examples)],
    )


def _refuse_duplicates(cfg: ModelConfig, claim: dict[str, Any], path: Path, df: pd.DataFrame | None) -> None:
    """Raise :class:`BatchError` for a batch already processed under another name: identical bytes, or
    (given its prepared rows ``df``) the same rows in other bytes. The rows' hash is noted on the claim
    (the archive index records it)."""
    dr = root(cfg)
    if df is None:
        duplicate = dr.archived_with_hash(claim["sha256"], path.stat().st_size, exclude=path)
        if duplicate is not None:  # a re-delivery would count its rows twice in every training window
            raise BatchError(
                f"duplicate delivery: identical content was already processed as {duplicate.name}"
            )
        return
    rows_hash = rows_sha256(df)
    copy = dr.archived_with_rows(rows_hash, exclude=path)
    if copy is not None:  # a re-export (other bytes, same rows) would count its rows twice too
        raise BatchError(
            f"duplicate delivery: the same rows were already processed as {copy} (a re-export: "
            "other bytes, same rows)"
        )
    dr.annotate(claim, rows_sha256=rows_hash)  # archive_batch records it in the archive index


# -- the gate -------------------------------------------------------------------------------------------
def prepare_leniently(cfg: ModelConfig, df: pd.DataFrame) -> tuple[pd.DataFrame, bool]:
    """``df`` prepared, and True; or as read, and False, if it cannot be prepared (GX then names the missing
    or mistyped column)."""
    with contextlib.suppress(KeyError, ValueError, TypeError):
        return prepare(cfg, df), True
    return df, False


def gx_gate(
    cfg: ModelConfig,
    df: pd.DataFrame,
    reference: pd.DataFrame | None,
    name: str,
    docs_dir: Path | None,
    raise_on_failure: bool = True,
) -> dict[str, Any]:
    """The Great Expectations suite of ``cfg`` (its bounds from the champion's ``reference``) run on ``df``."""
    return quality.validate(
        df,
        quality.build_expectations(cfg, reference),
        name=name,
        docs_dir=docs_dir,
        raise_on_failure=raise_on_failure,
    )


def gate_claimed(cfg: ModelConfig, claim: dict[str, Any], path: Path) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Every check of the claimed batch at ``path``: the batch as gated (prepared if it could be) and the GX
    result; :class:`BatchError` or :class:`DataValidationError` say why it is rejected."""
    batch = claim["batch"]
    _refuse_duplicates(cfg, claim, path, None)
    champ = run_champion(cfg, claim)
    # the configured columns, and those the champion was trained on (the typed copy keeps them); the gate
    # checks the target and the id too, the rest is not read
    df = read_columns(path, monitor_columns(cfg, champ))
    check_time_column(cfg, df, batch)
    reference = reference_frame(cfg, champ)
    df, prepared = prepare_leniently(cfg, df)
    if prepared:
        _refuse_duplicates(cfg, claim, path, df)
    check_ids_unused(cfg, df, batch, path)
    result = gx_gate(
        cfg, df, reference, f"{cfg.name}_{batch_stem(batch)}", root(cfg).gx_dir(batch_stem(batch))
    )
    return df, result


def reject(
    cfg: ModelConfig, claim: dict[str, Any], stage: str, exc: DataValidationError | BatchError, run_id: str
) -> DataValidationError:
    """The error to raise for a batch the gate rejected, after quarantining it with its reason and decision
    record. A re-run on an archived batch leaves it in place: it passed once and is training data now."""
    failures = getattr(exc, "failures", [])
    report = getattr(exc, "report", None)
    message = f"batch {claim['batch']} of model {cfg.name} rejected: {exc}"
    if stage == "archive":
        return DataValidationError(message + " (already archived: left in place)", failures, report)
    dest = root(cfg).quarantine_claim(
        claim, {"message": message, "failures": failures, "run_id": run_id, "gx_result": report}
    )
    record_quarantines(cfg)
    log.error("%s\nquarantined at %s", message, dest)
    return DataValidationError(message, failures, report)


# -- decision records of quarantined files --------------------------------------------------------------
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
            else log_quarantine(
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


def log_quarantine(
    cfg: ModelConfig, claim: dict[str, Any], message: str, failures: list[Any], docs_dir: Any, run_id: str
) -> str:
    """The decision record (MLflow monitor run, verdict ``quarantined``) of one quarantined file."""
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
