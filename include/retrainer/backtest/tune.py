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

import json
import sys
import time
import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from retrainer.backtest.replay import (
    PolicyRun,
    Replay,
    default_warmup,
    model_metrics,
    run_policy,
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
from retrainer.config import TriggerConfig, parse_config
from retrainer.exceptions import RetrainerError
from retrainer.ml import train

if TYPE_CHECKING:
    import pandas as pd

    from retrainer.config import ModelConfig

SCHEMA_VERSION = 1
DEFAULT_SPLIT = 0.6
TOP_SIGNALS = 3  # signal sets whose timing is searched in the second pass

# the keys a candidate sets; everything else in `triggers` (estimation, label delay, sensor) is the config's
_OFF: dict[str, Any] = {
    "data_drift": None,
    "prediction_drift": None,
    "performance": None,
    "error_detector": None,
    "cost": None,
    "combine": "any",
}
_PDA = {"mode": "auto", "threshold": 0.15, "z": 3.0}


def _ctl(z: float) -> dict[str, Any]:
    return {"mode": "control", "z": z, "max_degradation": 0.25}


# The signal sets searched: name -> the signal sections (the others off). "no_signal" leaves the retrains to
# the timing alone (the age floor: a fixed schedule; without one, never retrain).
SIGNALS: dict[str, dict[str, Any]] = {
    "no_signal": {},
    "performance_control_z1": {"performance": _ctl(1.0)},
    "performance_control_z2": {"performance": _ctl(2.0)},
    "performance_control_z3": {"performance": _ctl(3.0)},
    "performance_relative_10": {"performance": {"mode": "relative", "max_degradation": 0.10}},
    "performance_relative_25": {"performance": {"mode": "relative", "max_degradation": 0.25}},
    "performance_cusum_h2": {"performance": {"mode": "cusum", "cusum_k": 0.5, "cusum_h": 2.0}},
    "performance_cusum_h4": {"performance": {"mode": "cusum", "cusum_k": 0.5, "cusum_h": 4.0}},
    "prediction_drift_auto": {"prediction_drift": _PDA},
    "prediction_drift_0.3": {"prediction_drift": {"mode": "absolute", "threshold": 0.3}},
    "error_detector_adwin": {"error_detector": {"method": "adwin"}},
    "prediction_drift_auto+performance_control_z1": {"prediction_drift": _PDA, "performance": _ctl(1.0)},
    "prediction_drift_auto+performance_control_z2": {"prediction_drift": _PDA, "performance": _ctl(2.0)},
}

# The timings searched for the best signal sets: cooldown x age floor, and a retrain budget (its share is
# --max-share, filled in at search time).
TIMINGS: dict[str, dict[str, Any]] = {
    **{
        f"cooldown{c}_age{a or 'off'}": {
            "cooldown_batches": c,
            "max_age_batches": a,
            "budget_share": None,
            "follow_up_refit": False,
        }
        for c in (1, 3, 5)
        for a in (None, 4, 8)
    },
    "budget_age_off": {
        "cooldown_batches": 1,
        "max_age_batches": None,
        "budget_share": "max_share",
        "budget_burst": 2.0,
        "follow_up_refit": False,
    },
}
FIRST_TIMING = "cooldown3_age8"  # the shipped default's timing: the first pass
# never retrain: 0 retrains, the frontier's first point, so always within the bounds (the choice when
# --max-share is below what every other policy of the family uses)
NEVER = ("no_signal", "cooldown3_ageoff")


@dataclass
class Candidate:
    """One policy of the family and its figures on the search part."""

    name: str
    signals: str
    timing: str
    triggers: TriggerConfig
    search: dict[str, Any] = field(default_factory=dict)

    @property
    def eligible(self) -> bool:
        return bool(self.search.get("eligible"))


def shipped_default(cfg: ModelConfig) -> TriggerConfig:
    """The trigger policy a model gets without a ``triggers`` section (the config's label delay kept)."""
    default = TriggerConfig(label_delay_batches=cfg.triggers.label_delay_batches)
    perf = default.performance
    if perf is not None and "min_batch_rows" in cfg.data.model_fields_set:  # as ModelConfig does
        rows = min(perf.min_labelled_rows, cfg.data.min_batch_rows)
        default = default.model_copy(
            update={"performance": perf.model_copy(update={"min_labelled_rows": rows})}
        )
    return default


def candidate_triggers(cfg: ModelConfig, signals: str, timing: str, max_share: float) -> TriggerConfig:
    """The config's ``triggers`` with one signal set and one timing of the family."""
    sections = {**_OFF, **SIGNALS[signals]}
    perf = sections.get("performance")
    if perf is not None:  # the config's labelled-rows floor stays (a batch's size is the stream's)
        rows = (cfg.triggers.performance or shipped_default(cfg).performance).min_labelled_rows  # type: ignore[union-attr]
        sections["performance"] = {"min_labelled_rows": rows, **perf}
    tim = {k: (max_share if v == "max_share" else v) for k, v in TIMINGS[timing].items()}
    base = cfg.triggers.model_dump()
    return TriggerConfig.model_validate({**base, **sections, **tim})


def _key(t: TriggerConfig) -> str:
    return json.dumps(t.model_dump(mode="json"), sort_keys=True)


def _worse(cfg: ModelConfig, ci: list[float]) -> bool:
    """Below the frontier with the CI excluding 0."""
    lo, hi = ci
    return bool(lo > 0) if cfg.lower_is_better else bool(hi < 0)


def _better(cfg: ModelConfig, ci: list[float]) -> bool:
    lo, hi = ci
    return bool(hi < 0) if cfg.lower_is_better else bool(lo > 0)


def place(cfg: ModelConfig, ci: list[float]) -> str:
    """``above`` / ``below`` the frontier when the CI excludes 0, else ``tied``."""
    return "above" if _better(cfg, ci) else "below" if _worse(cfg, ci) else "tied"


def _score(cfg: ModelConfig, c: Candidate) -> tuple[bool, float, int]:
    """Sort key (higher first): eligible, the mean metric (sign so that higher is better), fewer retrains."""
    sign = -1.0 if cfg.lower_is_better else 1.0
    mean = c.search["mean"]
    return (c.eligible, sign * mean if mean == mean else float("-inf"), -c.search["retrains"])


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

    if not 0 < split < 1:
        raise RetrainerError(f"--split {split}: give the search part's share of the batches, between 0 and 1")
    if not 0 < max_share <= 1:
        raise RetrainerError(f"--max-share {max_share}: give a share of every_batch's retrains, in (0, 1]")
    started = time.perf_counter()
    freq = batch_freq or cfg.backtest.batch_freq or "7D"
    delay = cfg.triggers.label_delay_batches if label_delay is None else label_delay
    # the policies are tuned for this label delay: the written config says so
    cfg = cfg.model_copy(update={"triggers": cfg.triggers.model_copy(update={"label_delay_batches": delay})})
    batches = split_batches(cfg, df, freq)
    w = warmup or default_warmup(cfg, freq)
    n = len(batches) - w
    m = round(n * split)
    if m < 4 or n - m < 4:
        raise RetrainerError(
            f"{len(batches)} batches of {freq} after {w} warm-up batches leave {n} to replay: the search part "
            f"({m}) and the verification part ({n - m}) need at least 4 each; give more history, a shorter "
            "--batch-freq or another --split"
        )
    replay = Replay(cfg, batches, w, delay)
    replay.share_predictions = True
    K = max(2, min(max_k or cfg.backtest.max_k, n))
    default = shipped_default(cfg)
    pool = [
        Candidate(f"{s}/{FIRST_TIMING}", s, FIRST_TIMING, candidate_triggers(cfg, s, FIRST_TIMING, max_share))
        for s in SIGNALS
    ]
    pool.append(Candidate("/".join(NEVER), *NEVER, candidate_triggers(cfg, *NEVER, max_share)))
    second = TOP_SIGNALS * (len(TIMINGS) - 1)
    bar = tqdm(
        total=(K + 1) * n + (len(pool) + second) * m + 3 * n,
        desc="tune",
        unit="batch",
        file=sys.stderr,
        disable=not progress,
        leave=False,
    )
    with bar, train.thread_cap(cfg, threads), warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=UserWarning, module="sklearn")
        sched_runs = {"never": run_policy(replay, "never", "never", progress=bar)}
        for k in range(1, K + 1):
            name = "every_batch" if k == 1 else f"every_{k}"
            bar.set_postfix_str(name)
            sched_runs[name] = run_policy(replay, name, "schedule", k=k, progress=bar)
        schedules = {name: _summary(cfg, r, n) for name, r in sched_runs.items()}
        search = _Search(cfg, replay, m, max_share, bar)
        for c in pool:
            search.search_run(c, schedules)
        ranked = sorted(pool, key=lambda c: _score(cfg, c), reverse=True)
        best_signals = [c.signals for c in ranked[:TOP_SIGNALS]]
        for s in best_signals:
            for tname in TIMINGS:
                if tname == FIRST_TIMING or (s, tname) == NEVER:  # already in the first pass
                    continue
                c = Candidate(f"{s}/{tname}", s, tname, candidate_triggers(cfg, s, tname, max_share))
                search.search_run(c, schedules)
                pool.append(c)
        chosen = max(pool, key=lambda c: _score(cfg, c))
        if not chosen.eligible:
            raise RetrainerError(
                f"no policy of the family uses at most {max_share:.0%} of every_batch's retrains on the search "
                "part without falling below the fixed-schedule frontier; give a larger --max-share"
            )
        finals = {"chosen": chosen.triggers, "shipped_default": default}
        if _key(cfg.triggers) != _key(default):
            finals["configured"] = cfg.triggers
        summaries = dict(schedules)
        for name, t in finals.items():
            bar.set_postfix_str(name)
            summaries[name] = _summary(cfg, run_policy(replay, name, "trigger", triggers=t, progress=bar), n)
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
            "name": chosen.name,
            "signals": chosen.signals,
            "timing": chosen.timing,
            "triggers": chosen.triggers.model_dump(mode="json"),
            "search": chosen.search,
        },
        "candidates": [
            {"name": c.name, "signals": c.signals, "timing": c.timing, **c.search} for c in ranked
        ],
        "parts": parts,
        "policies": {name: t.model_dump(mode="json") for name, t in finals.items()},
        "replays": search.replays + len(sched_runs) + len(finals),
        "fits": sum(1 for f in replay._fits.values() if not isinstance(f, str)),
        "seconds": round(time.perf_counter() - started, 1),
    }


