"""Benchmark: `retrainer backtest` on 130 weekly batches of ~350 rows with a linear model.

    PYTHONPATH=include .venv/bin/python benchmarks/backtest_speed.py      (or: make bench)

Measures the whole backtest (never, every_batch, every_2..every_8, the trigger policy with data drift,
prediction drift, performance and an ADWIN detector, one alternative, and the oracle bound) against a
baseline measured in the same run: an every_batch-only replay (one fit per batch, no signals), the
least any backtest must do. Prints both times, their ratio, and whether the whole backtest stays within
the budget of 120 s on 2 cores (BUDGET_SECONDS).
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd

BUDGET_SECONDS = 120.0
WEEKS, ROWS = 138, 350  # 8 warm-up weeks (the training window) + 130 replayed


def stream(seed: int = 0) -> pd.DataFrame:
    """A weekly stream with slow seasonal drift in the inputs and two abrupt concept changes."""
    rng = np.random.default_rng(seed)
    n = WEEKS * ROWS
    t = pd.Timestamp("2022-01-03") + pd.to_timedelta(np.arange(n) * (7 * 24 * 60 / ROWS), unit="min")
    week = np.arange(n) // ROWS
    season = np.sin(2 * np.pi * week / 52)
    x = rng.normal(size=(n, 8)) + season[:, None] * np.linspace(0, 1.5, 8)
    w = np.where(week[:, None] < 60, 1.0, np.where(week[:, None] < 100, -0.5, 2.0)) * np.linspace(1, 2, 8)
    y = (x * w).sum(axis=1) + rng.normal(scale=1.0, size=n)
    df = pd.DataFrame(x, columns=[f"x{i}" for i in range(8)])
    df.insert(0, "ts", t)
    df["kind"] = rng.choice(["a", "b", "c"], size=n)
    df["y"] = y
    return df


def config():
    from retrainer.config import parse_config

    return parse_config(
        {
            "name": "bench",
            "task": "regression",
            "data": {
                "time_column": "ts",
                "target": "y",
                "features": [*(f"x{i}" for i in range(8)), {"name": "kind", "type": "categorical"}],
            },
            "model": {"estimator": "sklearn.linear_model.Ridge", "params": {"alpha": 1.0}},
            "training": {"window": "8W", "holdout": "1W", "min_rows": 300},
            "triggers": {"error_detector": {"method": "adwin"}, "follow_up_refit": True},
            "validation": {"metric": "rmse"},
            "backtest": {"alternatives": {"perf_only": {"data_drift": None, "prediction_drift": None}}},
        }
    )


def main() -> None:
    from retrainer import backtest

    cfg, df = config(), stream()

    t0 = time.perf_counter()
    batches = backtest.split_batches(cfg, df, "7D")
    replay = backtest.Replay(cfg, batches, backtest.default_warmup(cfg, "7D"), 0)
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        backtest.run_policy(replay, "every_batch", "schedule", k=1)
    baseline = time.perf_counter() - t0

    t0 = time.perf_counter()
    report = backtest.backtest(cfg, df, progress=False, data_name="synthetic")
    full = time.perf_counter() - t0

    print(
        f"batches replayed: {report['batches']} of ~{ROWS} rows; policies: {len(report['policies'])} "
        f"(+ baseline); fits: one per batch at most (cached across policies)"
    )
    print(f"baseline  every_batch-only replay: {baseline:6.1f} s")
    print(f"full      backtest (all policies): {full:6.1f} s  = {full / baseline:.2f} x baseline")
    within = "within" if full < BUDGET_SECONDS else "over"
    print(f"budget    {BUDGET_SECONDS:.0f} s on 2 cores: {within} ({full / BUDGET_SECONDS:.0%} of it)")


if __name__ == "__main__":
    main()
