"""``retrainer backtest``: replay a time-ordered dataset through the retraining policies, prequentially.

The replay uses the code the DAGs use, in memory and without Airflow or MLflow: the training window of
:func:`retrainer.ml.train.select_window`, :func:`~retrainer.ml.train.split_holdout` and
:func:`~retrainer.ml.train.fit`; the candidate-vs-champion rule of :func:`retrainer.gates.compare.failed_checks`;
the drift numbers of :func:`retrainer.gates.drift.drift_signals`; and the policy entry point
:func:`retrainer.policy.step` (detector, decision, cooldown, hysteresis, follow-up).

Prequential: each batch is first predicted by the current model and scored against its labels (the
score the policy is judged by); then the labels of batch ``i - label_delay`` become known to the policy
and to training; then the policy decides, and a retrain that passes validation serves the next batch.
The first ``warmup`` batches only train the first model.

Policies: ``never``; ``every_batch`` and ``every_k`` (k = 2..K), the fixed-schedule frontier; ``trigger``
(the config's ``triggers``); and the config's named ``backtest.alternatives``. A fit is cached by the last
labelled batch it saw (every policy retraining at that point trains the identical model), so the whole
report costs at most one fit per batch.

Modules: :mod:`~retrainer.backtest.replay` (data, replay, policies), :mod:`~retrainer.backtest.stats`
(summaries, frontier, recovered gain, halves, oracle bound), :mod:`~retrainer.backtest.report` (text),
:mod:`~retrainer.backtest.plot` (picture). The public names are re-exported here.
"""

from __future__ import annotations

import sys
import warnings
from typing import TYPE_CHECKING, Any

from retrainer.backtest.matrix import labelled_rows, model_metrics
from retrainer.backtest.plot import plot
from retrainer.backtest.replay import (
    Fitted,
    PolicyRun,
    Replay,
    _baseline,
    _trigger_step,
    default_warmup,
    load_data,
    run_policy,
    schedule_plan,
    split_batches,
)
from retrainer.backtest.report import format_table
from retrainer.backtest.stats import (
    BOOTSTRAP,
    DEFAULT_MAX_SHARE,
    DEFAULT_TARGET_RECOVERED,
    _interpolate,
    _summary,
    frontier_points,
    halves,
    oracle,
    oracle_at,
    oracle_curve,
    recovered_gain,
    slice_summaries,
    versus_frontier,
)
from retrainer.exceptions import RetrainerError
from retrainer.ml import train

if TYPE_CHECKING:
    import pandas as pd

    from retrainer.config import ModelConfig

SCHEMA_VERSION = 2

__all__ = [
    "BOOTSTRAP",
    "DEFAULT_MAX_SHARE",
    "DEFAULT_TARGET_RECOVERED",
    "SCHEMA_VERSION",
    "Fitted",
    "PolicyRun",
    "Replay",
    "_interpolate",  # used by tests
    "_trigger_step",
    "backtest",
    "default_warmup",
    "format_table",
    "frontier_points",
    "halves",
    "labelled_rows",
    "load_data",
    "model_metrics",
    "oracle",
    "oracle_at",
    "oracle_curve",
    "plot",
    "recovered_gain",
    "run_policy",
    "schedule_plan",
    "slice_summaries",
    "split_batches",
    "versus_frontier",
]


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
    target_recovered: float = DEFAULT_TARGET_RECOVERED,
    max_share: float = DEFAULT_MAX_SHARE,
    threads: int | None = 1,
) -> dict[str, Any]:
    """Replay ``df`` through every policy and return the report (the JSON document).

    ``target_recovered`` / ``max_share`` are the comparison thresholds each trigger policy is checked
    against (``criteria``); ``oracle_bound`` adds the best recovered gain any schedule with the same
    number of retrains reaches on this replay (:func:`oracle`). ``threads`` caps the BLAS/OpenMP threads
    of the replay's fits and predictions (None: the libraries' own defaults, usually one per core).
    """
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
    plan: list[tuple[str, str, int | None, Any]] = [(n, kind, k, None) for n, kind, k in schedule_plan(K)]
    plan += [(n, "trigger", None, t) for n, t in triggers.items()]
    runs = _replay_all(replay, plan, progress, threads)
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
        **_comparisons(cfg, summaries, list(triggers), warm, target_recovered, max_share),
        "triggers": {n: t.model_dump(mode="json") for n, t in triggers.items()},
    }
    if oracle_bound:
        _add_oracle(report, replay, summaries, threads)
    return report


def _replay_all(
    replay: Replay, plan: list[tuple[str, str, int | None, Any]], progress: bool, threads: int | None
) -> dict[str, PolicyRun]:
    """Every policy of ``plan`` (name, kind, k, triggers) replayed, with one progress bar."""
    from tqdm import tqdm

    n_eval = len(replay.batches) - replay.warmup
    bar = tqdm(
        total=len(plan) * n_eval,
        desc="backtest",
        unit="batch",
        file=sys.stderr,
        disable=not progress,
        leave=False,
    )
    runs: dict[str, PolicyRun] = {}
    # small fits gain nothing from BLAS/OpenMP threads and lose a lot when cores are shared; batches with a
    # single class make sklearn warn on every metric call
    with bar, train.thread_cap(replay.cfg, threads), warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=UserWarning, module="sklearn")
        for name, kind, k, t in plan:
            bar.set_postfix_str(name)
            runs[name] = run_policy(replay, name, kind, k=k, triggers=t, progress=bar)
    return runs


def _comparisons(
    cfg: ModelConfig,
    summaries: dict[str, dict[str, Any]],
    triggers: list[str],
    warm: int,
    target_recovered: float,
    max_share: float,
) -> dict[str, Any]:
    """The report's comparisons: the frontier, each trigger policy against it, gains, shares, halves."""
    return {
        "frontier": frontier_points(summaries),
        "thresholds": {"target_recovered": target_recovered, "max_share": max_share},
        "trigger_vs_frontier": versus_frontier(cfg, summaries, "trigger", target_recovered, max_share),
        "recovered_gain": {n: recovered_gain(cfg, summaries, n) for n in summaries},
        "retrain_share": {
            n: s["retrains"] / summaries["every_batch"]["retrains"] for n, s in summaries.items()
        },
        "halves": halves(cfg, summaries, warm, target_recovered, max_share),
        "alternatives_vs_frontier": {
            n: versus_frontier(cfg, summaries, n, target_recovered, max_share)
            for n in triggers
            if n != "trigger"
        },
    }


def _add_oracle(
    report: dict[str, Any], replay: Replay, summaries: dict[str, dict[str, Any]], threads: int | None
) -> None:
    """The oracle bound (every model on every later batch) and each policy's oracle at its retrains."""
    cfg = replay.cfg
    with train.thread_cap(cfg, threads), warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=UserWarning, module="sklearn")
        values, _ = model_metrics(replay)
    bound = oracle(cfg, summaries, values)
    report["oracle"] = bound
    for tv in [report["trigger_vs_frontier"], *report["alternatives_vs_frontier"].values()]:
        tv["oracle_recovered_gain"] = oracle_at(bound["whole"], tv["retrains"])
    for label in ("first", "second"):
        for p in report["halves"][label]["policies"].values():
            p["oracle_recovered_gain"] = oracle_at(bound[label], p["retrains"])