LABELS = {"chosen": "chosen", "shipped_default": "shipped default", "configured": "this config's policy"}


def format_tune(report: dict[str, Any]) -> str:
    """The text printed by ``retrainer tune``."""
    m = report["metric"]
    s, v = report["search_batches"], report["verification_batches"]
    lines = [
        f"tune of {report['model']} on {report['data']}: {report['batches']} batches of {report['batch_freq']} "
        f"after {report['warmup_batches']} warm-up batches; label delay {report['label_delay_batches']} "
        f"batch(es); {m} is {'lower' if report['lower_is_better'] else 'higher'} = better",
        f"search part: {report['parts']['search']['batches'][1]} batches ({s[0]} .. {s[1]}); verification "
        f"part: {report['batches'] - report['parts']['search']['batches'][1]} batches ({v[0]} .. {v[1]}), "
        "never used to choose",
        f"searched {len(report['candidates'])} policies ({report['replays']} replays, {report['fits']} fits) "
        f"in {report['seconds']:.0f} s",
        f"chosen: {report['chosen']['name']} (the best {m} on the search part with a retrain share <= "
        f"{report['max_share']:.0%} and not below the fixed-schedule frontier)",
        *(
            ["  that is: never retrain on a signal (a human flag or `retrainer retrain` still can)"]
            if (report["chosen"]["signals"], report["chosen"]["timing"]) == NEVER
            else []
        ),
        "",
    ]
    head = f"{'policy':<22}" + "".join(
        f"{label + ' part: recovered (95% CI)':>38}{'share':>7}{'frontier':>10}{'oracle':>8}"
        for label in ("search", "verification")
    )
    lines += [head, "-" * len(head)]
    for name in report["parts"]["search"]["policies"]:
        cells = f"{LABELS.get(name, name):<22}"
        for label in ("search", "verification"):
            p = report["parts"][label]["policies"][name]
            lo, hi = p["recovered_gain_ci95"]
            ci = (
                f"{p['recovered_gain']:.0%} ({lo:.0%} .. {hi:.0%})"
                if lo == lo
                else f"{p['recovered_gain']:.0%}"
            )
            cells += (
                f"{ci:>38}{p['retrain_share']:>7.0%}{p['vs_frontier']:>10}{p['oracle_recovered_gain']:>8.0%}"
            )
        lines.append(cells)
    for label in ("search", "verification"):
        part = report["parts"][label]
        pts = ", ".join(
            f"{p['policy']} {p['recovered_gain']:.0%}/{p['retrains']}"
            for p in part["frontier"]
            if p["retrains"]
        )
        lines.append(
            f"{label} part: never {m} {part['never_mean']:.4f}, every_batch {part['every_batch_mean']:.4f} "
            f"({part['every_batch_retrains']} retrains); schedules (recovered/retrains): {pts}"
        )
        if not _every_batch_gains(report, part):
            lines.append(
                f"  on the {label} part retraining every batch is no better than never retraining: recovered "
                "gain there is the share of every_batch's loss a policy takes on (0% = as good as never)"
            )
    lines += [
        "recovered: (policy - never) / (every_batch - never); share: retrains as a share of every_batch's; "
        "frontier: against the fixed schedules at the same retrains (paired bootstrap over batches: above/below "
        "when the 95% CI excludes 0, else tied); oracle: the best schedule with the same retrains, chosen in "
        "hindsight",
        "",
        "best policies on the search part:",
    ]
    for c in report["candidates"][:8]:
        lines.append(
            f"  {c['name']:<58}{c['recovered_gain']:>7.0%}{c['retrain_share']:>7.0%}  {c['vs_frontier']:<6}"
            + ("" if c["eligible"] else "  (not eligible)")
        )
    return "\n".join(lines)


