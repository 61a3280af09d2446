"""The replay: batches, labelled history, cached fits, and every policy replayed through them.

Prequential: each batch is first predicted by the current model and scored against its labels (the
score the policy is judged by); then the labels of batch ``i - label_delay`` become known to the policy
and to training; then the policy decides, and a retrain that passes validation serves the next batch.
The first ``warmup`` batches only train the first model. A fit is cached by the last labelled batch it
saw (every policy retraining at that point trains the identical model).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from retrainer import policy
from retrainer.config import duration_hours
from retrainer.exceptions import BatchError, RetrainerError
from retrainer.gates import compare
from retrainer.gates.drift import drift_signals
from retrainer.ml import datasets, metrics
from retrainer.ml.datasets import weekly_batches
from retrainer.ml.estimation import fit_estimator
from retrainer.ml.metrics import worse_by_units
from retrainer.ml.train import fit, labelled, predict, prepare, select_window, split_holdout
from retrainer.policy.benefit import Benefit, paired_benefit, row_losses
from retrainer.stages import feeds
from retrainer.storage import read_batch

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from retrainer.config import ModelConfig, TriggerConfig

log = logging.getLogger(__name__)


# -- data -------------------------------------------------------------------------------------------------
def load_data(cfg: ModelConfig, data: str) -> pd.DataFrame:
    """Read ``data`` (CSV/Parquet path, or a shipped dataset name) and check it against the config."""
    import pandas as pd

    path = Path(data)
    if data in datasets.DATASETS and not path.exists():
        df = datasets.load(data)
    elif not path.exists():
        raise BatchError(
            f"--data {data}: no such file (give a CSV/Parquet file or one of {sorted(datasets.DATASETS)})"
        )
    elif path.suffix not in {".csv", ".parquet"}:
        raise BatchError(f"--data {data}: unsupported format {path.suffix!r} (use .csv or .parquet)")
    else:
        df = read_batch(path)
    need = [cfg.data.time_column, cfg.data.target, *cfg.data.feature_names]
    missing = [c for c in need if c not in df.columns]
    if missing:
        raise BatchError(
            f"--data {data}: missing column(s) {missing} required by {cfg.source or cfg.name} "
            f"(has {list(df.columns)[:20]})"
        )
    try:
        df = prepare(cfg, df)
    except (ValueError, TypeError) as exc:
        raise BatchError(f"--data {data}: column {cfg.data.time_column!r} is not a timestamp: {exc}") from exc
    for c in cfg.data.numeric:
        if not pd.api.types.is_numeric_dtype(df[c]):
            raise BatchError(
                f"--data {data}: feature {c!r} is declared numeric but holds {df[c].dtype} values"
            )
    if df[cfg.data.target].isna().all():
        raise BatchError(f"--data {data}: target {cfg.data.target!r} has no labels")
    return df.sort_values(cfg.data.time_column, kind="mergesort").reset_index(drop=True)


def split_batches(cfg: ModelConfig, df: pd.DataFrame, freq: str) -> list[tuple[str, pd.DataFrame]]:
    """Consecutive batches of length ``freq`` (e.g. ``7D``), named by their start; empty ones dropped."""

    hours = duration_hours(freq)
    return weekly_batches(df, cfg.data.time_column, f"{hours}h")


# -- the shared replay: batches, labelled history, cached fits -------------------------------------------
@dataclass
class Fitted:
    """A model trained at some point of the replay, with what the policies need to know about it."""

    upto: int  # last batch whose labels it saw (the cache key)
    model: Any
    window: pd.DataFrame  # the training window (the snapshot: train + holdout)
    holdout: pd.DataFrame
    holdout_metrics: dict[str, float]
    train_rows: int
    seconds: float
    _reference: pd.DataFrame | None = field(default=None, repr=False)
    _estimator: Any = field(default=None, repr=False)

    def estimator(self, cfg: ModelConfig) -> Any:
        """CBPE / DLE fitted on this model's holdout (None when it cannot be fitted)."""
        if self._estimator is None:
            self._estimator = fit_estimator(cfg, self.model, self.holdout) or False
        return self._estimator or None

    @property
    def id(self) -> str:
        return f"upto-{self.upto}"

    def reference(self, cfg: ModelConfig) -> pd.DataFrame:
        """The training window with this model's predictions: the drift reference (as in the monitor)."""
        if self._reference is None:
            ref = self.window.copy()
            ref["prediction"] = predict(cfg, self.model, ref)
            self._reference = ref
        return self._reference


