"""The retrain path, one function per task: trigger, snapshot, gate, train, evaluate, register, promote.

Re-running any step for the same inputs gives the same result: snapshots are content-addressed, a
training run is keyed by ``run_key`` = snapshot hash + config fingerprint and reused when it finished,
and a registry version is created at most once per ``run_key``.
"""

from __future__ import annotations

import hashlib
import logging
from typing import TYPE_CHECKING, Any, NamedTuple

from retrainer import settings
from retrainer.exceptions import ModelRejected, SnapshotIntegrityError
from retrainer.gates import compare, quality
from retrainer.gates.checks import run_checks
from retrainer.ml import metrics
from retrainer.ml.train import fit, gather_window, split_holdout, thread_cap
from retrainer.stages.feeds import ingest, label_filler
from retrainer.stages.monitor import root, scoring_config, unscorable
from retrainer.stages.promotion import stage
from retrainer.storage.snapshots import create_snapshot, load_snapshot, read_manifest, touch
from retrainer.tracking import registry
from retrainer.tracking import runs as tracking
from retrainer.tracking.artifacts import load_run_model, log_model

if TYPE_CHECKING:
    import pandas as pd

    from retrainer.config import ModelConfig
    from retrainer.tracking.registry import RegisteredVersion

log = logging.getLogger(__name__)


# -- 1. trigger -----------------------------------------------------------------------------------------
def resolve_trigger(
    run_type: str,
    asset_events: list[dict[str, Any]],
    params: dict[str, Any],
    triggered_by: str | None = None,
) -> dict[str, Any]:
    """Which path started this run and why: asset (trigger policy), schedule, or manual.

    The source comes from the run itself (its asset events and run type), never from a Param: a manual run
    stays ``manual``. A manual run whose ``trigger_source`` Param names another path (a harness replaying
    it) records that as a claim of the Airflow user who triggered it (``claimed_source``, ``triggered_by``).
    """
    reasons: list[str] = []
    batches: list[str] = []
    for event in asset_events:  # the same event delivered twice counts once
        extra = event.get("extra") or {}
        reasons.extend(r for r in extra.get("reasons", []) if r not in reasons)
        if extra.get("batch") and extra["batch"] not in batches:
            batches.append(str(extra["batch"]))
    if asset_events or run_type == "asset_triggered":
        source = "asset"
    elif run_type == "scheduled":
        source = "schedule"
    else:
        source = "manual"
    out: dict[str, Any] = {}
    if source == "manual":
        out["triggered_by"] = triggered_by or "unknown"
        claimed = params.get("trigger_source") or ""
        if claimed and claimed != "manual":
            out["claimed_source"] = claimed
            reasons.insert(0, f"replays the {claimed} path (claimed by {out['triggered_by']})")
    if params.get("reason"):
        reasons.append(str(params["reason"]))
    if source == "schedule" and not reasons:
        reasons.append("scheduled retrain")
    return {
        "source": source,
        "reasons": reasons or [f"{source} run"],
        "force": bool(params.get("force")),
        "window": params.get("window") or None,
        "run_type": run_type,
        **out,
        **({"batches": batches} if batches else {}),
    }


# -- 2. snapshot ----------------------------------------------------------------------------------------
def snapshot(cfg: ModelConfig, window: str | None = None, require: list[str] | None = None) -> dict[str, Any]:
    """Snapshot the labelled archived data inside the training window (content-addressed).

    ``require``: batches that requested this retrain; they must be archived already (the monitor archives
    before it requests), otherwise this raises a retryable error rather than train without them."""

    archived = {p.name for p in root(cfg).archived()}
    missing = [b for b in require or [] if b not in archived]
    if missing:
        raise LookupError(f"batches {missing} requested this retrain but are not in archive/{cfg.name}/ yet")
    ingest(cfg, by="retrain", kinds=("labels",))  # labels that landed since the last monitor run count too
    df, sources = gather_window(cfg, root(cfg), window, label_filler(cfg))
    snap = create_snapshot(
        df,
        root(cfg).snapshots,
        time_column=cfg.data.time_column,
        sources=sources,
        extra={"model": cfg.name, "window": window or cfg.training.window},
    )
    return {**snap.to_dict(), "sources": sources}