def _every_batch_gains(report: dict[str, Any], part: dict[str, Any]) -> bool:
    """Whether retraining every batch beats never retraining on a part (by the mean metric)."""
    eb, never = part["every_batch_mean"], part["never_mean"]
    return bool(eb < never) if report["lower_is_better"] else bool(eb > never)


def tuned_yaml(source_text: str, report: dict[str, Any]) -> str:
    """The config text with its top-level ``triggers:`` block replaced by the chosen policy, and a comment
    stating the evidence. Everything else in the file, comments included, is kept as it was."""
    import yaml

    block = _triggers_block(report)
    text = yaml.safe_dump({"triggers": block}, sort_keys=False, default_flow_style=None, width=100)
    lines = source_text.splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith("triggers:")), None)
    if start is None:
        out = [*lines, ""]
        end = len(lines)
        start = end
    else:
        # the block: up to its last indented line (comments and blank lines after it stay: they may
        # belong to the next key)
        end, i = start + 1, start + 1
        while i < len(lines) and (not lines[i].strip() or lines[i][0] in " \t#"):
            if lines[i].strip() and lines[i][0] in " \t":
                end = i + 1
            i += 1
        out = lines
    new = [*_evidence(report), *text.rstrip("\n").splitlines()]
    return "\n".join([*out[:start], *new, *out[end:]]) + "\n"