class Replay:
    """Everything the policies share: the batches, labelled history, and the fit cache."""

    def __init__(self, cfg: ModelConfig, batches: list[tuple[str, pd.DataFrame]], warmup: int, delay: int):
        import pandas as pd

        self.cfg, self.batches, self.warmup, self.delay = cfg, batches, warmup, delay
        self.names = [n for n, _ in batches]
        frames = []
        for i, (_, b) in enumerate(batches):
            lab = labelled(cfg, b).copy()
            lab["_batch"] = i
            frames.append(lab)
        self.labelled = pd.concat(frames, ignore_index=True)
        self._fits: dict[int, Fitted | str] = {}
        self._drift: dict[tuple[int, int], dict[str, Any]] = {}
        # (model, batch) -> predictions and scores; off by default (it holds every batch's predictions of
        # every model), on where many policies replay the same champions (``retrainer tune``)
        self.share_predictions = False
        self._served: dict[tuple[int, int], tuple[Any, Any, Any, dict[str, float]]] = {}
        self._matured: dict[tuple[str, str, int, int], tuple[dict[str, Any], float | None]] = {}
        self._validated: dict[tuple[int, int], list[str]] = {}  # (champion, candidate) -> failed checks

    def served(self, champion: Fitted, i: int) -> tuple[np.ndarray, Any, Any, dict[str, float]]:
        """``champion``'s predictions (labels, probabilities, classes) on batch ``i`` and its scores there."""

        key = (champion.upto, i)
        if key in self._served:
            return self._served[key]
        cfg, batch = self.cfg, self.batches[i][1]
        pred = predict(cfg, champion.model, batch)
        proba, classes = metrics.predict_proba(cfg, champion.model, batch)
        lab = batch[cfg.data.target].notna().to_numpy()
        scores = metrics.compute(
            cfg.task,
            batch[cfg.data.target].to_numpy()[lab],
            pred[lab],
            None if proba is None else proba[lab],
            classes,
            metrics.custom(cfg),
        )
        out = (pred, proba, classes, scores)
        if self.share_predictions:
            self._served[key] = out
        return out

    def drift(self, champion: Fitted, i: int, cur: pd.DataFrame) -> dict[str, Any]:
        """The drift signals of ``champion`` on batch ``i`` (cached: policies share champions)."""

        key = (champion.upto, i)
        if key not in self._drift:
            self._drift[key] = drift_signals(self.cfg, champion.reference(self.cfg), cur)
        return self._drift[key]

    def fit(self, upto: int) -> Fitted | str:
        """The model a retrain trains when labels up to batch ``upto`` are known (or why it cannot)."""
        if upto in self._fits:
            return self._fits[upto]

        start = time.perf_counter()
        known = self.labelled[self.labelled["_batch"] <= upto]
        try:
            if known.empty:
                raise RetrainerError("no labelled data yet")
            window, _ = select_window(self.cfg, known)
            train_df, holdout = split_holdout(self.cfg, window)
        except RetrainerError as exc:
            self._fits[upto] = f"retrain failed: {exc}"
            return self._fits[upto]
        model = fit(self.cfg, train_df)
        scores = metrics.score(self.cfg, model, holdout) if len(holdout) else {}
        out = Fitted(upto, model, window, holdout, scores, len(train_df), time.perf_counter() - start)
        self._fits[upto] = out
        return out


