"""``retrainer tune``: choose a model's trigger policy on the earlier part of its history, verify it on the rest.

The history is replayed as ``retrainer backtest`` replays it (one :class:`~retrainer.backtest.replay.Replay`:
every policy shares its fits, drift numbers and, here, the champions' predictions). The evaluation batches
are split in time order: the **search part** (the first ``split`` of them) and the **verification part**
(the rest). A small declared family of trigger policies (:data:`SIGNALS` x :data:`TIMINGS`) is replayed on
the search part only; the chosen one has the best mean metric there (equivalently the best recovered gain)
among those with a retrain share of at most ``max_share`` and not below the fixed-schedule frontier at the
same retrains (the paired-bootstrap CI of the difference does not exclude 0 on the worse side). The
verification part is never looked at to choose; the chosen policy, the shipped default and the config's
own policy are then replayed over the whole history and reported on both parts, beside the frontier and
the oracle bound.

The search is two passes, so its cost is bounded: every signal set with the shipped default's timing,
then the timing grid for the best :data:`TOP_SIGNALS` signal sets; identical policies are replayed once.
"""

from __future__ import annotations

import sys
import time
import warnings
from typing import TYPE_CHECKING, Any

from retrainer.backtest.family import (
    FIRST_TIMING,
    NEVER,
    SIGNALS,
    TIMINGS,
    Candidate,
    _key,
    _score,
    _worse,
    candidate_triggers,
    place,
    shipped_default,
)
from retrainer.backtest.matrix import model_metrics
from retrainer.backtest.replay import (
    PolicyRun,
    Replay,
    default_warmup,
    run_policy,
    schedule_plan,
    split_batches,
)
from retrainer.backtest.stats import (
    _summary,
    frontier_points,
    oracle_at,
    oracle_curve,
    recovered_gain,
    slice_summaries,
    versus_frontier,
)
from retrainer.backtest.tune_report import LABELS, check_tuned, format_tune, tuned_yaml
from retrainer.exceptions import RetrainerError
from retrainer.ml import train

if TYPE_CHECKING:
    import pandas as pd

    from retrainer.config import ModelConfig, TriggerConfig

__all__ = [
    "DEFAULT_SPLIT",
    "LABELS",
    "NEVER",
    "SIGNALS",
    "TIMINGS",
    "Candidate",
    "candidate_triggers",
    "check_tuned",
    "format_tune",
    "place",
    "shipped_default",
    "tune",
    "tuned_yaml",
]

SCHEMA_VERSION = 1
DEFAULT_SPLIT = 0.6
TOP_SIGNALS = 3  # signal sets whose timing is searched in the second pass


class _Search:
    """The replays of one tune run: schedules over the whole history, candidates over the search part."""

    def __init__(self, cfg: ModelConfig, replay: Replay, m: int, max_share: float, bar: Any):
        self.cfg, self.replay, self.m, self.max_share, self.bar = cfg, replay, m, max_share, bar
        self.n = len(replay.batches) - replay.warmup
        self.runs: dict[str, PolicyRun] = {}  # candidate key -> its replay of the search part
        self.replays = 0

    def search_run(self, c: Candidate, schedules: dict[str, dict[str, Any]]) -> None:
        """Replay ``c`` on the search part (once per distinct policy) and judge it there."""
        cfg, w = self.cfg, self.replay.warmup
        key = _key(c.triggers)
        if key not in self.runs:
            self.bar.set_postfix_str(c.name[:40])
            self.runs[key] = run_policy(
                self.replay, c.name, "trigger", triggers=c.triggers, progress=self.bar, stop=w + self.m
            )
            self.replays += 1
        else:
            self.bar.update(self.m)
        part = slice_summaries(schedules, 0, self.m, w)
        part[c.name] = _summary(cfg, self.runs[key], self.m)
        tv = versus_frontier(cfg, part, c.name, max_share=self.max_share)
        c.search = {
            "mean": tv["mean"],
            "retrains": tv["retrains"],
            "retrain_share": tv["retrain_share"],
            "recovered_gain": tv["recovered_gain"],
            "vs_frontier": place(cfg, tv["ci95"]),
            "difference": tv["difference"],
            "ci95": tv["ci95"],
            "eligible": tv["retrain_share"] <= self.max_share and not _worse(cfg, tv["ci95"]),
        }


