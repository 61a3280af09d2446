"""Benchmark: reading the policy state after 100 vs 3,000 decisions (MLflow on SQLite, in a temp folder).

    .venv/bin/python benchmarks/policy_state.py      (or: make bench-policy-state)

Three ways to find the newest decision's state, each timed at both history lengths (median of 15 reads):

* ``head pointer``: the monitor experiment's ``retrainer.policy_head`` tag names the newest decision run
  (what the decide task uses): get the experiment, get the run, read its ``policy_state.json``;
* ``newest by search``: ``search_runs(order_by start_time DESC, max_results=1)`` then the artifact;
* ``all runs ascending`` (what earlier releases did, capped at 1,000 runs, hence stale after 1,000).

Prints each time and the 3,000 / 100 ratio: a constant-time read stays near 1.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SIZES = (100, 3000)


def seed(cfg, n: int) -> None:
    """``n - 1`` decision runs with tags only, then one real decision (artifact + head pointer)."""
    from retrainer.stages import monitor
    from retrainer.tracking import runs as tracking

    c = tracking.client()
    exp = tracking.experiment_id(cfg.name, "monitor")
    for i in range(n - 1):
        run = c.create_run(
            exp,
            start_time=1_300_000_000_000 + i,
            tags={
                "retrainer.kind": "monitor",
                "retrainer.batch": f"b{i:05d}.parquet",
                "retrainer.batch_sha256": f"f{i:063x}",
                "retrainer.verdict": "no_retrain",
                "retrainer.policy_state": "1",
            },
        )
        c.set_terminated(run.info.run_id)
    monitor.decide(
        cfg,
        {"batch": "newest.parquet", "sha256": "e" * 64, "run_id": "bench"},
        {"rows": 1},
        {"champion_version": 1, "predictions": None},
        {"data_drift_share": 0.0, "drifted_columns": [], "prediction_drift": 0.9},
        {"metric": "rmse", "value": None, "reference": None, "labelled_rows": 0},
        {"flagged_rate": None},
        "bench",
    )


def timed(fn, repeat: int = 15) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    sys.path.insert(0, str(REPO / "include"))
    import mlflow

    from retrainer import policy
    from retrainer.config import load_config
    from retrainer.stages import decisions
    from retrainer.tracking import policy_state
    from retrainer.tracking import runs as tracking

    cfg = load_config(REPO / "include" / "models" / "bikeshare.yaml")
    results: dict[str, dict[int, float]] = {
        "head pointer": {},
        "newest by search": {},
        "all runs ascending": {},
    }
    for n in SIZES:
        with tempfile.TemporaryDirectory() as tmp:
            os.environ.update(
                MLFLOW_TRACKING_URI=f"sqlite:///{tmp}/mlflow.db",
                RETRAINER_ARTIFACT_ROOT=f"{tmp}/mlartifacts",
                RETRAINER_DATA_ROOT=f"{tmp}/data",
                MLFLOW_DISABLE_TELEMETRY="true",
                MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR="false",
            )
            t0 = time.perf_counter()
            seed(cfg, n)
            print(f"seeded {n} decisions in {time.perf_counter() - t0:.1f} s", flush=True)

            def by_search() -> policy.PolicyState:
                run = tracking.find_runs(
                    cfg.name,
                    "monitor",
                    "tags.`retrainer.policy_state` = '1'",
                    max_results=1,
                    order_by=["attributes.start_time DESC"],
                )[0]
                return policy.PolicyState.from_dict(
                    mlflow.artifacts.load_dict(f"{run.info.artifact_uri}/{policy_state.STATE_ARTIFACT}")
                )

            def all_ascending() -> int:
                return len(tracking.find_runs(cfg.name, "monitor", "tags.`retrainer.kind` = 'monitor'"))

            assert decisions.policy_state(cfg).batches_since_request == 0  # the newest decision's state
            assert by_search().batches_since_request == 0
            results["head pointer"][n] = timed(lambda: decisions.policy_state(cfg))
            results["newest by search"][n] = timed(by_search)
            results["all runs ascending"][n] = timed(all_ascending, repeat=5)
    print(f"\n{'method':<20} {'100 decisions':>14} {'3,000 decisions':>16} {'ratio':>7}")
    for name, r in results.items():
        small, big = r[SIZES[0]], r[SIZES[1]]
        print(f"{name:<20} {small * 1000:>11.1f} ms {big * 1000:>13.1f} ms {big / small:>6.2f}x")


if __name__ == "__main__":
    main()
