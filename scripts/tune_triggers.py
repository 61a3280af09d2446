"""Compare candidate trigger policies on the shipped datasets with the backtest (how the defaults were chosen).

    PYTHONPATH=include .venv/bin/python scripts/tune_triggers.py [bikeshare rainfall]

Every variant runs on every dataset; the one shipped as the default is the one that does best on both
(not the best on either alone). Prints one line per (dataset, variant).
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

OFF = {"data_drift": None, "prediction_drift": None, "performance": None, "flags": None}
PERF = {"max_degradation": 0.25, "min_labelled_rows": 20}
VARIANTS: dict[str, dict] = {
    "config_default": {},
    # round 1 (see README): data drift fires on nearly every batch of seasonal data, perf-only is late
    "followup": {"follow_up_refit": True},
    "perf15_fu": {
        **OFF,
        "performance": {**PERF, "max_degradation": 0.15},
        "follow_up_refit": True,
        "cooldown_batches": 1,
    },
    "adwin_fu": {
        **OFF,
        "error_detector": {"method": "adwin"},
        "follow_up_refit": True,
        "cooldown_batches": 1,
    },
    "ph_fu": {
        **OFF,
        "error_detector": {"method": "page_hinkley"},
        "follow_up_refit": True,
        "cooldown_batches": 1,
    },
    # round 2: cap the rate with the cooldown, drop the seasonal data-drift signal, combine
    "default_cd3": {"cooldown_batches": 3},
    "pd_perf_cd2": {
        **OFF,
        "prediction_drift": {"threshold": 0.15},
        "performance": PERF,
        "cooldown_batches": 2,
    },
    "pd_perf_cd3": {
        **OFF,
        "prediction_drift": {"threshold": 0.15},
        "performance": PERF,
        "cooldown_batches": 3,
    },
    "pd_perf_fu_cd3": {
        **OFF,
        "prediction_drift": {"threshold": 0.15},
        "performance": PERF,
        "cooldown_batches": 3,
        "follow_up_refit": True,
    },
    "k2_cd2": {"combine": "k_of_n", "k": 2, "cooldown_batches": 2},
    "perf05_cd2": {**OFF, "performance": {**PERF, "max_degradation": 0.05}, "cooldown_batches": 2},
    "pd_perf_ph_cd2": {
        **OFF,
        "prediction_drift": {"threshold": 0.15},
        "performance": PERF,
        "error_detector": {"method": "page_hinkley"},
        "cooldown_batches": 2,
    },
}


def main(names: list[str]) -> None:
    from retrainer import backtest
    from retrainer.config import load_config

    for ds in names:
        cfg = load_config(REPO / "include" / "models" / f"{ds}.yaml")
        alts = {n: v for n, v in VARIANTS.items() if n != "config_default"}
        cfg = cfg.model_copy(update={"backtest": cfg.backtest.model_copy(update={"alternatives": alts})})
        report = backtest.backtest(cfg, backtest.load_data(cfg, ds), progress=False, data_name=ds)
        eb = report["policies"]["every_batch"]
        print(
            f"\n{ds}: every_batch {eb['mean']:.4f} ({eb['retrains']} retrains); never {report['policies']['never']['mean']:.4f}"
        )
        rows = [report["trigger_vs_frontier"], *report["alternatives_vs_frontier"].values()]
        for tv in rows:
            g = tv["goal"]
            print(
                f"{ds:10} {tv['policy']:18} mean {tv['mean']:.4f} retrains {tv['retrains']:4} ({tv['retrain_fraction']:4.0%}) "
                f"gap {tv['relative_gap_to_every_batch']:+6.1%} vs_frontier {tv['advantage']:+.4f} "
                f"[{tv['ci95'][0]:+.4f},{tv['ci95'][1]:+.4f}] met={g['met']} close={g['close_to_every_batch']}"
            )
        sys.stdout.flush()


if __name__ == "__main__":
    main(sys.argv[1:] or ["bikeshare", "rainfall"])
