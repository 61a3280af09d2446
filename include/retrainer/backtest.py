"""``retrainer backtest``: replay a time-ordered dataset through the retraining policies, prequentially.

The replay uses the code the DAGs use, in memory and without Airflow or MLflow: the training window of
:func:`retrainer.train.select_window`, :func:`~retrainer.train.split_holdout` and
:func:`~retrainer.train.fit`; the candidate-vs-champion rule of :func:`retrainer.compare.failed_checks`;
the drift numbers of :func:`retrainer.drift.drift_signals`; and the policy entry point
:func:`retrainer.policy.step` (detector, decision, cooldown, hysteresis, follow-up).

Prequential: each batch is first predicted by the current model and scored against its labels (the
score the policy is judged by); then the labels of batch ``i - label_delay`` become known to the policy
and to training; then the policy decides, and a retrain that passes validation serves the next batch.
The first ``warmup`` batches only train the first model.

Policies: ``never``; ``every_batch`` and ``every_k`` (k = 2..K), the fixed-schedule frontier; ``trigger``
(the config's ``triggers``); and the config's named ``backtest.alternatives``. A fit is cached by the last
labelled batch it saw (every policy retraining at that point trains the identical model), so the whole
report costs at most one fit per batch.
"""

from __future__ import annotations

import logging
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from retrainer import compare, feeds, metrics, policy
from retrainer.config import LOWER_IS_BETTER, duration_hours
from retrainer.exceptions import BatchError, RetrainerError

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from retrainer.config import ModelConfig, TriggerConfig

log = logging.getLogger(__name__)
SCHEMA_VERSION = 2
STEP = policy.step  # the policy entry point, shared with the monitor DAG (retrainer.monitor.STEP)
BOOTSTRAP = 2000


# -- data -------------------------------------------------------------------------------------------------
def load_data(cfg: ModelConfig, data: str) -> pd.DataFrame:
    """Read ``data`` (CSV/Parquet path, or a shipped dataset name) and check it against the config."""
    import pandas as pd

    from retrainer import datasets
    from retrainer.storage import read_batch
    from retrainer.train import prepare

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
    from retrainer.datasets import weekly_batches

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
            from retrainer.estimation import fit_estimator

            self._estimator = fit_estimator(cfg, self.model, self.holdout) or False
        return self._estimator or None

    @property
    def id(self) -> str:
        return f"upto-{self.upto}"

    def reference(self, cfg: ModelConfig) -> pd.DataFrame:
        """The training window with this model's predictions: the drift reference (as in the monitor)."""
        if self._reference is None:
            from retrainer.train import predict

            ref = self.window.copy()
            ref["prediction"] = predict(cfg, self.model, ref)
            self._reference = ref
        return self._reference


class Replay:
    """Everything the policies share: the batches, labelled history, and the fit cache."""

    def __init__(self, cfg: ModelConfig, batches: list[tuple[str, pd.DataFrame]], warmup: int, delay: int):
        import pandas as pd

        from retrainer.train import labelled

        self.cfg, self.batches, self.warmup, self.delay = cfg, batches, warmup, delay
        self.names = [n for n, _ in batches]
        frames = []
        for i, (_, b) in enumerate(batches):
            lab = labelled(cfg, b).copy()
            lab["_batch"] = i
            frames.append(lab)
        self.labelled = pd.concat(frames, ignore_index=True)
        self._fits: dict[int, Fitted | str] = {}

    def fit(self, upto: int) -> Fitted | str:
        """The model a retrain trains when labels up to batch ``upto`` are known (or why it cannot)."""
        if upto in self._fits:
            return self._fits[upto]
        from retrainer.train import fit, select_window, split_holdout

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
    champ_scores = metrics.score(cfg, champion.model, cand.holdout) if len(cand.holdout) else {}
    failed = compare.failed_checks(cfg, cand.holdout_metrics, champ_scores)
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
) -> PolicyRun:
    """Replay every evaluation batch under one policy."""
    from retrainer.train import predict

    cfg = replay.cfg
    run = PolicyRun(name, kind, k)
    started = time.perf_counter()
    first = replay.fit(replay.warmup - 1)  # the history before the replay trains the first champion
    if isinstance(first, str):
        raise RetrainerError(f"cannot train the first model from {replay.warmup} warm-up batches: {first}")
    champion = first
    state = policy.PolicyState()
    preds: dict[int, tuple[str, np.ndarray, Any, Any]] = {}
    for i in range(replay.warmup, len(replay.batches)):
        batch = replay.batches[i][1]
        pred = predict(cfg, champion.model, batch)
        proba, classes = metrics.predict_proba(cfg, champion.model, batch)
        preds[i] = (champion.id, pred, proba, classes)
        lab = batch[cfg.data.target].notna().to_numpy()
        scores = metrics.compute(
            cfg.task,
            batch[cfg.data.target].to_numpy()[lab],
            pred[lab],
            None if proba is None else proba[lab],
            classes,
        )
        run.per_batch.append(scores.get(cfg.metric, float("nan")))
        run.per_batch_all.append(scores)
        step = i - replay.warmup + 1
        if kind == "schedule":
            retrain = step % (k or 1) == 0
        elif kind == "trigger":
            assert triggers is not None
            retrain, state = _trigger_step(replay, run, champion, triggers, i, pred, preds, state)
            run.states.append(state)
        else:
            retrain = False
        if retrain:
            champion = _retrain(replay, run, champion, i)
        if progress is not None:
            progress.update(1)
    run.seconds += time.perf_counter() - started
    return run


