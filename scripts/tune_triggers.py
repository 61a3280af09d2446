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
VARIANTS: dict[str, dict] = {
    "config_default": {},
    "followup": {"follow_up_refit": True},
    "perf10_fu": {**OFF, "performance": {"max_degradation": 0.10, "min_labelled_rows": 20}, "follow_up_refit": True, "cooldown_batches": 1},
    "perf15_fu": {**OFF, "performance": {"max_degradation": 0.15, "min_labelled_rows": 20}, "follow_up_refit": True, "cooldown_batches": 1},
    "perf25_fu": {**OFF, "performance": {"max_degradation": 0.25, "min_labelled_rows": 20}, "follow_up_refit": True, "cooldown_batches": 1},
    "adwin_fu": {**OFF, "error_detector": {"method": "adwin"}, "follow_up_refit": True, "cooldown_batches": 1},
    "ph_fu": {**OFF, "error_detector": {"method": "page_hinkley"}, "follow_up_refit": True, "cooldown_batches": 1},
    "perf15_adwin_fu": {**OFF, "performance": {"max_degradation": 0.15, "min_labelled_rows": 20}, "error_detector": {"method": "adwin"}, "follow_up_refit": True, "cooldown_batches": 1},
    "drift_perf15_fu": {"prediction_drift": None, "flags": None, "data_drift": {"share": 0.5, "column_threshold": 0.5}, "performance": {"max_degradation": 0.15, "min_labelled_rows": 20}, "follow_up_refit": True, "cooldown_batches": 1},
    "perf15_fu_hyst": {**OFF, "performance": {"max_degradation": 0.15, "min_labelled_rows": 20}, "follow_up_refit": True, "cooldown_batches": 0, "hysteresis_batches": 1},
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
        print(f"\n{ds}: every_batch {eb['mean']:.4f} ({eb['retrains']} retrains); never {report['policies']['never']['mean']:.4f}")
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
