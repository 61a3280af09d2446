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
OFF = {"data_drift": None, "prediction_drift": None, "performance": None, "flags": None}
PD = {"threshold": 0.15}


def ctl(z: float, **kw: object) -> dict:
    return {"mode": "control", "z": z, "min_labelled_rows": 7, **kw}


VARIANTS: dict[str, dict] = {
    # the previous default: prediction drift 0.15 or performance 25% worse than the holdout, cooldown 2
    "relative25_cd2": {
        **OFF,
        "prediction_drift": PD,
        "performance": {"mode": "relative", "max_degradation": 0.25, "min_labelled_rows": 7},
        "cooldown_batches": 2,
    },
    # prediction drift or a relative 10% drop; cooldown 3 caps the share of retrains near 25%
    "pd_rel10_cd3": {
        **OFF,
        "prediction_drift": PD,
        "performance": {"mode": "relative", "max_degradation": 0.10, "min_labelled_rows": 7},
        "cooldown_batches": 3,
    },
    # control charts of several widths (z, in units of the stream's per-batch noise), cooldown 3 / 4
    "pd_ctl2_cd3": {**OFF, "prediction_drift": PD, "performance": ctl(2.0), "cooldown_batches": 3},
    "pd_ctl15_cd3": {**OFF, "prediction_drift": PD, "performance": ctl(1.5), "cooldown_batches": 3},
    "pd_ctl1_cd3": {**OFF, "prediction_drift": PD, "performance": ctl(1.0), "cooldown_batches": 3},
    "pd_ctl05_cd3": {**OFF, "prediction_drift": PD, "performance": ctl(0.5), "cooldown_batches": 3},
    "ctl1_cd3": {**OFF, "performance": ctl(1.0), "cooldown_batches": 3},
    "pd_ctl1_cd4": {**OFF, "prediction_drift": PD, "performance": ctl(1.0), "cooldown_batches": 4},
    # prediction drift fires on nearly every batch of TrumpApproval and half of Bikeshare's at 0.15, which
    # turns the policies above into a cooldown schedule: a wider prediction-drift threshold lets the
    # control chart time the retrains
    "pd30_ctl1_cd3": {
        **OFF,
        "prediction_drift": {"threshold": 0.3},
        "performance": ctl(1.0),
        "cooldown_batches": 3,
    },
    "pd50_ctl1_cd3": {
        **OFF,
        "prediction_drift": {"threshold": 0.5},
        "performance": ctl(1.0),
        "cooldown_batches": 3,
    },
    "pd30_ctl15_cd2": {
        **OFF,
        "prediction_drift": {"threshold": 0.3},
        "performance": ctl(1.5),
        "cooldown_batches": 2,
    },
    # estimated performance (CBPE / DLE) as a second vote before the labels arrive
    "pd_ctl1est_cd3": {
        **OFF,
        "prediction_drift": PD,
        "performance": ctl(1.0, use_estimate=True),
        "cooldown_batches": 3,
    },
}


# round 2 on the long classification replay (rainfall: 312 batches), CPU budget: the four best on the
# first halves of Bikeshare and TrumpApproval, and the previous default for comparison
SHORTLIST = ("pd30_ctl1_cd3", "pd50_ctl1_cd3", "pd_ctl1_cd3", "pd_ctl2_cd3", "relative25_cd2")


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
    cfg = cfg.model_copy(update={"backtest": cfg.backtest.model_copy(update={"alternatives": variants})})
    report = backtest.backtest(
        cfg, backtest.load_data(cfg, stream), label_delay=delay, progress=False, data_name=stream
    )
    key.write_text(json.dumps(report))
    return report


def case(report: dict, half: str, name: str) -> tuple[float, float]:
    p = report["halves"][half]["policies"][name]
    return p["recovered_gain"], p["retrain_share"]


def shortfall(rec: float, share: float) -> float:
    """How far a case is from >= 95% recovered at <= 25% share (0 = there)."""
    # clipped at 0: where every_batch barely beats never (rainfall's first half) the ratio explodes
    return max(0.0, 0.95 - max(rec, 0.0)) + max(0.0, share - 0.25)


def oracle_at_share(report: dict, half: str, share: float = 0.25) -> float:
    """The oracle bound's recovered gain on a half with at most ``share`` of its batches as retrains."""
    part = report["oracle"][half]
    n = part["batches"][1] - part["batches"][0] if half != "whole" else part["every_batch_retrains"]
    return part["recovered_gain"][int(share * n)]


def markdown(reports: dict, scores: list, names: list[str], chosen: str = "") -> str:
    """The ranking on the first halves, the oracle bound per case, and per variant a table per case."""
    n = len(reports)
    out = [
        "# Choosing the default trigger policy: tuning runs",
        "",
        "Generated by `scripts/tune_triggers.py` (`make tune-triggers`). Each variant ran on every stream at",
        "label delays 0 and 2. **Chosen on the first half** of each stream's replay (lowest total shortfall",
        "from >= 95% of every_batch's gain over never with <= 25% of every_batch's retrains, summed over",
        "the cases); the second half is held out and never used to choose."
        + (f" Shipped: `{chosen}`." if chosen else ""),
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
        "| cases at the target (held-out halves) |",
        "|---|---|---|---|",
    ]
    for total, neg_met, _, name in scores:
        second = sum(shortfall(*case(r, "second", name)) == 0 for r in reports.values())
        out.append(f"| {name} | {-neg_met}/{n} | {total:.3f} | {second}/{n} |")
    out += [
        "",
        "Round 1, every variant on the cases it ran on (the long rainfall replay took the shortlist only):",
        "",
        "| variant | cases | cases at the target (tuned halves) | total shortfall (tuned halves) |",
        "|---|---|---|---|",
    ]
    for name in VARIANTS:
        mine = [r for r in reports.values() if name in r["halves"]["first"]["policies"]]
        first = [shortfall(*case(r, "first", name)) for r in mine]
        out.append(f"| {name} | {len(mine)} | {sum(f == 0 for f in first)} | {sum(first):.3f} |")
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
            variants = {n: VARIANTS[n] for n in SHORTLIST} if stream == "rainfall" else VARIANTS
            reports[(stream, delay)] = run(stream, delay, variants)
            print(f"done {stream} delay {delay}", file=sys.stderr, flush=True)
    scores = []
    ranked = [n for n in VARIANTS if all(n in r["halves"]["first"]["policies"] for r in reports.values())]
    for name in ranked:
        first = [case(r, "first", name) for r in reports.values()]
        at_target = sum(shortfall(*c) == 0 for c in first)
        worst = max(shortfall(*c) for c in first)
        total = sum(shortfall(*c) for c in first)
        scores.append((total, -at_target, worst, name))
    scores.sort()
    print("variant            at target (first half)  total shortfall  worst shortfall")
    for total, neg_met, worst, name in scores:
        print(f"{name:<18} {-neg_met:>8}/{len(reports)} {total:>16.3f} {worst:>16.3f}")
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