# the keys written: the family's keys, and the config's own where the chosen policy keeps them
_WRITTEN = (
    "data_drift",
    "prediction_drift",
    "performance",
    "error_detector",
    "cost",
    "combine",
    "cooldown_batches",
    "max_age_batches",
    "budget_share",
    "budget_burst",
    "follow_up_refit",
)


def _triggers_block(report: dict[str, Any]) -> dict[str, Any]:
    """The chosen ``triggers`` mapping: every key the search sets (so no default fills a gap), plus the
    config's own settings that differ from the defaults."""
    chosen = report["chosen"]["triggers"]
    defaults = TriggerConfig().model_dump(mode="json")
    block = {k: chosen[k] for k in _WRITTEN}
    block.update({k: v for k, v in chosen.items() if k not in block and defaults.get(k) != v})
    if block.get("budget_share") is None:
        block.pop("budget_burst", None)
    return block


def _evidence(report: dict[str, Any]) -> list[str]:
    """The comment above the written ``triggers:`` block: what was searched and what it measured."""
    out = []
    for label in ("search", "verification"):
        p = report["parts"][label]["policies"]["chosen"]
        d = report["parts"][label]["policies"]["shipped_default"]
        out.append(
            f"#   {label} part: recovered {p['recovered_gain']:.0%} of every_batch's gain with "
            f"{p['retrain_share']:.0%} of its retrains ({p['vs_frontier']} the fixed-schedule frontier; oracle "
            f"{p['oracle_recovered_gain']:.0%}); shipped default {d['recovered_gain']:.0%} with "
            f"{d['retrain_share']:.0%}"
        )
    s, v = report["search_batches"], report["verification_batches"]
    return [
        f"# Trigger policy chosen by `retrainer tune` on {report['data']} ({report['batches']} batches of "
        f"{report['batch_freq']}, label delay {report['label_delay_batches']}): {report['chosen']['name']},",
        f"# the best {report['metric']} on the search part ({s[0]} .. {s[1]}) among {len(report['candidates'])} "
        f"policies with a retrain share <= {report['max_share']:.0%}, not below the fixed-schedule frontier;",
        f"# verified on the later part ({v[0]} .. {v[1]}), which was not used to choose.",
        *out,
    ]


def check_tuned(text: str, report: dict[str, Any], source: str) -> Any:
    """The written config parsed back: it must validate and carry exactly the chosen policy."""
    import yaml

    cfg = parse_config(yaml.safe_load(text), source)
    want = TriggerConfig.model_validate(report["chosen"]["triggers"])
    if _key(cfg.triggers) != _key(want):
        raise RetrainerError(f"{source}: the written triggers block does not read back as the chosen policy")
    return cfg
