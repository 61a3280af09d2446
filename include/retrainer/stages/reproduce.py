"""Reproduce a registered version: retrain from its recorded snapshot and config, compare the metrics.

The snapshot is found by the version's ``retrainer.snapshot_sha256`` tag and re-hashed on load (a modified
snapshot raises :class:`~retrainer.exceptions.SnapshotIntegrityError`). The config is the ``config.json``
its training run logged, so a later edit of the YAML does not change what is replayed. With seeded
estimators the holdout metrics and the predictions must match bit for bit.
"""

from __future__ import annotations

import logging
import math
import os
from datetime import UTC, datetime
from typing import Any

from retrainer import settings
from retrainer.config import ModelConfig, find_config, parse_config
from retrainer.exceptions import ConfigError, RetrainerError
from retrainer.ml import metrics
from retrainer.ml.train import fit, predict, split_holdout, thread_cap
from retrainer.storage import DataRoot
from retrainer.storage.snapshots import load_snapshot
from retrainer.tracking import runs as tracking
from retrainer.tracking.artifacts import load_run_model

log = logging.getLogger(__name__)


def recorded_config(name: str, run_id: str, fingerprint: str | None) -> ModelConfig:
    """The config a training run used: its ``config.json`` artifact, else the current YAML if unchanged."""
    import mlflow.artifacts
    from mlflow.exceptions import MlflowException

    tracking.client()
    try:
        raw = mlflow.artifacts.load_dict(f"runs:/{run_id}/config.json")
        return parse_config(raw, f"runs:/{run_id}/config.json")
    except (MlflowException, OSError):
        cfg = find_config(name, settings.config_dir())
        if fingerprint and cfg.fingerprint != fingerprint:
            raise RetrainerError(
                f"run {run_id} has no config.json and {cfg.source} changed since (fingerprint "
                f"{cfg.fingerprint} != recorded {fingerprint}): cannot reproduce"
            ) from None
        return cfg


def trusting_config(name: str, recorded: ModelConfig) -> ModelConfig:
    """The config whose trusted types load the version's artifact: the local YAML's, never the recorded
    ``config.json``'s (whoever can write the artifact store could extend that one's
    ``model.trusted_modules``); without a local config, the recorded one with no team packages trusted."""
    try:
        return find_config(name, settings.config_dir())
    except ConfigError:
        return recorded.model_copy(
            update={"model": recorded.model.model_copy(update={"trusted_modules": []})}
        )


def _same(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is b
    return a == b or (math.isnan(a) and math.isnan(b))


def reproduce(name: str, version: int) -> dict[str, Any]:
    """Retrain ``version`` of model ``name`` from its snapshot and config; report whether it matches."""
    import numpy as np
    from mlflow.exceptions import MlflowException

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    c = tracking.client()
    try:
        mv = c.get_model_version(name, str(version))
    except MlflowException as exc:
        raise RetrainerError(f"model {name!r} has no version {version}") from exc
    sha = mv.tags.get("retrainer.snapshot_sha256")
    if not sha:
        raise RetrainerError(
            f"{name} v{version} has no retrainer.snapshot_sha256 tag: not a Retrainer version"
        )
    if not mv.run_id:
        raise RetrainerError(f"{name} v{version} has no training run: not a Retrainer version")
    run = c.get_run(mv.run_id)
    recorded_fp = run.data.tags.get("retrainer.config_fingerprint")
    cfg = recorded_config(name, mv.run_id, recorded_fp)
    df = load_snapshot(DataRoot.for_model(name).snapshots, sha)  # re-hashes: tampering raises
    train_df, holdout = split_holdout(cfg, df)
    with thread_cap(cfg, settings.threads()):  # as the retrain that made the version
        model = fit(cfg, train_df)
        preds = predict(cfg, model, holdout)
        scores = metrics.score(cfg, model, holdout)  # as the retrain recorded them: probability metrics too
    recorded = tracking.holdout_metrics(run)
    per_metric = {
        k: {
            "recorded": recorded.get(k),
            "reproduced": scores.get(k),
            "match": _same(recorded.get(k), scores.get(k)),
        }
        for k in sorted(set(recorded) | set(scores))
    }
    original = predict(cfg, load_run_model(mv.run_id, trusting_config(name, cfg)), holdout)
    out = {
        "model": name,
        "version": version,
        "run_id": mv.run_id,
        "snapshot_sha256": sha,
        "config_fingerprint": cfg.fingerprint,
        "recorded_fingerprint": recorded_fp,
        "train_rows": len(train_df),
        "holdout_rows": len(holdout),
        "metrics": per_metric,
        "predictions_match": bool(np.array_equal(np.asarray(original), np.asarray(preds))),
    }
    out["match"] = all(m["match"] for m in per_metric.values()) and out["predictions_match"]
    c.set_model_version_tag(
        name,
        str(version),
        "retrainer.reproduced",
        f"{datetime.now(UTC).isoformat(timespec='seconds')} {'identical' if out['match'] else 'DIFFERENT'}",
    )
    log.info("reproduce %s v%s: %s", name, version, "identical" if out["match"] else "DIFFERENT")
    return out
