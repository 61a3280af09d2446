"""What the monitor's tasks share about a claimed batch: where it is, the champion the run resolved for it,
the columns it reads, its rows (with the champion's stored predictions), and the champion's reference data.

A claim is the small JSON :func:`retrainer.stages.monitor.claim_batch` returned; every task finds its batch
through it, never by looking in ``landing/`` again.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from retrainer import settings
from retrainer.exceptions import BatchError, RetrainerError
from retrainer.ml.train import labelled, predict, prepare
from retrainer.stages import feeds
from retrainer.storage import (
    Claim,
    DataRoot,
    iter_chunks,
    read_batch,
    read_columns,
    stuck_after,
    write_parquet,
)
from retrainer.storage.snapshots import load_snapshot
from retrainer.tracking import registry
from retrainer.tracking.artifacts import load_run_model, missing_features, model_config

if TYPE_CHECKING:
    from pathlib import Path

    import pandas as pd

    from retrainer.config import ModelConfig

log = logging.getLogger(__name__)


def root(cfg: ModelConfig) -> DataRoot:
    return DataRoot(settings.data_root(), cfg.name)


def claimed_recently(claim: Claim) -> bool:
    """Whether ``claim`` was made less than ``RETRAINER_STUCK_AFTER_MINUTES`` ago: how a claim whose run
    Airflow does not know is judged (a younger one is left to its owner, an older one is resumed)."""
    return datetime.now(UTC) - datetime.fromisoformat(claim.claimed_at) < stuck_after()


def run_champion(cfg: ModelConfig, claim: dict[str, Any]) -> registry.RegisteredVersion | None:
    """The champion this run resolved at claim time (resolved and recorded now for an older claim)."""
    notes = claim.get("notes") or {}
    if "champion_version" not in notes:
        champ = registry.champion(cfg.name)
        if claim.get("run_id"):
            root(cfg).annotate(claim, champion_version=champ.version if champ else None)
        return champ
    version = notes["champion_version"]
    return None if version is None else registry.get_version(cfg.name, int(version))


def monitor_columns(cfg: ModelConfig, champ: registry.RegisteredVersion | None = None) -> list[str]:
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


def batch_file(cfg: ModelConfig, claim: dict[str, Any]) -> Path:
    """What a task reads for a claimed batch: the typed Parquet copy the gate wrote for a CSV batch (the
    CSV is parsed once, by the gate), or the delivered file (a Parquet batch, or an older claim)."""
    typed = root(cfg).typed_copy(claim["sha256"])
    if typed.exists():
        return typed
    return root(cfg).path_of(claim)[1]


def load_batch(cfg: ModelConfig, claim: dict[str, Any], columns: list[str] | None = None) -> pd.DataFrame:
    """The claimed batch, prepared; only ``columns`` (those it has) when given."""

    path = batch_file(cfg, claim)
    return prepare(cfg, read_batch(path) if columns is None else read_columns(path, columns))


def stored_predictions(scored: dict[str, Any]) -> Any:
    """The champion's predictions of the batch, in row order (what the score task stored)."""
    import pandas as pd

    return pd.read_parquet(scored["predictions"], columns=["prediction"])["prediction"].to_numpy()


def scored_frame(
    cfg: ModelConfig, claim: dict[str, Any], scored: dict[str, Any] | None, columns: list[str] | None
) -> pd.DataFrame:
    """The claimed batch (``columns`` of it when given) with what the score task stored when ``scored``
    is given: the champion's predictions (``prediction``) and any class probabilities (``proba:<class>``)."""
    import pandas as pd

    df = load_batch(cfg, claim, columns)
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

    return labelled(cfg, scored_frame(cfg, claim, scored, columns))


def labelled_evidence(cfg: ModelConfig, claim: dict[str, Any], earlier: list[str]) -> pd.DataFrame:
    """The rows of the claimed batch and of the archived batches named in ``earlier`` whose label has
    arrived by now, in the batch itself or through the labels feed (a later delivery corrects an earlier
    one, as in training), with every column the models need: what the rollback watch and the shadow
    comparison score both models on. A batch no longer in the archive gives no rows."""
    import pandas as pd

    labels = feeds.latest_labels(cfg) if cfg.data.id_column else None
    frames = [labelled(cfg, feeds.apply_labels(cfg, load_batch(cfg, claim, monitor_columns(cfg)), labels))]
    dr = root(cfg)
    for batch in dict.fromkeys(earlier):
        if batch == claim["batch"]:
            continue
        try:
            stage, path = dr.locate(batch)
        except BatchError:  # collected by retention since: nothing to score
            continue
        if stage == "archive":
            df = prepare(cfg, read_columns(path, monitor_columns(cfg)))
            frames.append(labelled(cfg, feeds.apply_labels(cfg, df, labels)))
    return pd.concat(frames, ignore_index=True)


def read_rows(cfg: ModelConfig, path: Path, columns: list[str], positions: Any) -> pd.DataFrame:
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


# -- reference data -----------------------------------------------------------------------------------
def reference_frame(cfg: ModelConfig, champ: registry.RegisteredVersion | None) -> pd.DataFrame | None:
    """The champion's training snapshot (hash-verified), or None before the first champion."""

    if champ is None or not champ.snapshot_sha256:
        return None
    return load_snapshot(root(cfg).snapshots, champ.snapshot_sha256)


def reference_predictions(cfg: ModelConfig, champ: registry.RegisteredVersion) -> pd.DataFrame:
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
    ref = reference_frame(cfg, champ)
    if ref is None:
        raise RetrainerError(f"champion v{champ.version} of {cfg.name} has no snapshot to use as reference")
    ref = ref.copy()
    ref["prediction"] = predict(scoring_config(cfg, champ), load_run_model(champ.run_id, cfg), ref)
    write_parquet(cache, ref)
    return ref