# -- one policy's replay ---------------------------------------------------------------------------------
@dataclass
class PolicyRun:
    name: str
    kind: str  # never | schedule | trigger
    k: int | None = None
    per_batch: list[float] = field(default_factory=list)
    per_batch_all: list[dict[str, float]] = field(default_factory=list)
    retrain_batches: list[int] = field(default_factory=list)  # batch indices where a retrain ran
    promoted_batches: list[int] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)
    rows_trained: int = 0
    seconds: float = 0.0
    fired: dict[str, int] = field(default_factory=dict)
    suppressed: int = 0
    states: list[Any] = field(default_factory=list)  # policy state after each batch (trigger policies)
    estimates: list[float | None] = field(default_factory=list)  # CBPE / DLE estimate per batch
    decisions: list[dict[str, Any]] = field(default_factory=list)  # the numbers behind each decision
    rollback_batches: list[int] = field(default_factory=list)  # promotions judged as losing, undone
    judged: list[dict[str, Any]] = field(default_factory=list)  # promotions judged: batch, gap, lost
    backed_off: int = 0  # requests held by the back-off after losing promotions


def schedule_plan(max_k: int) -> list[tuple[str, str, int | None]]:
    """The reference policies every report replays, as (name, kind, k): ``never``, ``every_batch`` and
    ``every_k`` for k = 2..``max_k`` (the fixed-schedule frontier)."""
    plan: list[tuple[str, str, int | None]] = [("never", "never", None), ("every_batch", "schedule", 1)]
    return plan + [(f"every_{k}", "schedule", k) for k in range(2, max_k + 1)]


def _retrain(replay: Replay, run: PolicyRun, champion: Fitted, i: int) -> Fitted:
    """Retrain at batch ``i`` as the retrain DAG does: window, fit, validate against the champion."""
    cfg = replay.cfg
    upto = i - replay.delay
    run.retrain_batches.append(i)
    cand = replay.fit(upto)
    if isinstance(cand, str):
        run.rejected.append(f"{replay.names[i]}: {cand}")
        return champion
    run.rows_trained += cand.train_rows
    run.seconds += cand.seconds  # charged to every policy that trains it, cached or not
    if cand.upto == champion.upto:
        run.rejected.append(f"{replay.names[i]}: no change: same training data as the champion")
        return champion
    key = (champion.upto, cand.upto)  # the same two models: the same verdict, whichever policy asks
    if key not in replay._validated:
        champ_scores = metrics.score(cfg, champion.model, cand.holdout) if len(cand.holdout) else {}
        replay._validated[key] = compare.failed_checks(cfg, cand.holdout_metrics, champ_scores)
    failed = replay._validated[key]
    if failed:
        run.rejected.append(f"{replay.names[i]}: " + "; ".join(failed))
        return champion
    run.promoted_batches.append(i)
    return cand


def run_policy(
    replay: Replay,
    name: str,
    kind: str,
    *,
    k: int | None = None,
    triggers: TriggerConfig | None = None,
    progress: Any = None,
    stop: int | None = None,
) -> PolicyRun:
    """Replay every evaluation batch under one policy (up to batch index ``stop``, exclusive, if given)."""
    cfg = replay.cfg
    run = PolicyRun(name, kind, k)
    started = time.perf_counter()
    first = replay.fit(replay.warmup - 1)  # the history before the replay trains the first champion
    if isinstance(first, str):
        raise RetrainerError(f"cannot train the first model from {replay.warmup} warm-up batches: {first}")
    champion, replaced = first, None  # replaced: the model the champion's promotion replaced
    state = policy.PolicyState()
    preds: dict[int, tuple[str, np.ndarray, Any, Any]] = {}
    for i in range(replay.warmup, len(replay.batches) if stop is None else stop):
        pred, proba, classes, scores = replay.served(champion, i)
        preds[i] = (champion.id, pred, proba, classes)
        run.per_batch.append(scores.get(cfg.metric, float("nan")))
        run.per_batch_all.append(scores)
        step = i - replay.warmup + 1
        if kind == "schedule":
            retrain = step % (k or 1) == 0
        elif kind == "trigger":
            assert triggers is not None
            served = (champion, replaced)
            decision, state = _trigger_step(replay, run, served, triggers, i, pred, preds, state)
            run.states.append(state)
            retrain = decision.retrain
            if decision.rollback and replaced is not None:  # back to the model the promotion replaced
                champion, replaced = replaced, None
                run.rollback_batches.append(i)
        else:
            retrain = False
        if retrain:
            new = _retrain(replay, run, champion, i)
            champion, replaced = new, (champion if new is not champion else replaced)
        if progress is not None:
            progress.update(1)
    run.seconds += time.perf_counter() - started
    return run