def _part_rows(
    cfg: ModelConfig,
    summaries: dict[str, dict[str, Any]],
    names: list[str],
    lo: int,
    hi: int,
    warmup: int,
    bound: list[float],
    max_share: float,
) -> dict[str, Any]:
    """Each named policy on evaluation batches ``lo <= e < hi``: against the frontier and the oracle bound."""
    part = slice_summaries(summaries, lo, hi, warmup)
    never, eb = part["never"]["mean"], part["every_batch"]["mean"]
    rec = [(x - never) / (eb - never) if eb != never else float("nan") for x in bound]
    oracle_part = {"recovered_gain": rec}
    rows = {}
    for name in names:
        tv = versus_frontier(cfg, part, name, max_share=max_share)
        rows[name] = {
            "mean": tv["mean"],
            "retrains": tv["retrains"],
            "retrain_share": tv["retrain_share"],
            "recovered_gain": tv["recovered_gain"],
            "recovered_gain_ci95": tv["recovered_gain_ci95"],
            "frontier_between": tv["frontier_between"],
            "frontier_mean": tv["frontier_mean"],
            "difference": tv["difference"],
            "ci95": tv["ci95"],
            "vs_frontier": place(cfg, tv["ci95"]),
            "oracle_recovered_gain": oracle_at(oracle_part, tv["retrains"]),
        }
    return {
        "batches": [lo, hi],
        "never_mean": never,
        "every_batch_mean": eb,
        "every_batch_retrains": part["every_batch"]["retrains"],
        "frontier": [
            {**p, "recovered_gain": recovered_gain(cfg, part, p["policy"])} for p in frontier_points(part)
        ],
        "policies": rows,
    }


def tune(
    cfg: ModelConfig,
    df: pd.DataFrame,
    *,
    batch_freq: str | None = None,
    label_delay: int | None = None,
    warmup: int | None = None,
    max_k: int | None = None,
    max_share: float = 0.25,
    split: float = DEFAULT_SPLIT,
    progress: bool = True,
    data_name: str = "",
    threads: int | None = 1,
) -> dict[str, Any]:
    """Search the family on the search part, verify the chosen policy on the rest; the report (JSON)."""
    from tqdm import tqdm

    _check_args(split, max_share)
    started = time.perf_counter()
    freq = batch_freq or cfg.backtest.batch_freq or "7D"
    delay = cfg.triggers.label_delay_batches if label_delay is None else label_delay
    # the policies are tuned for this label delay: the written config says so
    cfg = cfg.model_copy(update={"triggers": cfg.triggers.model_copy(update={"label_delay_batches": delay})})
    batches = split_batches(cfg, df, freq)
    w = warmup or default_warmup(cfg, freq)
    n, m = _parts_sizes(len(batches), w, split, freq)
    replay = Replay(cfg, batches, w, delay)
    replay.share_predictions = True
    plan = schedule_plan(max(2, min(max_k or cfg.backtest.max_k, n)))
    pool = _first_pass(cfg, max_share)
    second = TOP_SIGNALS * (len(TIMINGS) - 1)
    total = len(plan) * n + (len(pool) + second) * m + 3 * n
    bar = tqdm(total=total, desc="tune", unit="batch", file=sys.stderr, disable=not progress, leave=False)
    with bar, train.thread_cap(cfg, threads), warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=UserWarning, module="sklearn")
        schedules = {
            name: _summary(cfg, run_policy(replay, name, kind, k=k, progress=bar), n)
            for name, kind, k in plan
        }
        search = _Search(cfg, replay, m, max_share, bar)
        chosen = _choose(search, pool, schedules)
        finals, summaries = _finals(replay, chosen, schedules, bar)
        values, _ = model_metrics(replay)
    parts = {}
    for label, (lo, hi) in {"search": (0, m), "verification": (m, n)}.items():
        bound = oracle_curve(values, cfg.lower_is_better, lo, hi)
        parts[label] = _part_rows(cfg, summaries, list(finals), lo, hi, w, bound, max_share)
    ranked = sorted(pool, key=lambda c: _score(cfg, c), reverse=True)
    return {
        "schema_version": SCHEMA_VERSION,
        "model": cfg.name,
        "config": cfg.source,
        "data": data_name,
        "metric": cfg.metric,
        "lower_is_better": cfg.lower_is_better,
        "batch_freq": freq,
        "label_delay_batches": delay,
        "warmup_batches": w,
        "batches": n,
        "split": split,
        "max_share": max_share,
        "search_batches": [replay.names[w], replay.names[w + m - 1]],
        "verification_batches": [replay.names[w + m], replay.names[-1]],
        "chosen": {
            **_row(chosen),
            "triggers": chosen.triggers.model_dump(mode="json"),
            "search": chosen.search,
        },
        "candidates": [{**_row(c), **c.search} for c in ranked],
        "parts": parts,
        "policies": {name: t.model_dump(mode="json") for name, t in finals.items()},
        "replays": search.replays + len(plan) + len(finals),
        "fits": sum(1 for f in replay._fits.values() if not isinstance(f, str)),
        "seconds": round(time.perf_counter() - started, 1),
    }