def _trigger_step(
    replay: Replay,
    run: PolicyRun,
    champion: Fitted,
    t: TriggerConfig,
    i: int,
    pred: np.ndarray,
    preds: dict[int, tuple[str, np.ndarray, Any, Any]],
    state: policy.PolicyState,
) -> tuple[bool, policy.PolicyState]:
    """Signals for batch ``i`` as the monitor measures them, then the shared policy step."""
    from dataclasses import replace

    from retrainer.drift import drift_signals

    cfg = replay.cfg
    cur = replay.batches[i][1].copy()
    cur["prediction"] = pred
    drift: dict[str, Any] = {}
    if t.data_drift is not None or t.prediction_drift is not None:
        drift = drift_signals(cfg, champion.reference(cfg), cur)
    metric = cfg.trigger_metric
    signals = policy.Signals(
        data_drift_share=drift.get("data_drift_share"),
        drifted_columns=tuple(drift.get("drifted_columns") or ()),
        prediction_drift=drift.get("prediction_drift"),
        metric_name=metric,
        lower_is_better=metric in LOWER_IS_BETTER,
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
        batch_j = replay.batches[j][1]
        lab = batch_j[cfg.data.target].notna().to_numpy()
        y, p = batch_j[cfg.data.target].to_numpy()[lab], preds[j][1][lab]
        matured = feeds.Matured(replay.names[j], preds[j][0], y, p, batches_late=i - j)
        perf = feeds.performance_signal(cfg, [matured], champion.id)
        value = perf["value"]
        proba = preds[j][2]
        if metric in metrics.PROBABILITY_METRICS and proba is not None and preds[j][0] == champion.id:
            value = metrics.compute(cfg.task, y, p, proba[lab], preds[j][3]).get(metric)
        if perf["labelled_rows"]:
            signals = replace(
                signals,
                metric_value=value,
                metric_reference=champion.holdout_metrics.get(metric),
                labelled_rows=perf["labelled_rows"],
            )
            errors = perf["errors"]
    decision, new_state, _ = STEP(signals, t, state, errors=errors, model_id=champion.id)
    run.decisions.append({"batch": i, "retrain": decision.retrain, **decision.details})
    for name in decision.fired:
        run.fired[name] = run.fired.get(name, 0) + 1
    run.suppressed += decision.suppressed_by is not None
    return decision.retrain, new_state


def _baseline(replay: Replay) -> PolicyRun:
    """Majority class / mean of the labelled training window, refreshed every batch (no model)."""
    import numpy as np

    from retrainer.train import select_window

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
        scores = metrics.compute(cfg.task, y, np.full(len(y), const))
        run.per_batch.append(scores.get(cfg.metric, float("nan")))
        run.per_batch_all.append(scores)
    run.seconds = time.perf_counter() - started
    return run


# -- summaries --------------------------------------------------------------------------------------------
def _summary(cfg: ModelConfig, run: PolicyRun, n_batches: int) -> dict[str, Any]:
    import numpy as np

    vals = np.array(run.per_batch, dtype=float)
    names = sorted({k for s in run.per_batch_all for k in s})
    means = {m: float(np.nanmean([s.get(m, np.nan) for s in run.per_batch_all])) for m in names}
    worst = float(np.nanmax(vals) if cfg.lower_is_better else np.nanmin(vals))
    return {
        "mean": float(np.nanmean(vals)),
        "worst": worst,
        "retrains": len(run.retrain_batches),
        "promoted": len(run.promoted_batches),
        "rejected": len(run.rejected),
        "rows_trained": int(run.rows_trained),
        "seconds": round(run.seconds, 3),
        "metrics": means,
        "kind": run.kind,
        "k": run.k,
        "retrain_batches": run.retrain_batches,
        "per_batch": [float(v) for v in vals],
        **({"fired": run.fired, "suppressed": run.suppressed} if run.kind == "trigger" else {}),
        **({"rejections": run.rejected[:50]} if run.rejected else {}),
    }


def frontier_points(summaries: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """The fixed-schedule frontier: never, every_K ... every_batch, by number of retrains."""
    pts = [
        {"policy": n, "retrains": s["retrains"], "mean": s["mean"]}
        for n, s in summaries.items()
        if s["kind"] in {"never", "schedule"}
    ]
    return sorted(pts, key=lambda p: (p["retrains"], p["policy"]))


def _interpolate(summaries: dict[str, dict[str, Any]], retrains: int) -> tuple[np.ndarray, float, list[str]]:
    """Per-batch frontier metric at ``retrains`` (linear between the neighbouring schedules)."""
    import numpy as np

    pts = frontier_points(summaries)
    series = {p["policy"]: np.array(summaries[p["policy"]]["per_batch"]) for p in pts}
    lower = [p for p in pts if p["retrains"] <= retrains]
    upper = [p for p in pts if p["retrains"] >= retrains]
    a = lower[-1] if lower else pts[0]
    b = upper[0] if upper else pts[-1]
    if a["retrains"] == b["retrains"]:
        return series[a["policy"]], float(np.nanmean(series[a["policy"]])), [a["policy"]]
    w = (retrains - a["retrains"]) / (b["retrains"] - a["retrains"])
    s = (1 - w) * series[a["policy"]] + w * series[b["policy"]]
    return s, float(np.nanmean(s)), [a["policy"], b["policy"]]


RECOVERED_TARGET = 0.95  # share of every_batch's gain over never a policy should recover ...
SHARE_TARGET = 0.25  # ... with at most this share of every_batch's retrains


def recovered_gain(cfg: ModelConfig, summaries: dict[str, dict[str, Any]], name: str) -> float:
    """(policy - never) / (every_batch - never) on the mean metric: 1 = every_batch's quality, 0 = never's."""
    never, eb = summaries["never"]["mean"], summaries["every_batch"]["mean"]
    if eb == never:
        return float("nan")
    return (summaries[name]["mean"] - never) / (eb - never)


def versus_frontier(cfg: ModelConfig, summaries: dict[str, dict[str, Any]], name: str) -> dict[str, Any]:
    """A policy against the schedule frontier at its number of retrains, and against every_batch."""
    import numpy as np

    s = summaries[name]
    mine = np.array(s["per_batch"])
    frontier, frontier_mean, between = _interpolate(summaries, s["retrains"])
    diff = mine - frontier  # per batch, in metric units
    ok = ~np.isnan(diff)
    d = diff[ok]
    rng = np.random.default_rng(0)
    boots = (
        d[rng.integers(0, len(d), size=(BOOTSTRAP, len(d)))].mean(axis=1) if len(d) else np.array([np.nan])
    )
    lo, hi = (float(v) for v in np.percentile(boots, [2.5, 97.5]))
    sign = -1.0 if cfg.lower_is_better else 1.0  # "advantage" > 0 means better than the frontier
    eb = summaries["every_batch"]
    gap = s["mean"] - eb["mean"]
    rel = gap / abs(eb["mean"]) if eb["mean"] else float("nan")
    fraction = s["retrains"] / eb["retrains"] if eb["retrains"] else float("nan")
    advantage = sign * float(np.mean(d)) if len(d) else float("nan")
    recovered = recovered_gain(cfg, summaries, name)
    ci_better = bool((hi < 0) if cfg.lower_is_better else (lo > 0))
    return {
        "policy": name,
        "retrains": s["retrains"],
        "mean": s["mean"],
        "frontier_mean": frontier_mean,
        "frontier_between": between,
        "difference": float(np.mean(d)) if len(d) else float("nan"),
        "ci95": [lo, hi],
        "advantage": advantage,
        "better_is": "lower" if cfg.lower_is_better else "higher",
        "every_batch_mean": eb["mean"],
        "gap_to_every_batch": gap,
        "relative_gap_to_every_batch": rel,
        "retrain_fraction": fraction,
        "retrain_share": fraction,
        "recovered_gain": recovered,
        "criteria": {
            "recovered_at_least": RECOVERED_TARGET,
            "retrain_share_at_most": SHARE_TARGET,
            "recovered": bool(recovered >= RECOVERED_TARGET),
            "share": bool(fraction <= SHARE_TARGET),
            "above_frontier": bool(advantage > 0),
            "above_frontier_ci_excludes_0": ci_better,
            "all": bool(recovered >= RECOVERED_TARGET and fraction <= SHARE_TARGET and ci_better),
        },
    }


def slice_summaries(
    summaries: dict[str, dict[str, Any]], lo: int, hi: int, warmup: int
) -> dict[str, dict[str, Any]]:
    """The summaries restricted to evaluation batches ``lo <= index < hi`` (means and retrains recounted)."""
    import numpy as np

    out = {}
    for name, s in summaries.items():
        per = s["per_batch"][lo:hi]
        retr = [i for i in s["retrain_batches"] if lo <= i - warmup < hi]
        out[name] = {
            **s,
            "per_batch": per,
            "mean": float(np.nanmean(per)) if per else float("nan"),
            "retrains": len(retr),
            "retrain_batches": retr,
        }
    return out


def halves(cfg: ModelConfig, summaries: dict[str, dict[str, Any]], warmup: int) -> dict[str, Any]:
    """Every policy on the first and on the second half of the evaluation batches, separately.

    Tuning chooses on the first half of each stream; the second half is reported as held out.
    """
    n = len(summaries["never"]["per_batch"])
    mid = n // 2
    out: dict[str, Any] = {}
    for label, (lo, hi) in {"first": (0, mid), "second": (mid, n)}.items():
        part = slice_summaries(summaries, lo, hi, warmup)
        rows = {name: versus_frontier(cfg, part, name) for name, s in part.items() if s["kind"] == "trigger"}
        out[label] = {
            "batches": [lo, hi],
            "every_batch_retrains": part["every_batch"]["retrains"],
            "never_mean": part["never"]["mean"],
            "every_batch_mean": part["every_batch"]["mean"],
            "policies": {
                name: {
                    "mean": p["mean"],
                    "retrains": p["retrains"],
                    "recovered_gain": recovered_gain(cfg, part, name),
                    "retrain_share": p["retrains"] / part["every_batch"]["retrains"]
                    if part["every_batch"]["retrains"]
                    else float("nan"),
                }
                for name, p in part.items()
            },
            "vs_frontier": rows,
        }
    return out


# -- the oracle bound ------------------------------------------------------------------------------------
def _fast_metric(metric: str, y: np.ndarray, p: np.ndarray) -> float | None:
    """``metric`` on one batch without sklearn's overhead (the same definitions), or None if not covered."""
    import numpy as np

    if not len(y):
        return float("nan")
    if metric == "rmse":
        return float(np.sqrt(np.mean((y.astype(float) - p.astype(float)) ** 2)))
    if metric == "mae":
        return float(np.mean(np.abs(y.astype(float) - p.astype(float))))
    if metric == "accuracy":
        return float(np.mean(y == p))
    if metric == "f1":  # macro over the classes present in labels or predictions, zero_division=0
        scores = []
        for c in np.union1d(y, p):
            tp = np.sum((y == c) & (p == c))
            denom = 2 * tp + np.sum((y != c) & (p == c)) + np.sum((y == c) & (p != c))
            scores.append(2 * tp / denom if denom else 0.0)
        return float(np.mean(scores))
    return None


def labelled_rows(cfg: ModelConfig, batch: pd.DataFrame) -> pd.DataFrame:
    """The rows of ``batch`` with a label."""
    return batch[batch[cfg.data.target].notna()]


def model_metrics(replay: Replay) -> tuple[np.ndarray, list[int]]:
    """The configured metric of every model the replay can train, on every batch after it could serve.

    Row 0 is the first model (trained before the replay); row ``r + 1`` is the model a retrain at
    evaluation batch ``r`` trains (labels up to ``r - label_delay``), which serves from batch ``r + 1``.
    Entry ``[row, e]`` is that model's metric on evaluation batch ``e`` (NaN where it cannot serve or
    the fit failed). Uses the replay's fit cache: after ``every_batch`` has run, no new fit is needed.
    """
    import numpy as np

    from retrainer.train import predict

    import pandas as pd

    cfg, w = replay.cfg, replay.warmup
    n = len(replay.batches) - w
    out = np.full((n + 1, n), np.nan)
    frames = [labelled_rows(cfg, replay.batches[i][1]) for i in range(w, len(replay.batches))]
    sizes = [len(f) for f in frames]
    starts = np.concatenate([[0], np.cumsum(sizes)])
    rows = pd.concat(frames, ignore_index=True)
    ys = rows[cfg.data.target].to_numpy()
    need_proba = cfg.metric in metrics.PROBABILITY_METRICS
    for row in range(n):  # the model serving from batch `row` (row 0: the first model)
        fitted = replay.fit(w - 1 if row == 0 else w + row - 1 - replay.delay)
        if isinstance(fitted, str):
            continue
        later = rows.iloc[starts[row] :]
        pred = predict(cfg, fitted.model, later)  # one call per model: every later batch at once
        proba, classes = metrics.predict_proba(cfg, fitted.model, later) if need_proba else (None, None)
        for e in range(row, n):
            a, b = starts[e] - starts[row], starts[e + 1] - starts[row]
            y = ys[starts[e] : starts[e + 1]]
            value = None if need_proba else _fast_metric(cfg.metric, y, pred[a:b])
            if value is None:
                value = metrics.compute(
                    cfg.task, y, pred[a:b], None if proba is None else proba[a:b], classes
                ).get(cfg.metric, float("nan"))
            out[row, e] = value
    return out, sizes


def oracle_curve(values: np.ndarray, lower_is_better: bool, lo: int = 0, hi: int | None = None) -> list[float]:
    """The best mean metric on batches ``lo <= e < hi`` reachable with exactly/at most m retrains.

    ``values`` is :func:`model_metrics`' matrix. A schedule is a set of retrain batches in ``[lo, hi)``
    (a retrain at ``r`` serves from ``r + 1``); whatever served batch ``lo`` may be any model trained
    before it (for ``lo = 0``: the first model). Every retrain is assumed to be promoted, so this bounds
    every policy with at most m retrains from above, whatever its validation rejected. Dynamic
    programming over (retrains, last retrain batch), O(m n^2). Returns the best mean for m = 0 .. hi - lo.
    """
    import numpy as np

    n = values.shape[1]
    hi = n if hi is None else hi
    sign = -1.0 if lower_is_better else 1.0
    v = sign * np.nan_to_num(values[:, lo:hi], nan=0.0)  # rows: models; cols: batches of the slice
    valid = ~np.isnan(values[:, lo:hi])
    batches = max(1, int(np.max(np.sum(valid, axis=1)))) if valid.any() else 1
    L = hi - lo
    cum = np.concatenate([np.zeros((v.shape[0], 1)), np.cumsum(v, axis=1)], axis=1)  # sum of cols < j
    neg = -np.inf
    # start: the best model able to serve batch lo (rows 0..lo) for a segment lo..lo+j-1
    starts = [r for r in range(lo + 1) if not np.isnan(values[r, lo])] or [0]
    # g[r] (r = slice position of the last retrain) = best total over slice cols <= r
    seg0 = np.max(cum[starts, :], axis=0)  # seg0[j] = best start model's total over cols < j
    best = [seg0[L]]
    # one retrain at position r: start model over cols 0..r, then model row lo+r+1 over cols r+1..
    g = seg0[1 : L + 1].copy()  # total over cols 0..r, for r = 0..L-1
    ok_rows = np.array([lo + r + 1 < n and not np.isnan(values[lo + r + 1, lo + r + 1]) for r in range(L)])
    rows = np.minimum(np.arange(L) + lo + 1, values.shape[0] - 1)
    for _m in range(1, L + 1):
        # finish: the model of the last retrain at r serves cols r+1 .. L-1
        tail = np.where(ok_rows, cum[rows, L] - cum[rows, np.arange(L) + 1], neg)
        tail = np.where(np.arange(L) == L - 1, 0.0, tail)  # a retrain on the last batch serves nothing
        best.append(max(best[-1], float(np.max(g + tail))))
        # next retrain at r' > r: model of r serves cols r+1 .. r'
        cr = cum[rows]  # (L, L + 1)
        # trans[r, r'] = cum[row_r, r' + 1] - cum[row_r, r + 1] for r < r'
        trans = cr[:, 1:] - cr[np.arange(L), np.arange(L) + 1][:, None]
        mask = np.arange(L)[:, None] < np.arange(L)[None, :]
        trans = np.where(mask & ok_rows[:, None], trans, neg)
        g = np.max(g[:, None] + trans, axis=0)
        if not np.isfinite(g).any():
            best += [best[-1]] * (L - _m)
            break
    return [sign * b / batches for b in best]


def oracle(cfg: ModelConfig, summaries: dict[str, dict[str, Any]], values: np.ndarray) -> dict[str, Any]:
    """The oracle bound on the whole replay and on each half, as mean metric and recovered gain by retrains."""
    n = values.shape[1]
    out: dict[str, Any] = {}
    for label, (lo, hi) in {"whole": (0, n), "first": (0, n // 2), "second": (n // 2, n)}.items():
        part = summaries if label == "whole" else slice_summaries(summaries, lo, hi, 0)
        means = oracle_curve(values, cfg.lower_is_better, lo, hi)
        never, eb = part["never"]["mean"], part["every_batch"]["mean"]
        rec = [(m - never) / (eb - never) if eb != never else float("nan") for m in means]
        n_eb = part["every_batch"]["retrains"] if label == "whole" else hi - lo
        out[label] = {"batches": [lo, hi], "mean": means, "recovered_gain": rec, "every_batch_retrains": n_eb}
    return out


def oracle_at(oracle_part: dict[str, Any], retrains: int) -> float:
    """The oracle's recovered gain with at most ``retrains`` retrains."""
    rec = oracle_part["recovered_gain"]
    return rec[max(0, min(retrains, len(rec) - 1))]


# -- entry point ------------------------------------------------------------------------------------------
def default_warmup(cfg: ModelConfig, freq: str) -> int:
    """Batches covering the training window (at least 2), unless the config says otherwise."""
    if cfg.backtest.warmup_batches:
        return cfg.backtest.warmup_batches
    return max(2, -(-duration_hours(cfg.training.window) // duration_hours(freq)))


def backtest(
    cfg: ModelConfig,
    df: pd.DataFrame,
    *,
    batch_freq: str | None = None,
    label_delay: int | None = None,
    warmup: int | None = None,
    max_k: int | None = None,
    progress: bool = True,
    data_name: str = "",
    oracle_bound: bool = True,
) -> dict[str, Any]:
    """Replay ``df`` through every policy and return the report (the JSON document)."""
    from threadpoolctl import threadpool_limits
    from tqdm import tqdm

    freq = batch_freq or cfg.backtest.batch_freq or "7D"
    delay = cfg.triggers.label_delay_batches if label_delay is None else label_delay
    batches = split_batches(cfg, df, freq)
    warm = warmup or default_warmup(cfg, freq)
    n_eval = len(batches) - warm
    if n_eval < 2:
        raise RetrainerError(
            f"{len(batches)} batches of {freq} are too few: {warm} warm-up batches (the training window "
            f"{cfg.training.window}) leave {n_eval} to replay; give more data, a shorter --batch-freq or --warmup"
        )
    K = max(2, min(max_k or cfg.backtest.max_k, n_eval))
    replay = Replay(cfg, batches, warm, delay)
    triggers = {"trigger": cfg.triggers, **cfg.alternative_triggers()}
    plan: list[tuple[str, str, int | None, Any]] = [("never", "never", None, None)]
    plan += [("every_batch", "schedule", 1, None)] + [
        (f"every_{k}", "schedule", k, None) for k in range(2, K + 1)
    ]
    plan += [(n, "trigger", None, t) for n, t in triggers.items()]
    bar = tqdm(
        total=len(plan) * n_eval,
        desc="backtest",
        unit="batch",
        file=sys.stderr,
        disable=not progress,
        leave=False,
    )
    runs: dict[str, PolicyRun] = {}
    # small fits gain nothing from BLAS threads and lose a lot when cores are shared; batches with a
    # single class make sklearn warn on every metric call
    with bar, threadpool_limits(1), warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=UserWarning, module="sklearn")
        for name, kind, k, t in plan:
            bar.set_postfix_str(name)
            runs[name] = run_policy(replay, name, kind, k=k, triggers=t, progress=bar)
    summaries = {n: _summary(cfg, r, n_eval) for n, r in runs.items()}
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=UserWarning, module="sklearn")
        base = _baseline(replay)
    report: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "metric": cfg.metric,
        "lower_is_better": cfg.lower_is_better,
        "task": cfg.task,
        "model": cfg.name,
        "config": cfg.source,
        "data": data_name,
        "batch_freq": freq,
        "label_delay_batches": delay,
        "warmup_batches": warm,
        "batches": n_eval,
        "rows": int(sum(len(b) for _, b in batches[warm:])),
        "batch_names": replay.names[warm:],
        "policies": summaries,
        "baseline": {"policy": base.name, **_summary(cfg, base, n_eval)},
        "frontier": frontier_points(summaries),
        "trigger_vs_frontier": versus_frontier(cfg, summaries, "trigger"),
        "recovered_gain": {n: recovered_gain(cfg, summaries, n) for n in summaries},
        "retrain_share": {
            n: s["retrains"] / summaries["every_batch"]["retrains"] for n, s in summaries.items()
        },
        "halves": halves(cfg, summaries, warm),
        "alternatives_vs_frontier": {
            n: versus_frontier(cfg, summaries, n) for n in triggers if n != "trigger"
        },
        "triggers": {n: t.model_dump(mode="json") for n, t in triggers.items()},
    }
    if oracle_bound:
        with threadpool_limits(1), warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=UserWarning, module="sklearn")
            values, _ = model_metrics(replay)
        bound = oracle(cfg, summaries, values)
        report["oracle"] = bound
        for tv in [report["trigger_vs_frontier"], *report["alternatives_vs_frontier"].values()]:
            tv["oracle_recovered_gain"] = oracle_at(bound["whole"], tv["retrains"])
        for label in ("first", "second"):
            for p in report["halves"][label]["policies"].values():
                p["oracle_recovered_gain"] = oracle_at(bound[label], p["retrains"])
    return report


# -- output -----------------------------------------------------------------------------------------------
def format_table(report: dict[str, Any]) -> str:
    """The human-readable report printed on stdout."""
    m = report["metric"]
    extra = [k for k in next(iter(report["policies"].values()))["metrics"] if k != m]
    widths = {x: max(10, len(x) + 2) for x in extra}
    head = f"{'policy':<18}{'mean ' + m:>12}{'worst':>10}" + "".join(f"{x:>{widths[x]}}" for x in extra)
    head += f"{'retrains':>10}{'share':>7}{'recovered':>10}{'promoted':>10}{'rows trained':>14}{'seconds':>9}"
    lines = [
        f"backtest of {report['model']} on {report['data']}: {report['batches']} batches of {report['batch_freq']} "
        f"({report['rows']} rows) after {report['warmup_batches']} warm-up batches; label delay "
        f"{report['label_delay_batches']} batch(es); {m} is {'lower' if report['lower_is_better'] else 'higher'}"
        " = better",
        head,
        "-" * len(head),
    ]

    def row(name: str, s: dict[str, Any]) -> str:
        cells = f"{name:<18}{s['mean']:>12.4f}{s['worst']:>10.4f}" + "".join(
            f"{s['metrics'].get(x, float('nan')):>{widths[x]}.4f}" for x in extra
        )
        share = report["retrain_share"].get(name)
        rec = report["recovered_gain"].get(name)
        cells += f"{s['retrains']:>10}" + (f"{share:>7.0%}" if share is not None else f"{'':>7}")
        cells += f"{rec:>10.1%}" if rec is not None else f"{'':>10}"
        return cells + f"{s['promoted']:>10}{s['rows_trained']:>14}{s['seconds']:>9.2f}"

    for name, s in report["policies"].items():
        lines.append(row(name, s))
    b = report["baseline"]
    lines.append(row(b["policy"], b) + "   (no model)")
    lines.append(
        "share: retrains as a share of every_batch's; recovered: (policy - never) / (every_batch - never)"
    )
    for tv in [report["trigger_vs_frontier"], *report["alternatives_vs_frontier"].values()]:
        g = tv["criteria"]
        lines += [
            "",
            f"{tv['policy']}: recovered {tv['recovered_gain']:.1%} of every_batch's gain over never with "
            f"{tv['retrain_share']:.0%} of its retrains ({tv['retrains']}); mean {m} {tv['mean']:.4f} vs "
            f"fixed-schedule frontier {tv['frontier_mean']:.4f} at the same retrains "
            f"({' / '.join(tv['frontier_between'])})",
            f"  difference {tv['difference']:+.4f} (95% CI {tv['ci95'][0]:+.4f} .. {tv['ci95'][1]:+.4f}, "
            f"paired bootstrap over batches; {tv['better_is']} is better): "
            + (
                "better than the frontier, CI excludes 0"
                if g["above_frontier_ci_excludes_0"]
                else (
                    "above the frontier, CI includes 0" if g["above_frontier"] else "NOT above the frontier"
                )
            ),
            f"  vs every_batch {tv['every_batch_mean']:.4f}: gap {tv['gap_to_every_batch']:+.4f} "
            f"({tv['relative_gap_to_every_batch']:+.1%}); recovered >= {g['recovered_at_least']:.0%}: "
            f"{'yes' if g['recovered'] else 'no'}, share <= {g['retrain_share_at_most']:.0%}: "
            f"{'yes' if g['share'] else 'no'}",
        ]
    h = report.get("halves")
    if h:
        names = ["trigger", *report["alternatives_vs_frontier"]]
        lines += ["", "by half of the replay (recovered gain / retrain share):"]
        lines.append(f"  {'policy':<18}" + "".join(f"{label + ' half':>22}" for label in h))
        for name in names:
            cells = "".join(
                f"{h[label]['policies'][name]['recovered_gain']:>13.1%} / "
                f"{h[label]['policies'][name]['retrain_share']:>4.0%}"
                for label in h
            )
            lines.append(f"  {name:<18}{cells}")
    return "\n".join(lines)


def plot(report: dict[str, Any], out: Path | str) -> Path:
    """PNG: the metric per batch per policy with retrain marks, and the frontier with the triggers on it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pol = report["policies"]
    triggers = ["trigger", *report["alternatives_vs_frontier"]]
    fig, (ax, fx) = plt.subplots(
        2, 1, figsize=(11, 7.5), gridspec_kw={"height_ratios": [3, 2]}, constrained_layout=True
    )
    x = range(report["batches"])
    window = 8 if report["batches"] > 60 else 1  # long replays: a rolling mean keeps the lines readable

    def smooth(values: list[float]) -> list[float]:
        import pandas as pd

        return list(pd.Series(values).rolling(window, min_periods=1).mean()) if window > 1 else values

    mid = f"every_{min(4, max((s['k'] or 0) for s in pol.values()))}"
    styles = {"never": ("0.6", "--"), "every_batch": ("tab:blue", "-"), mid: ("tab:green", ":")}
    for name, (color, ls) in styles.items():
        if name in pol:
            ax.plot(
                x,
                smooth(pol[name]["per_batch"]),
                color=color,
                ls=ls,
                lw=1.2,
                label=f"{name} ({pol[name]['retrains']} retrains)",
            )
    colors = ["tab:red", "tab:purple", "tab:orange", "tab:brown", "tab:pink", "tab:olive"]
    drawn = list(zip(colors, triggers, strict=False))
    for c, name in reversed(drawn):  # the config's trigger policy last, on top
        s = pol[name]
        ys = smooth(s["per_batch"])
        ax.plot(
            x, ys, color=c, lw=1.8 if name == "trigger" else 1.0, label=f"{name} ({s['retrains']} retrains)"
        )
        rb = [i - report["warmup_batches"] for i in s["retrain_batches"]]
        ax.plot(rb, [ys[i] for i in rb], "v", color=c, ms=6 if name == "trigger" else 3)
    ax.set_ylabel(f"{report['metric']} per batch" + (f" (rolling mean of {window})" if window > 1 else ""))
    ax.set_xlabel(f"batch ({report['batch_freq']}); triangles mark retrains")
    ax.set_title(
        f"{report['model']}: prequential {report['metric']} ({'lower' if report['lower_is_better'] else 'higher'} is better)"
    )
    ax.legend(fontsize=8, ncol=2)
    pts = report["frontier"]
    share, rec = report["retrain_share"], report["recovered_gain"]
    fx.plot(
        [share[p["policy"]] for p in pts],
        [rec[p["policy"]] for p in pts],
        "o-",
        color="tab:blue",
        label="fixed schedules",
    )
    for p in pts:
        fx.annotate(
            p["policy"].replace("every_", "k="),
            (share[p["policy"]], rec[p["policy"]]),
            fontsize=7,
            xytext=(3, 3),
            textcoords="offset points",
        )
    for c, name in drawn:
        fx.plot([share[name]], [rec[name]], "*", ms=14, color=c, label=name)
    fx.axhline(0.95, color="0.7", lw=0.8, ls=":")
    fx.axvline(0.25, color="0.7", lw=0.8, ls=":")
    fx.set_xlabel("retrains, share of every_batch's")
    fx.set_ylabel("recovered gain")
    fx.legend(fontsize=8)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=80)
    plt.close(fig)
    return out