def _trigger_step(
    replay: Replay,
    run: PolicyRun,
    served: tuple[Fitted, Fitted | None],
    t: TriggerConfig,
    i: int,
    pred: np.ndarray,
    preds: dict[int, tuple[str, np.ndarray, Any, Any]],
    state: policy.PolicyState,
) -> tuple[policy.Decision, policy.PolicyState]:
    """Signals for batch ``i`` as the monitor measures them, then the shared policy step. ``served``: the
    champion and the model its promotion replaced (None: the first model, or after a rollback)."""
    from dataclasses import replace

    cfg = replay.cfg
    champion, replaced = served
    cur = replay.batches[i][1].copy()
    cur["prediction"] = pred
    drift: dict[str, Any] = {}
    if t.data_drift is not None or t.prediction_drift is not None:
        drift = replay.drift(champion, i, cur)
    metric = cfg.trigger_metric
    signals = policy.Signals(
        data_drift_share=drift.get("data_drift_share"),
        drifted_columns=tuple(drift.get("drifted_columns") or ()),
        prediction_drift=drift.get("prediction_drift"),
        metric_name=metric,
        lower_is_better=cfg.lower_is_better,
    )
    estimate = None
    if t.performance is not None and t.performance.use_estimate and t.estimation is not None:
        est = champion.estimator(cfg)  # CBPE / DLE on the new batch, before any of its labels
        if est is not None:
            estimate = est.estimate(cfg, champion.model, cur.drop(columns=["prediction"])).get(metric)
            signals = replace(signals, estimated_value=estimate, estimate_method=est.method)
    run.estimates.append(estimate)
    errors = None
    j = feeds.due_batch(i, replay.delay)  # the batch whose labels arrive now
    if j in preds:  # the live path's rule: only the current champion's own predictions are judged
        perf, value = _matured(replay, champion, i, j, preds[j])
        if perf["labelled_rows"]:
            signals = replace(
                signals,
                metric_value=value,
                metric_reference=champion.holdout_metrics.get(metric),
                labelled_rows=perf["labelled_rows"],
            )
            errors = perf["errors"]
    if t.benefit is not None and j in preds:
        signals = replace(signals, benefit=_benefit(replay, champion, j))
    if t.judge is not None and replaced is not None and j in preds and preds[j][0] == champion.id:
        signals = replace(signals, versus_replaced=_versus(replay, champion, replaced, j))
    decision, new_state, _ = policy.step(signals, t, state, errors=errors, model_id=champion.id)
    run.decisions.append({"batch": i, "retrain": decision.retrain, **decision.details})
    if "promotion_gap" in decision.details:
        d = decision.details
        run.judged.append({"batch": i, "gap": d["promotion_gap"], "lost": bool(d["promotion_lost"])})
    for name in decision.fired:
        run.fired[name] = run.fired.get(name, 0) + 1
    run.suppressed += decision.suppressed_by is not None
    run.backed_off += (decision.suppressed_by or "").startswith("back-off")
    return decision, new_state