def _snapshot_frame(cfg: ModelConfig, snap: dict[str, Any]) -> pd.DataFrame:
    """The snapshot's rows, re-hashed; each step that reads it renews its use (gc keeps it while in use)."""

    df = load_snapshot(root(cfg).snapshots, snap["sha256"])
    touch(root(cfg).snapshots, snap["sha256"])
    return df


# -- 3. gate ------------------------------------------------------------------------------------------
def gate(cfg: ModelConfig, snap: dict[str, Any]) -> dict[str, Any]:
    """GX gate on the training snapshot: config expectations, target required (no reference ranges)."""
    df = _snapshot_frame(cfg, snap)
    docs = root(cfg).gx_dir(f"snapshot-{snap['sha256'][:12]}")
    result = quality.validate(
        df,
        quality.build_expectations(cfg, None, require_target=True),
        name=f"{cfg.name}_snapshot_{snap['sha256'][:12]}",
        docs_dir=docs,
    )
    return {"success": result["success"], "gx_result": result["result_path"]}


# -- 4. train -----------------------------------------------------------------------------------------
# The train_* metrics score at most this many training rows (a seeded sample): predicting a million rows
# to log how well the model fits its own data took as long as the fit itself.
TRAIN_METRIC_ROWS = 100_000


def run_key(cfg: ModelConfig, snap_sha: str) -> str:
    return hashlib.sha256(f"{snap_sha}:{cfg.fingerprint}".encode()).hexdigest()[:20]


class _Fitted(NamedTuple):
    """A fitted model with the frames it was fitted and scored on and its scores."""

    model: Any
    train_df: pd.DataFrame
    holdout: pd.DataFrame
    scored_train: pd.DataFrame  # the rows the train_* metrics score (a seeded sample of a large window)
    scores: dict[str, float]
    train_scores: dict[str, float]


def _finished_run(cfg: ModelConfig, key: str) -> dict[str, Any] | None:
    """The result of a finished training run for ``key`` (re-runs reuse it), or None."""
    tracking.client()
    done = tracking.find_runs(
        cfg.name, "train", f"tags.`retrainer.run_key` = '{key}' and attributes.status = 'FINISHED'"
    )
    if not done:
        return None
    run = done[-1]
    log.info("training run %s already exists for run_key %s: reused", run.info.run_id, key)
    return {
        "run_id": run.info.run_id,
        "run_key": key,
        "reused": True,
        "holdout": tracking.holdout_metrics(run),
    }


def _fit_and_score(cfg: ModelConfig, df: pd.DataFrame) -> _Fitted:
    """Fit on the snapshot minus its holdout; score the holdout and (a sample of) the training rows."""
    train_df, holdout = split_holdout(cfg, df)
    scored_train = train_df  # train metrics (an overfitting check) from a seeded sample of a large window
    if len(train_df) > TRAIN_METRIC_ROWS:
        scored_train = train_df.sample(n=TRAIN_METRIC_ROWS, random_state=0)
    with thread_cap(cfg, settings.threads()):
        model = fit(cfg, train_df)
        scores = metrics.score(cfg, model, holdout)  # probability metrics too, for classifiers that have them
        train_scores = metrics.score(cfg, model, scored_train)
    return _Fitted(model, train_df, holdout, scored_train, scores, train_scores)


