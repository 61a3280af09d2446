"""Choose the default trigger policy with the backtest, honestly: on the first half of every stream.

    PYTHONPATH=include .venv/bin/python scripts/tune_triggers.py [--delays 0 2] [--streams ...]

Every variant runs on every tuning stream (the shipped demo streams and the tuning-only configs in
docs/backtest/configs/) at each label delay, as alternatives of one backtest per (stream, delay), so the
fits are shared. Each report is cached as JSON under .tune-cache/ (delete it to re-run). A variant is
scored on the **first half** of each stream's replay only (:func:`retrainer.backtest.halves`): the
total shortfall from recovered gain >= 95% at <= 25% of every_batch's retrains over all (stream,
delay) cases (robust to one lucky case), then the number of cases with none. The second half is
printed beside it as held out, never used to choose.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CACHE = REPO / ".tune-cache"
STREAMS = {
    "bikeshare": REPO / "include" / "models" / "bikeshare.yaml",
    "rainfall": REPO / "include" / "models" / "rainfall.yaml",
    "co2": REPO / "docs" / "backtest" / "configs" / "co2.yaml",
    "trump_approval": REPO / "docs" / "backtest" / "configs" / "trump_approval.yaml",
}
OFF = {
    "data_drift": None,
    "prediction_drift": None,
    "performance": None,
    "flags": None,
    "max_age_batches": None,
}
PD = {"threshold": 0.15}


def ctl(z: float, **kw: object) -> dict:
    """The performance control chart (the stream's ``min_labelled_rows`` stays as configured); rounds
    1-4 ran it without the predecessor check (``predecessor_z``, round 5)."""
    return {"mode": "control", "z": z, "predecessor_z": None, **kw}


def cusum(k: float, h: float) -> dict:
    return {"mode": "cusum", "cusum_k": k, "cusum_h": h, "predecessor_z": None}


def pdc(z: float) -> dict:
    """Prediction drift calibrated on the stream: growth since the champion's first batch in noise units."""
    return {"mode": "control", "z": z, "threshold": 0.15}


def pda(z: float) -> dict:
    """Prediction drift in auto mode: absolute until the threshold is exceeded on nearly every batch."""
    return {"mode": "auto", "z": z, "threshold": 0.15}


BUDGET = {"budget_share": 0.25, "budget_burst": 2.0, "cooldown_batches": 1}

# Round 3. Rounds 1-2 (benchmarks/tuning-history.md) settled on prediction drift 0.15 or a control chart,
# cooldown 3 (`pd_ctl2_cd3`); its weak spots: prediction drift fires on every batch of streams whose
# predictions trend (TrumpApproval, CO2), which makes the policy a fixed every-4th schedule, and single
# noisy batches. Round 3 adds the stream-calibrated prediction drift (`pdc*`), the cusum performance
# signal and the retrain budget; then `auto` (absolute until the threshold fires on nearly every batch).
VARIANTS: dict[str, dict] = {
    # the defaults before: a config without `triggers` (relative 25%, cooldown 2), and rounds 1-2's choice
    "relative25_cd2": {
        **OFF,
        "prediction_drift": PD,
        "performance": {"mode": "relative", "max_degradation": 0.25},
        "cooldown_batches": 2,
    },
    "pd_ctl2_cd3": {**OFF, "prediction_drift": PD, "performance": ctl(2.0), "cooldown_batches": 3},
    "pd30_ctl1_cd3": {
        **OFF,
        "prediction_drift": {"threshold": 0.3},
        "performance": ctl(1.0),
        "cooldown_batches": 3,
    },
    "ctl1_cd1": {**OFF, "performance": ctl(1.0), "cooldown_batches": 1},
    # cusum: a lasting decay adds up over the champion's batches
    "pd_cu05h3_cd3": {**OFF, "prediction_drift": PD, "performance": cusum(0.5, 3), "cooldown_batches": 3},
    "pd_cu0h2_cd3": {**OFF, "prediction_drift": PD, "performance": cusum(0, 2), "cooldown_batches": 3},
    # a retrain budget (25% of the batches, two saved) instead of a cooldown of 3
    "pd_ctl2_budget": {**OFF, "prediction_drift": PD, "performance": ctl(2.0), **BUDGET},
    "pd_cu05h3_budget": {**OFF, "prediction_drift": PD, "performance": cusum(0.5, 3), **BUDGET},
    # prediction drift calibrated on the stream
    "pdc1_ctl1_cd3": {**OFF, "prediction_drift": pdc(1.0), "performance": ctl(1.0), "cooldown_batches": 3},
    "pdc2_ctl2_cd3": {**OFF, "prediction_drift": pdc(2.0), "performance": ctl(2.0), "cooldown_batches": 3},
    "pdc3_ctl1_cd3": {**OFF, "prediction_drift": pdc(3.0), "performance": ctl(1.0), "cooldown_batches": 3},
    "pdc3_ctl2_cd3": {**OFF, "prediction_drift": pdc(3.0), "performance": ctl(2.0), "cooldown_batches": 3},
    "pdc3_cu0h2_cd3": {
        **OFF,
        "prediction_drift": pdc(3.0),
        "performance": cusum(0, 2),
        "cooldown_batches": 3,
    },
    "pdc2_ctl1_budget": {**OFF, "prediction_drift": pdc(2.0), "performance": ctl(1.0), **BUDGET},
    # auto: the fixed threshold until it is exceeded on 80% of the recent batches, then calibrated
    "pda2_ctl2_cd3": {**OFF, "prediction_drift": pda(2.0), "performance": ctl(2.0), "cooldown_batches": 3},
    "pda3_ctl2_cd3": {**OFF, "prediction_drift": pda(3.0), "performance": ctl(2.0), "cooldown_batches": 3},
    "pda3_ctl1_cd3": {**OFF, "prediction_drift": pda(3.0), "performance": ctl(1.0), "cooldown_batches": 3},
    # round 5: a champion retrained just after a change learnt mostly from the old data; one more refit
    # when its first batch is worse than its predecessor's first (`predecessor_z`), and a floor under
    # the signals (`max_age_batches`)
    "pda3_ctl2p2_cd3": {
        **OFF,
        "prediction_drift": pda(3.0),
        "performance": ctl(2.0, predecessor_z=2.0),
        "cooldown_batches": 3,
    },
    "pda3_ctl2p3_cd3": {
        **OFF,
        "prediction_drift": pda(3.0),
        "performance": ctl(2.0, predecessor_z=3.0),
        "cooldown_batches": 3,
    },
    "pda3_ctl2_cd3_age8": {
        **OFF,
        "prediction_drift": pda(3.0),
        "performance": ctl(2.0),
        "cooldown_batches": 3,
        "max_age_batches": 8,
    },
    "pda3_ctl2p2_cd3_age8": {
        **OFF,
        "prediction_drift": pda(3.0),
        "performance": ctl(2.0, predecessor_z=2.0),
        "cooldown_batches": 3,
        "max_age_batches": 8,
    },
}


def _with_stream_rows(cfg, override: dict) -> dict:
    """A variant's performance section on top of the stream's own (its ``min_labelled_rows`` kept)."""
    perf = override.get("performance")
    if perf is None or cfg.triggers.performance is None:
        return override
    return {
        **override,
        "performance": {"min_labelled_rows": cfg.triggers.performance.min_labelled_rows, **perf},
    }


def run(stream: str, delay: int, variants: dict[str, dict]) -> dict:
    """The backtest report of one (stream, delay) with every variant as an alternative (cached)."""
    from retrainer import backtest
    from retrainer.config import load_config

    CACHE.mkdir(exist_ok=True)
    key = CACHE / f"{stream}-d{delay}.json"
    if key.exists():
        cached = json.loads(key.read_text())
        if set(variants) <= set(cached["alternatives_vs_frontier"]) and "oracle" in cached:
            return cached
    cfg = load_config(STREAMS[stream])
    alternatives = {name: _with_stream_rows(cfg, v) for name, v in variants.items()}
    cfg = cfg.model_copy(update={"backtest": cfg.backtest.model_copy(update={"alternatives": alternatives})})
    report = backtest.backtest(
        cfg, backtest.load_data(cfg, stream), label_delay=delay, progress=False, data_name=stream
    )
    key.write_text(json.dumps(report))
    return report


def case(report: dict, half: str, name: str) -> tuple[float, float]:
    p = report["halves"][half]["policies"][name]
    return p["recovered_gain"], p["retrain_share"]


def whole_case(report: dict, name: str) -> tuple[float, float]:
    p = report["alternatives_vs_frontier"][name]
    return p["recovered_gain"], p["retrain_share"]


def shortfall(rec: float, share: float) -> float:
    """How far a case is from >= 95% recovered at <= 25% share (0 = there)."""
    # clipped at 0: where every_batch barely beats never (rainfall's first half) the ratio explodes
    return max(0.0, 0.95 - max(rec, 0.0)) + max(0.0, share - 0.25)


def informative(report: dict, half: str) -> bool:
    """Whether a half can tell policies apart: every_batch beats never there with a paired-bootstrap 95%
    CI excluding 0. Where it does not (rainfall's first half at delay 0: +0.01 F1), recovered gain divides
    by noise and would decide the ranking by luck, so such a half is reported but not scored."""
    import numpy as np

    lo, hi = report["halves"][half]["batches"]
    never = np.array(report["policies"]["never"]["per_batch"][lo:hi], dtype=float)
    every = np.array(report["policies"]["every_batch"]["per_batch"][lo:hi], dtype=float)
    d = (every - never)[~np.isnan(every - never)]
    if len(d) < 2:
        return False
    from retrainer.backtest.stats import paired_bootstrap_ci

    a, b = paired_bootstrap_ci(d)
    return a > 0 or b < 0


def oracle_at_share(report: dict, half: str, share: float = 0.25) -> float:
    """The oracle bound's recovered gain on a half with at most ``share`` of its batches as retrains."""
    part = report["oracle"][half]
    n = part["batches"][1] - part["batches"][0] if half != "whole" else part["every_batch_retrains"]
    return part["recovered_gain"][int(share * n)]


def markdown(reports: dict, scores: list, names: list[str], chosen: str = "") -> str:
    """The ranking on the first halves, the oracle bound per case, and per variant a table per case."""
    n = sum(informative(r, "first") for r in reports.values())
    out = [
        "# Choosing the default trigger policy: tuning runs",
        "",
        "Generated by `scripts/tune_triggers.py` (`make tune-triggers`). Each variant ran on every stream at",
        "label delays 0 and 2. **Chosen on the first half** of each stream's replay (lowest total shortfall",
        "from >= 95% of every_batch's gain over never with <= 25% of every_batch's retrains, summed over",
        "the cases); the second half is held out and never used to choose."
        + (f" Shipped: `{chosen}`." if chosen else ""),
        "A first half where every_batch does not beat never (paired-bootstrap 95% CI including 0) cannot",
        "tell policies apart and is not scored: "
        + (
            ", ".join(f"{s} at delay {d}" for (s, d), r in reports.items() if not informative(r, "first"))
            or "none"
        )
        + ".",
        "",
        "**Oracle bound**: the best recovered gain any schedule with the same number of retrains reaches on",
        "that replay, with the retrain times chosen in hindsight (dynamic programming over the per-batch",
        "metric of every model the replay trains; every retrain counted as promoted). No policy can beat it;",
        "where it is below 95% at 25% of the retrains, the target cannot be reached on that half at all.",
        "",
        "| stream | delay | oracle at 25% of the retrains: tuned half | held-out half | whole replay "
        "| every_4: tuned half | held-out half |",
        "|---|---|---|---|---|---|---|",
    ]
    for (stream, delay), r in reports.items():
        a, b = case(r, "first", "every_4"), case(r, "second", "every_4")
        out.append(
            f"| {stream} | {delay} | {oracle_at_share(r, 'first'):.1%} | {oracle_at_share(r, 'second'):.1%} "
            f"| {oracle_at_share(r, 'whole'):.1%} | {a[0]:.1%} / {a[1]:.0%} | {b[0]:.1%} / {b[1]:.0%} |"
        )
    out += [
        "",
        "| variant | cases at the target (tuned halves) | total shortfall (tuned halves) "
        "| cases at the target (held-out halves) | cases at the target (whole replays) |",
        "|---|---|---|---|---|",
    ]
    for total, neg_met, _, name in scores:
        second = sum(shortfall(*case(r, "second", name)) == 0 for r in reports.values())
        whole = sum(shortfall(*whole_case(r, name)) == 0 for r in reports.values())
        out.append(
            f"| {name} | {-neg_met}/{n} | {total:.3f} | {second}/{len(reports)} | {whole}/{len(reports)} |"
        )
    out += ["", "Variants (the `triggers` overrides, everything else as in each stream's config):", ""]
    for name in VARIANTS:
        out.append(f"- `{name}`: `{json.dumps({k: v for k, v in VARIANTS[name].items() if v is not None})}`")
    for name in names:
        if not name:
            continue
        out += [
            "",
            f"## {name}",
            "",
            "Each cell: recovered gain / retrain share (the oracle bound at the same retrains).",
            "",
            "| stream | delay | tuned half | held-out half | whole replay | vs frontier at equal retrains (95% CI) |",
            "|---|---|---|---|---|---|",
        ]
        for (stream, delay), r in reports.items():
            cells = []
            for half in ("first", "second"):
                p = r["halves"][half]["policies"][name]
                cells.append(
                    f"{p['recovered_gain']:.1%} / {p['retrain_share']:.0%} ({p['oracle_recovered_gain']:.0%})"
                )
            tv = r["alternatives_vs_frontier"][name]
            lo, hi = tv["ci95"]
            place = (
                "above, CI excludes 0"
                if tv["criteria"]["above_frontier_ci_excludes_0"]
                else ("above, CI includes 0" if tv["criteria"]["above_frontier"] else "below")
            )
            out.append(
                f"| {stream} | {delay} | {cells[0]} | {cells[1]} "
                f"| {tv['recovered_gain']:.1%} / {tv['retrain_share']:.0%} ({tv['oracle_recovered_gain']:.0%}) "
                f"| {place}: {tv['difference']:+.4g} ({lo:+.4g} .. {hi:+.4g}; {tv['better_is']} is better) |"
            )
    out += ["", "Fixed schedules on the same halves (recovered / share):", ""]
    out += ["| stream | delay | every_2 | every_3 | every_4 | every_5 |", "|---|---|---|---|---|---|"]
    for (stream, delay), r in reports.items():
        cells = []
        for k in (2, 3, 4, 5):
            a, b = case(r, "first", f"every_{k}"), case(r, "second", f"every_{k}")
            cells.append(f"{a[0]:.0%}/{a[1]:.0%} · {b[0]:.0%}/{b[1]:.0%}")
        out.append(f"| {stream} | {delay} | " + " | ".join(cells) + " |")
    out += ["", "(each cell: tuned half · held-out half)", ""]
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--streams", nargs="*", default=list(STREAMS))
    ap.add_argument("--delays", nargs="*", type=int, default=[0, 2])
    ap.add_argument("--write", help="write the Markdown tables to this file")
    ap.add_argument("--write-variants", default="", help="comma-separated variants to tabulate in full")
    ap.add_argument("--chosen", default="", help="the variant shipped as the default (named in the Markdown)")
    ap.add_argument(
        "--cached-only",
        action="store_true",
        help="tabulate the cached cases only (list the others as not run)",
    )
    args = ap.parse_args()
    reports, skipped = {}, []
    for stream in args.streams:
        for delay in args.delays:
            if args.cached_only and not (CACHE / f"{stream}-d{delay}.json").exists():
                skipped.append(f"{stream} at delay {delay}")
                continue
            reports[(stream, delay)] = run(stream, delay, VARIANTS)
            print(f"done {stream} delay {delay}", file=sys.stderr, flush=True)
    scores = []
    ranked = [n for n in VARIANTS if all(n in r["halves"]["first"]["policies"] for r in reports.values())]
    scored = [r for r in reports.values() if informative(r, "first")]
    for name in ranked:
        first = [case(r, "first", name) for r in scored]
        at_target = sum(shortfall(*c) == 0 for c in first)
        worst = max(shortfall(*c) for c in first)
        total = sum(shortfall(*c) for c in first)
        scores.append((total, -at_target, worst, name))
    scores.sort()
    print("variant            at target (first half)  total shortfall  worst shortfall")
    for total, neg_met, worst, name in scores:
        print(f"{name:<18} {-neg_met:>8}/{len(scored)} {total:>16.3f} {worst:>16.3f}")
    if args.write:
        text = markdown(reports, scores, args.write_variants.split(","), args.chosen)
        if skipped:
            text += "\nNot run (no cached replay; CPU budget): " + ", ".join(skipped) + ".\n"
        Path(args.write).write_text(text)
    print("\nper case: recovered gain / retrain share, first half (tuning) | second half (held out)")
    for name in [s[3] for s in scores]:
        print(f"\n{name}")
        for (stream, delay), r in reports.items():
            a, b = case(r, "first", name), case(r, "second", name)
            print(f"  {stream:<15} delay {delay}: {a[0]:7.1%} / {a[1]:4.0%}  |  {b[0]:7.1%} / {b[1]:4.0%}")


if __name__ == "__main__":
    main()