def _versus(replay: Replay, champion: Fitted, replaced: Fitted, j: int) -> float | None:
    """How much worse the champion did than the model it replaced on batch ``j``'s labels (metric units)."""
    metric = replay.cfg.trigger_metric
    new, old = replay.served(champion, j)[3].get(metric), replay.served(replaced, j)[3].get(metric)
    if new is None or old is None or new != new or old != old:
        return None
    return worse_by_units(new, old, replay.cfg.lower_is_better)


def _matured(
    replay: Replay, champion: Fitted, i: int, j: int, served: tuple[str, np.ndarray, Any, Any]
) -> tuple[dict[str, Any], float | None]:
    """The performance signal of batch ``j``'s labels arriving at batch ``i`` (``served``: the model that
    predicted ``j`` and its predictions), and the metric value; shared between policies when the replay
    shares predictions (the same models, batches and delay give the same numbers)."""
    key = (served[0], champion.id, j, i)
    if key in replay._matured:
        return replay._matured[key]
    cfg, metric = replay.cfg, replay.cfg.trigger_metric
    batch_j = replay.batches[j][1]
    lab = batch_j[cfg.data.target].notna().to_numpy()
    y, p = batch_j[cfg.data.target].to_numpy()[lab], served[1][lab]
    matured = feeds.Matured(replay.names[j], served[0], y, p, batches_late=i - j)
    perf = feeds.performance_signal(cfg, [matured], champion.id)
    value = perf["value"]
    proba = served[2]
    if metric in metrics.PROBABILITY_METRICS and proba is not None and served[0] == champion.id:
        value = metrics.compute(cfg.task, y, p, proba[lab], served[3], metrics.custom(cfg)).get(metric)
    if replay.share_predictions:
        replay._matured[key] = (perf, value)
    return perf, value


def _benefit(replay: Replay, champion: Fitted, j: int) -> Benefit | None:
    """The benefit signal on batch ``j`` (its labels just arrived): the model a retrain trains on the
    window ending before ``j`` against the champion, on ``j``'s labelled rows. None when the champion
    already saw that window (no newer labels) or the candidate cannot be trained."""
    if champion.upto >= j - 1:
        return None
    cand = replay.fit(j - 1)
    if isinstance(cand, str):
        return None
    cfg = replay.cfg
    y = replay.batches[j][1][cfg.data.target]
    lab = y.notna().to_numpy()
    y_true = y.to_numpy()[lab]
    champ_loss = row_losses(cfg.task, cfg.metric, y_true, replay.served(champion, j)[0][lab])
    cand_loss = row_losses(cfg.task, cfg.metric, y_true, replay.served(cand, j)[0][lab])
    return paired_benefit(champ_loss, cand_loss)


def _baseline(replay: Replay) -> PolicyRun:
    """Majority class / mean of the labelled training window, refreshed every batch (no model)."""
    import numpy as np

    cfg = replay.cfg
    run = PolicyRun("majority_class" if cfg.task == "classification" else "mean_prediction", "baseline")
    started = time.perf_counter()
    for i in range(replay.warmup, len(replay.batches)):
        known = replay.labelled[replay.labelled["_batch"] <= i - 1 - replay.delay]
        window, _ = select_window(cfg, known)
        y_train = window[cfg.data.target]
        const = y_train.mode().iloc[0] if cfg.task == "classification" else float(y_train.mean())
        batch = replay.batches[i][1]
        y = batch[cfg.data.target].dropna().to_numpy()
        scores = metrics.compute(cfg.task, y, np.full(len(y), const), custom=metrics.custom(cfg))
        run.per_batch.append(scores.get(cfg.metric, float("nan")))
        run.per_batch_all.append(scores)
    run.seconds = time.perf_counter() - started
    return run


def default_warmup(cfg: ModelConfig, freq: str) -> int:
    """Batches covering the training window (at least 2), unless the config says otherwise."""
    if cfg.backtest.warmup_batches:
        return cfg.backtest.warmup_batches
    return max(2, -(-duration_hours(cfg.training.window) // duration_hours(freq)))