def _log_training(
    cfg: ModelConfig,
    snap: dict[str, Any],
    trigger: dict[str, Any],
    dag_run_id: str,
    key: str,
    df: pd.DataFrame,
    fitted: _Fitted,
) -> str:
    """Log the training run to MLflow (tags, params, metrics, the snapshot as input, the model); its id."""
    import mlflow

    with mlflow.start_run(
        experiment_id=tracking.experiment_id(cfg.name, "train"), run_name=f"train-{snap['sha256'][:8]}"
    ) as run:
        mlflow.set_tags(
            tracking.flat_tags(
                {
                    "kind": "train",
                    "run_key": key,
                    "snapshot_sha256": snap["sha256"],
                    "config_fingerprint": cfg.fingerprint,
                    "trigger_source": trigger["source"],
                    "trigger_reasons": trigger["reasons"],
                    "triggered_by": trigger.get("triggered_by"),
                    "claimed_source": trigger.get("claimed_source"),
                    "dag_run_id": dag_run_id,
                    "outcome": "pending",
                }
            )
        )
        mlflow.log_params(
            {
                "estimator": cfg.model.estimator,
                **{f"model.{k}": v for k, v in cfg.model.params.items()},
                "window": snap.get("window") or trigger.get("window") or cfg.training.window,
                "holdout": cfg.training.holdout,
                "train_rows": len(fitted.train_df),
                "holdout_rows": len(fitted.holdout),
                "snapshot_rows": len(df),
                "train_metric_rows": len(fitted.scored_train),
            }
        )
        mlflow.log_metrics({f"holdout_{k}": v for k, v in fitted.scores.items() if v == v})  # skip NaN
        mlflow.log_metrics({f"train_{k}": v for k, v in fitted.train_scores.items() if v == v})

        manifest = read_manifest(root(cfg).snapshots, snap["sha256"])
        tracking.log_snapshot_input(  # by reference: hash, rows, schema, a sample (no scan of the data)
            f"{cfg.name}-{snap['sha256'][:12]}",
            {**snap, "path": str(root(cfg).snapshots / snap["sha256"]), "rows": len(df)},
            manifest["schema"],
            cfg.data.target,
            df.sample(n=min(len(df), tracking.SAMPLE_ROWS), random_state=0).sort_index(),
        )
        mlflow.log_dict(snap, "snapshot.json")
        mlflow.log_dict(cfg.model_dump(mode="json"), "config.json")  # what `retrainer reproduce` replays
        with thread_cap(cfg, settings.threads()):  # MLflow predicts the sample for the signature
            log_model(
                fitted.model, fitted.train_df[cfg.data.feature_names].head(5), cfg
            )  # signature from a sample
    return str(run.info.run_id)


def train(
    cfg: ModelConfig, snap: dict[str, Any], trigger: dict[str, Any], dag_run_id: str = ""
) -> dict[str, Any]:
    """Fit the estimator on the snapshot minus its holdout and log everything to an MLflow run."""
    key = run_key(cfg, snap["sha256"])
    reused = _finished_run(cfg, key)
    if reused is not None:
        return reused
    df = _snapshot_frame(cfg, snap)
    fitted = _fit_and_score(cfg, df)
    run_id = _log_training(cfg, snap, trigger, dag_run_id, key, df, fitted)
    log.info(
        "trained %s on %d rows; holdout (%d rows) %s",
        cfg.model.estimator,
        len(fitted.train_df),
        len(fitted.holdout),
        fitted.scores,
    )
    return {
        "run_id": run_id,
        "run_key": key,
        "reused": False,
        "holdout": fitted.scores,
        "train_rows": len(fitted.train_df),
        "holdout_rows": len(fitted.holdout),
    }


# -- 5. evaluate ----------------------------------------------------------------------------------------
def metric_thresholds(cfg: ModelConfig, champion_value: float | None, force: bool) -> dict[str, Any]:
    """The validation rule as MLflow ``MetricThreshold``s: absolute floors from the config, and
    non-inferiority to the champion (from :func:`retrainer.gates.compare.limits`)."""
    from mlflow.models import MetricThreshold

    return {
        name: MetricThreshold(threshold=limit, greater_is_better=greater)
        for name, (limit, greater) in compare.limits(cfg, champion_value, force).items()
    }


class _Champion(NamedTuple):
    """The serving champion as ``evaluate`` compares with it."""

    version: RegisteredVersion | None
    scores: dict[str, float]  # on the candidate's holdout; empty when there is none or it is unscorable
    cfg: ModelConfig | None  # the config it scores with (its own features), None when not scored
    model: Any
    unscorable: str | None  # why it cannot be scored on this holdout, or None


