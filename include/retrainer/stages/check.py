"""One batch file through the monitor's pipeline without Airflow: what ``retrainer check`` runs.

The same steps as the monitor DAG (the GX gate, the champion's predictions, drift, performance, the flags
sidecar, and :func:`~retrainer.stages.assess.assess` for the decision), in one process; but nothing is
claimed, moved, quarantined or recorded in the decision log (the policy state is read, not written).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from retrainer.exceptions import BatchError
from retrainer.gates import quality
from retrainer.ml.train import labelled
from retrainer.stages import feeds
from retrainer.stages.assess import Evidence, assess
from retrainer.stages.batches import (
    monitor_columns,
    reference_frame,
    reference_predictions,
    root,
    scoring_config,
    unscorable,
)
from retrainer.stages.decisions import policy_state
from retrainer.stages.gate import gx_gate, prepare_leniently
from retrainer.stages.scoring import drift_of, predict_file
from retrainer.stages.signals import own_labels, performance_of, read_flags, sidecar_rows
from retrainer.storage import batch_columns, batch_stem, read_columns, sha256_file
from retrainer.tracking import registry
from retrainer.tracking.artifacts import load_run_model

if TYPE_CHECKING:
    from pathlib import Path

    import pandas as pd

    from retrainer.config import ModelConfig


def _gate(
    cfg: ModelConfig, path: Path, champ: registry.RegisteredVersion | None, report_dir: Path | None
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The batch as gated (prepared if it can be) and the gate's verdict, failures and result file."""
    df = read_columns(path, monitor_columns(cfg, champ))  # the gate checks row ids too
    df, _ = prepare_leniently(cfg, df)  # GX names what cannot be prepared
    result = gx_gate(
        cfg,
        df,
        reference_frame(cfg, champ),
        f"{cfg.name}_check_{batch_stem(path.name)}",
        None if report_dir is None else report_dir / "gx",
        raise_on_failure=False,
    )
    return df, {
        "passed": result["success"],
        "failures": [quality.describe(f) for f in result["failures"]],
        "result": result["result_path"],
    }


def _scored(
    cfg: ModelConfig, champ: registry.RegisteredVersion, path: Path, df: pd.DataFrame, report_dir: Path | None
) -> tuple[dict[str, Any], dict[str, Any], Any]:
    """Drift, performance (on the batch's own labels) and the change detector's errors of ``champ`` on the
    batch, as the score, drift and performance tasks compute them."""
    view = scoring_config(cfg, champ)
    stored = predict_file(view, load_run_model(champ.run_id, cfg), path)
    preds = stored["prediction"].to_numpy()
    html = None if report_dir is None else report_dir / "evidently" / f"{batch_stem(path.name)}.html"
    drift = drift_of(view, reference_predictions(cfg, champ), path, preds, html)
    perf: dict[str, Any] = {"metric": cfg.metric, "value": None, "reference": None, "labelled_rows": 0}
    errors = None
    if cfg.data.target in df:
        frame = df.assign(prediction=preds, **{c: stored[c].to_numpy() for c in feeds.proba_columns(stored)})
        matured = own_labels(cfg, path.name, champ.version, labelled(cfg, frame))
        perf, errors = performance_of(cfg, matured, champ.version, champ.metrics.get(cfg.metric))
    return drift, perf, errors if cfg.triggers.error_detector is not None else None


def _flagged_rate(cfg: ModelConfig, path: Path, df: pd.DataFrame) -> tuple[float | None, str | None]:
    """The share of the batch's rows its flags sidecar names (None without one), and why the sidecar
    cannot be used if it cannot (the monitor would quarantine it and not count it)."""
    try:
        flags, key = read_flags(cfg, root(cfg).flags_path(path))
    except BatchError as exc:
        return None, str(exc)
    if flags is None:
        return None, None
    id_col = cfg.data.id_column
    ids = feeds.normalise_ids(df[id_col]) if id_col and id_col in df else None
    return len(sidecar_rows(flags, key, ids, len(df))[0]) / max(len(df), 1), None


def check_file(cfg: ModelConfig, path: Path, report_dir: Path | None = None) -> dict[str, Any]:
    """Gate, score, signals and the policy's decision for one batch file against the current champion.

    With ``report_dir`` the GX result, Data Docs and the Evidently report are written there.
    """
    champ = registry.champion(cfg.name)
    df, gate = _gate(cfg, path, champ, report_dir)
    out: dict[str, Any] = {"model": cfg.name, "file": str(path), "rows": len(df), "gate": gate}
    if not gate["passed"]:
        out["verdict"] = "rejected by the quality gate (the monitor would quarantine it)"
        return out
    out["champion_version"] = champ.version if champ else None
    why = None if champ is None else unscorable(cfg, champ, batch_columns(path), f"{path.name}")
    if why is not None:
        out["unscorable"] = why
    drift: dict[str, Any] = {}
    perf: dict[str, Any] = {"metric": cfg.metric, "value": None, "reference": None, "labelled_rows": 0}
    errors = None
    if champ is not None and why is None:
        drift, perf, errors = _scored(cfg, champ, path, df, report_dir)
    flagged, problem = _flagged_rate(cfg, path, df)
    if problem is not None:
        out["flags_sidecar_problem"] = problem
    evidence = Evidence(drift, perf, flagged, out["champion_version"], why, errors=errors)
    result = assess(cfg, evidence, policy_state(cfg, exclude_sha=sha256_file(path)))
    out.update(
        {
            "drift": {k: v for k, v in drift.items() if k != "column_drift"},
            "column_drift": drift.get("column_drift"),
            "performance": perf,
            "flagged_rate": flagged,
            "decision": result.decision.to_dict(),
            "verdict": result.decision.verdict,
        }
    )
    return out