def _finals(
    replay: Replay, chosen: Candidate, schedules: dict[str, dict[str, Any]], bar: Any
) -> tuple[dict[str, TriggerConfig], dict[str, dict[str, Any]]]:
    """The chosen policy, the shipped default and the config's own (when it differs) over the whole
    history: their triggers, and the summaries of every policy reported."""
    cfg, n = replay.cfg, len(replay.batches) - replay.warmup
    finals = {"chosen": chosen.triggers, "shipped_default": shipped_default(cfg)}
    if _key(cfg.triggers) != _key(finals["shipped_default"]):
        finals["configured"] = cfg.triggers
    summaries = dict(schedules)
    for name, t in finals.items():
        bar.set_postfix_str(name)
        summaries[name] = _summary(cfg, run_policy(replay, name, "trigger", triggers=t, progress=bar), n)
    return finals, summaries


def _check_args(split: float, max_share: float) -> None:
    if not 0 < split < 1:
        raise RetrainerError(f"--split {split}: give the search part's share of the batches, between 0 and 1")
    if not 0 < max_share <= 1:
        raise RetrainerError(f"--max-share {max_share}: give a share of every_batch's retrains, in (0, 1]")


def _parts_sizes(total: int, w: int, split: float, freq: str) -> tuple[int, int]:
    """(batches replayed, of which in the search part): at least 4 in each part."""
    n = total - w
    m = round(n * split)
    if m < 4 or n - m < 4:
        raise RetrainerError(
            f"{total} batches of {freq} after {w} warm-up batches leave {n} to replay: the search part "
            f"({m}) and the verification part ({n - m}) need at least 4 each; give more history, a shorter "
            "--batch-freq or another --split"
        )
    return n, m


def _row(c: Candidate) -> dict[str, Any]:
    return {"name": c.name, "signals": c.signals, "timing": c.timing}


def _first_pass(cfg: ModelConfig, max_share: float) -> list[Candidate]:
    """Every signal set with the shipped default's timing, and never retraining."""
    pool = [
        Candidate(f"{s}/{FIRST_TIMING}", s, FIRST_TIMING, candidate_triggers(cfg, s, FIRST_TIMING, max_share))
        for s in SIGNALS
    ]
    pool.append(Candidate("/".join(NEVER), *NEVER, candidate_triggers(cfg, *NEVER, max_share)))
    return pool


def _choose(search: _Search, pool: list[Candidate], schedules: dict[str, dict[str, Any]]) -> Candidate:
    """Both passes of the search on the search part (``pool`` grows by the second); the best eligible."""
    cfg = search.cfg
    for c in pool:
        search.search_run(c, schedules)
    ranked = sorted(pool, key=lambda c: _score(cfg, c), reverse=True)
    for s in [c.signals for c in ranked[:TOP_SIGNALS]]:
        for tname in TIMINGS:
            if tname == FIRST_TIMING or (s, tname) == NEVER:  # already in the first pass
                continue
            c = Candidate(f"{s}/{tname}", s, tname, candidate_triggers(cfg, s, tname, search.max_share))
            search.search_run(c, schedules)
            pool.append(c)
    chosen = max(pool, key=lambda c: _score(cfg, c))
    if not chosen.eligible:
        raise RetrainerError(
            f"no policy of the family uses at most {search.max_share:.0%} of every_batch's retrains on the "
            "search part without falling below the fixed-schedule frontier; give a larger --max-share"
        )
    return chosen
