"""Choose the default trigger policy with the backtest, honestly: on the first half of every stream.

    PYTHONPATH=include .venv/bin/python scripts/tune_triggers.py [--delays 0 2] [--streams ...]

Every variant runs on every tuning stream (the shipped demo streams and the tuning-only configs in
docs/backtest/configs/) at each label delay, as alternatives of one backtest per (stream, delay), so the
fits are shared. Each report is cached as JSON under .tune-cache/ (delete it to re-run). A variant is
scored on the **first half** of each stream's replay only (:func:`retrainer.backtest.halves`): the
number of (stream, delay) cases with recovered gain >= 95% at <= 25% of every_batch's retrains, then
the worst case's shortfall. The second half is printed beside it as held out, never used to choose.
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
    "pd_ctl2_cd2": {**OFF, "prediction_drift": PD, "performance": ctl(2.0), "cooldown_batches": 2},
    "pd_ctl3_cd2": {**OFF, "prediction_drift": PD, "performance": ctl(3.0), "cooldown_batches": 2},
    "pd_ctl2_cd3": {**OFF, "prediction_drift": PD, "performance": ctl(2.0), "cooldown_batches": 3},
    "pd_ctl3_cd3": {**OFF, "prediction_drift": PD, "performance": ctl(3.0), "cooldown_batches": 3},
    "ctl15_cd2": {**OFF, "performance": ctl(1.5), "cooldown_batches": 2},
    "ctl2_cd1": {**OFF, "performance": ctl(2.0), "cooldown_batches": 1},
    "ctl2_cd2": {**OFF, "performance": ctl(2.0), "cooldown_batches": 2},
    "ctl3_cd2": {**OFF, "performance": ctl(3.0), "cooldown_batches": 2},
    "ctl3_cd3": {**OFF, "performance": ctl(3.0), "cooldown_batches": 3},
    "ctl2est_cd2": {**OFF, "performance": ctl(2.0, use_estimate=True), "cooldown_batches": 2},
    "pd_ctl2est_cd2": {
        **OFF,
        "prediction_drift": PD,
        "performance": ctl(2.0, use_estimate=True),
        "cooldown_batches": 2,
    },
    "pd_ctl3est_cd3": {
        **OFF,
        "prediction_drift": PD,
        "performance": ctl(3.0, use_estimate=True),
        "cooldown_batches": 3,
    },
}


def run(stream: str, delay: int, variants: dict[str, dict]) -> dict:
    """The backtest report of one (stream, delay) with every variant as an alternative (cached)."""
    from retrainer import backtest
    from retrainer.config import load_config

    CACHE.mkdir(exist_ok=True)
    key = CACHE / f"{stream}-d{delay}.json"
    if key.exists():
        cached = json.loads(key.read_text())
        if set(variants) <= set(cached["alternatives_vs_frontier"]):
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
    return max(0.0, 0.95 - rec) + max(0.0, share - 0.25)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--streams", nargs="*", default=list(STREAMS))
    ap.add_argument("--delays", nargs="*", type=int, default=[0, 2])
    args = ap.parse_args()
    reports = {}
    for stream in args.streams:
        for delay in args.delays:
            reports[(stream, delay)] = run(stream, delay, VARIANTS)
            print(f"done {stream} delay {delay}", file=sys.stderr, flush=True)
    scores = []
    for name in VARIANTS:
        first = [case(r, "first", name) for r in reports.values()]
        met = sum(shortfall(*c) == 0 for c in first)
        worst = max(shortfall(*c) for c in first)
        total = sum(shortfall(*c) for c in first)
        scores.append((-met, total, worst, name))
    scores.sort()
    print("variant            met(first half)  total shortfall  worst shortfall")
    for neg_met, total, worst, name in scores:
        print(f"{name:<18} {-neg_met:>8}/{len(reports)} {total:>16.3f} {worst:>16.3f}")
    print("\nper case: recovered gain / retrain share, first half (tuning) | second half (held out)")
    for name in [s[3] for s in scores]:
        print(f"\n{name}")
        for (stream, delay), r in reports.items():
            a, b = case(r, "first", name), case(r, "second", name)
            print(f"  {stream:<15} delay {delay}: {a[0]:7.1%} / {a[1]:4.0%}  |  {b[0]:7.1%} / {b[1]:4.0%}")


if __name__ == "__main__":
    main()
