"""Benchmark: the backtest's thread cap (``--threads``, default 1) against the libraries' own defaults.

    PYTHONPATH=include .venv/bin/python benchmarks/backtest_threads.py      (or: make bench-backtest-threads)

A backtest fits and scores hundreds of small models. With a HistGradientBoosting model, scikit-learn's
OpenMP runtime starts one thread per core for every fit and every prediction; on small batches that
costs more than it gains, and when the cores are shared (a CI runner, an Airflow worker running other
tasks) the threads wait on each other. The same replay (the synthetic stream of
``benchmarks/backtest_speed.py``, 60 weekly batches) runs with the libraries' defaults (the baseline)
and with one thread, first on an idle machine, then with one busy process per core that this script
starts and stops by PID. Prints each time and the ratio baseline / capped.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import backtest_speed  # the stream and config of the speed benchmark

WEEKS = 68  # 8 warm-up + 60 replayed


def config():
    cfg = backtest_speed.config()
    model = cfg.model.model_copy(
        update={
            "estimator": "sklearn.ensemble.HistGradientBoostingRegressor",
            "params": {"max_iter": 50, "random_state": 0},
        }
    )
    bt = cfg.backtest.model_copy(update={"alternatives": {}, "max_k": 4})
    return cfg.model_copy(update={"model": model, "backtest": bt})


def timed(cfg, df, threads: int | None) -> float:
    from retrainer import backtest

    t0 = time.perf_counter()
    backtest.backtest(cfg, df, progress=False, oracle_bound=False, threads=threads)
    return time.perf_counter() - t0


def main() -> None:
    backtest_speed.WEEKS = WEEKS
    cfg, df = config(), backtest_speed.stream()
    cores = os.cpu_count() or 1
    print(f"HistGradientBoosting, {WEEKS - 8} weekly batches of ~{backtest_speed.ROWS} rows, {cores} cores")
    for label, busy_n in (("idle machine", 0), (f"{cores} busy processes", cores)):
        busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(busy_n)]
        try:
            default = timed(cfg, df, None)
            capped = timed(cfg, df, 1)
        finally:
            for p in busy:
                p.kill()
                p.wait()
        print(
            f"{label:<20} libraries' default threads (baseline) {default:6.1f} s; --threads 1 {capped:6.1f} s"
            f"  = {default / capped:.1f} x faster"
        )


if __name__ == "__main__":
    main()