def _champion_on(cfg: ModelConfig, holdout: pd.DataFrame) -> _Champion:
    """Score the champion on the holdout with the features it was trained on. One that needs a feature
    the snapshot no longer has (removed from the config) cannot be compared and is replaced like no
    champion."""
    champ = registry.champion(cfg.name)
    scores: dict[str, float] = {}
    champion_unscorable = (
        None
        if champ is None
        else unscorable(cfg, champ, list(holdout.columns), "the holdout of this snapshot")
    )
    champion_cfg = scoring_config(cfg, champ) if champ is not None and champion_unscorable is None else None
    champion_model = (
        load_run_model(champ.run_id, cfg) if champion_cfg is not None and champ is not None else None
    )
    if champion_model is not None and champion_cfg is not None:
        with thread_cap(cfg, settings.threads()):
            scores = metrics.score(champion_cfg, champion_model, holdout)
    elif champion_unscorable:
        log.warning("%s", champion_unscorable)
    return _Champion(champ, scores, champion_cfg, champion_model, champion_unscorable)


def _threshold_failures(
    thresholds: dict[str, Any], candidate: dict[str, float], trained: dict[str, Any], champion: _Champion
) -> list[str]:
    """The failed comparisons: "no change" when the candidate is the champion's own run, then each check
    ``mlflow.validate_evaluation_results`` fails."""
    import mlflow
    from mlflow.exceptions import MlflowException
    from mlflow.models.evaluation import EvaluationResult

    champ = champion.version
    failed: list[str] = []
    if champ is not None and champ.run_id == trained["run_id"]:
        failed.append(f"no change: same snapshot and config as champion v{champ.version} (no new data)")
    try:
        mlflow.validate_evaluation_results(
            thresholds,
            EvaluationResult(candidate, {}, trained["run_id"]),
            EvaluationResult(champion.scores, {}, champ.run_id if champ else None),
        )
    except MlflowException as exc:  # ModelValidationFailedException: the message lists each failed check
        failed.extend(line.strip(" -") for line in str(exc).splitlines() if line.strip())
        if not failed:
            failed.append(str(exc))
    return failed


def _record_validation(trained: dict[str, Any], out: dict[str, Any]) -> None:
    """The verdict on the candidate's training run: outcome tag, the record, the champion's scores."""
    c = tracking.client()
    c.set_tag(trained["run_id"], "retrainer.outcome", "validated" if out["passed"] else "rejected")
    c.set_tag(trained["run_id"], "retrainer.validation", tracking.json_value(out)[:5000])
    c.log_dict(trained["run_id"], out, "validation.json")  # the full record, whatever its length
    for k, v in out["champion"].items():
        c.log_metric(trained["run_id"], f"champion_holdout_{k}", v)


def evaluate(
    cfg: ModelConfig, snap: dict[str, Any], trained: dict[str, Any], force: bool = False
) -> dict[str, Any]:
    """Candidate vs champion on the same held-out most recent data, validated with MLflow thresholds.

    The thresholds come from :func:`retrainer.gates.compare.limits`; the backtest applies the same rule with
    :func:`retrainer.gates.compare.failed_checks` (a test holds the two verdicts equal)."""
    candidate = dict(trained["holdout"])
    train_df, holdout = split_holdout(cfg, _snapshot_frame(cfg, snap))
    champion = _champion_on(cfg, holdout)
    champ = champion.version
    thresholds = metric_thresholds(cfg, champion.scores.get(cfg.metric), force)
    failed = _threshold_failures(thresholds, candidate, trained, champion)
    # force skips the comparisons with the champion (slices too); the behavioural checks always apply
    with thread_cap(cfg, settings.threads()):
        model_checks = run_checks(
            cfg,
            load_run_model(trained["run_id"], cfg),
            None if force else champion.model,
            holdout,
            train_df,
            champion.cfg,
        )
    failed.extend(c.detail for c in model_checks if not c.passed)
    passed = not failed
    checks = [
        f"{m} {candidate.get(m, float('nan')):.4g} {'<=' if t.greater_is_better is False else '>='} {t.threshold:.4g}"
        for m, t in thresholds.items()
    ]
    out = {
        "passed": passed,
        "failed_checks": failed,
        "checks": checks,
        "model_checks": [c.to_dict() for c in model_checks],
        "candidate": candidate,
        "champion": champion.scores,
        "champion_version": champ.version if champ else None,
        "metric": cfg.metric,
        "forced": force,
        **({"champion_unscorable": champion.unscorable} if champion.unscorable else {}),
    }
    if champ is not None and champ.run_id == trained["run_id"] and len(failed) == 1:
        # the candidate is the serving champion and nothing but "no change" failed (a re-run, or no new
        # data): its run keeps the outcome it earned when it was registered
        log.info("candidate run %s is champion v%s: nothing to register", trained["run_id"], champ.version)
        return out
    _record_validation(trained, out)
    log.info(
        "validation %s: candidate %s vs champion v%s %s; failed: %s",
        "PASSED" if passed else "REJECTED",
        candidate,
        out["champion_version"],
        champion.scores,
        failed,
    )
    return out


