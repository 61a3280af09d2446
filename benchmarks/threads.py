"""Benchmark: the thread cap (`retrainer backtest --threads`, `RETRAINER_THREADS`; default 1) against the
libraries' own defaults (one thread per core).

    PYTHONPATH=include .venv/bin/python benchmarks/threads.py      (or: make bench-threads)

scikit-learn's HistGradientBoosting starts one OpenMP thread per core for every fit and prediction. On
small data that costs more than it gains, and when the cores are shared (an Airflow worker running
several tasks, a CI runner) the threads wait on each other. Three workloads, each with the libraries'
defaults (the baseline) and with one thread, first on an idle machine, then with one busy process per
core that this script starts and stops by PID:

- backtest: the synthetic stream of ``benchmarks/backtest_speed.py``, 60 weekly batches, HistGradientBoosting;
- retrain: fit the shipped Bikeshare model on 12 weeks of rows and score its holdout (the train task);
- score 1M rows: predict a 1,000,000-row batch with that model (the monitor's score task on a big batch).

Prints each time and the ratio baseline / capped (> 1: the cap is faster).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

sys.path.insert(0, str(Path(__file__).resolve().parent))

import backtest_speed  # the stream and config of the speed benchmark

if TYPE_CHECKING:
    from collections.abc import Callable

REPO = Path(__file__).resolve().parents[1]
WEEKS = 68  # 8 warm-up + 60 replayed


def backtest_case() -> Callable[[int | None], None]:
    from retrainer import backtest

    cfg = backtest_speed.config()
    model = cfg.model.model_copy(
        update={
            "estimator": "sklearn.ensemble.HistGradientBoostingRegressor",
            "params": {"max_iter": 50, "random_state": 0},
        }
    )
    cfg = cfg.model_copy(
        update={"model": model, "backtest": cfg.backtest.model_copy(update={"alternatives": {}, "max_k": 4})}
    )
    backtest_speed.WEEKS = WEEKS
    df = backtest_speed.stream()

    def run(threads: int | None) -> None:
        backtest.backtest(cfg, df, progress=False, oracle_bound=False, threads=threads)

    return run


def bikeshare_cases() -> list[tuple[str, Callable[[int | None], None]]]:
    import numpy as np
    import pandas as pd

    from retrainer.config import load_config
    from retrainer.ml import datasets, metrics, train

    cfg = load_config(REPO / "include" / "models" / "bikeshare.yaml")
    weeks = datasets.weekly_batches(datasets.bikeshare(), "timestamp")
    df = train.prepare(cfg, pd.concat([w for _, w in weeks[:12]], ignore_index=True))
    train_df, holdout = train.split_holdout(cfg, df)
    model = train.fit(cfg, train_df)
    rng = np.random.default_rng(0)
    big = train_df.iloc[rng.integers(0, len(train_df), 1_000_000)].reset_index(drop=True)

    def retrain(threads: int | None) -> None:
        with train.thread_cap(cfg, threads):
            metrics.score(cfg, train.fit(cfg, train_df), holdout)

    def score(threads: int | None) -> None:
        with train.thread_cap(cfg, threads):
            train.predict(cfg, model, big)

    return [("retrain", retrain), ("score 1M rows", score)]


def main() -> None:
    cases = [("backtest", backtest_case()), *bikeshare_cases()]
    cores = os.cpu_count() or 1
    print(f"{cores} cores; baseline = the libraries' default threads, capped = one thread")
    for label, busy_n in (("idle machine", 0), (f"{cores} busy processes", cores)):
        busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(busy_n)]
        try:
            for name, run in cases:
                times = {}
                for threads in (None, 1):
                    t0 = time.perf_counter()
                    run(threads)
                    times[threads] = time.perf_counter() - t0
                print(
                    f"{label:<18} {name:<14} baseline {times[None]:6.1f} s; capped {times[1]:6.1f} s"
                    f"  = {times[None] / times[1]:.1f} x"
                )
        finally:
            for p in busy:
                p.kill()
                p.wait()


if __name__ == "__main__":
    main()