# -- 6. register and 7. promote -------------------------------------------------------------------------
def register(
    cfg: ModelConfig,
    snap: dict[str, Any],
    trained: dict[str, Any],
    evaluation: dict[str, Any],
    trigger: dict[str, Any],
) -> dict[str, Any]:
    """Register a candidate that passed validation; raise :class:`ModelRejected` for one that did not.

    The candidate's snapshot is checked again first (present, content matching its hash): a version is
    never registered on a snapshot ``retrainer reproduce`` could not read. A missing or altered snapshot
    raises :class:`SnapshotIntegrityError` and nothing is registered."""
    if not evaluation["passed"]:
        raise ModelRejected(
            "candidate rejected: " + "; ".join(evaluation["failed_checks"]), evaluation["failed_checks"]
        )
    try:
        _snapshot_frame(cfg, snap)
    except (SnapshotIntegrityError, OSError, ValueError) as exc:
        raise SnapshotIntegrityError(
            f"not registering the candidate of training run {trained['run_id']}: its snapshot "
            f"{snap['sha256'][:12]} cannot be read as written ({exc}); nothing was registered and the "
            "champion is unchanged. Run the retrain again: it writes the snapshot anew"
        ) from exc
    version, created = registry.register(
        cfg.name,
        trained["run_id"],
        trained["run_key"],
        tracking.flat_tags(
            {
                "snapshot_sha256": snap["sha256"],
                "trigger_source": trigger["source"],
                "trigger_reasons": trigger["reasons"],
                "config_fingerprint": cfg.fingerprint,
                f"holdout_{cfg.metric}": evaluation["candidate"].get(cfg.metric),
            }
        ),
    )
    tracking.client().set_tag(trained["run_id"], "retrainer.registered_version", str(version))
    return {"version": version, "created": created}


def promote(
    cfg: ModelConfig,
    registered: dict[str, Any],
    evaluation: dict[str, Any],
    trigger: dict[str, Any],
    dag_run_id: str = "",
) -> dict[str, Any]:
    """Move the new version per the promotion mode (``champion`` now, or ``challenger`` for shadow /
    approval) and record why. If the champion moved since ``evaluate`` compared against it, the new
    version is staged as challenger instead, with the reason in ``refused``."""

    cand, base = evaluation["candidate"].get(cfg.metric), evaluation["champion"].get(cfg.metric)
    reason = (
        f"{trigger['source']}: {'; '.join(trigger['reasons'])} | {cfg.metric} "
        f"{'-' if cand is None else f'{cand:.4g}'} vs champion {'-' if base is None else f'{base:.4g}'}"
    )
    staged = stage(
        cfg,
        registered["version"],
        reason,
        f"dag_run:{dag_run_id}" if dag_run_id else "cli",
        compared_with=evaluation.get("champion_version", "unchecked"),
        champion_unscorable=evaluation.get("champion_unscorable"),
    )
    return {**staged, "promoted": staged["alias"] == registry.CHAMPION and staged["event"] is not None}
