"""Freshness under the real scheduler: how long from a batch landing to the decision, and to a new champion.

Starts the real Airflow components on loopback in a temp folder (devtools.stack), seeds six weeks
of Bikeshare history, trains the first champion, then lands the following weeks one at a time and measures:

* landing -> decision: the batch file appears in ``landing/`` until the monitor's ``decide`` task has
  recorded the decision (end time of the batch's MLflow run in ``retrainer/<model>/monitor``);
* landing -> new champion: until the ``champion`` alias moved (for batches whose decision requested a
  retrain and whose candidate passed validation);
* the baseline, measured in the same run: the monitor's own work for the batch (first task after the claim
  started -> ``decide`` ended), so ``ratio`` is the share of the latency that is scheduling overhead.

``--arrival event,sensor`` (the default) measures both arrival paths in one invocation, one stack after the
other: the landing trigger in the triggerer (the default path) and the poking sensor (``RETRAINER_ARRIVAL=
sensor``, the earlier design) as the baseline.

The config is the shipped one except ``triggers.cooldown_batches: 0`` (so consecutive drifted weeks all
request a retrain) and ``--poke`` if given. Target: landing -> decision <= 60 s on 2 cores.

    .venv/bin/python benchmarks/freshness.py [--batches 5] [--poke SECONDS] [--arrival event,sensor]
        [--decision-only] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from devtools import stack as S

REPO = Path(__file__).resolve().parents[1]

MODEL = "bikeshare"
MONITOR, RETRAIN = f"{MODEL}__monitor", f"{MODEL}__retrain"
TARGET_DECISION_S = 60.0


def _ts(iso: str | None) -> float | None:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() if iso else None


def _tolerant(fn: Any) -> Any:
    """``fn`` for polling: an API call that timed out (or a busy SQLite answering 500) counts as "not yet"."""

    def call() -> Any:
        try:
            return fn()
        except (OSError, S.ApiError):
            return None

    return call


def _idle(stack: S.Stack, arrival: str) -> bool:
    """No retrain active, and the monitor waits: no run (event path) or one run on its sensor (sensor path)."""
    if any(r["state"] in ("queued", "running") for r in stack.runs(RETRAIN)):
        return False
    runs = [r for r in stack.runs(MONITOR) if r["state"] in ("queued", "running")]
    if arrival == "event":
        return not runs
    if len(runs) != 1:
        return False
    tis = stack.request("GET", f"/api/v2/dags/{MONITOR}/dagRuns/{runs[0]['dag_run_id']}/taskInstances")
    return any(t["task_id"] == "wait_for_batch" and t["state"] == "running" for t in tis["task_instances"])


def _monitor_work(stack: S.Stack, run_id: str) -> float | None:
    """Seconds from the first task after the claim starting to ``decide`` ending (the baseline)."""
    tis = stack.request("GET", f"/api/v2/dags/{MONITOR}/dagRuns/{run_id}/taskInstances")["task_instances"]
    by = {t["task_id"]: t for t in tis}
    start, end = _ts(by["validate_batch"]["start_date"]), _ts(by["decide"]["end_date"])
    return end - start if start and end else None


def _measure(arrival: str, args: argparse.Namespace) -> list[dict[str, Any]]:
    """One stack with the given arrival path: the first champion, then ``args.batches`` batches."""
    state = Path(tempfile.mkdtemp(prefix=f"retrainer-freshness-{arrival}-"))
    stack = S.Stack(
        state,
        port=S.free_port(),
        config_dir=S.fast_config_dir(state / "models", poke_interval=args.poke, cooldown_batches=0),
        extra_env={"RETRAINER_ARRIVAL": arrival},
    )
    os.environ.update({k: v for k, v in stack.env().items() if k.startswith(("MLFLOW_", "RETRAINER_"))})
    print(f"\n{arrival} arrival: state {state}; {os.cpu_count()} cores", flush=True)
    t0 = time.monotonic()
    stack.start()
    rows: list[dict[str, Any]] = []
    try:
        print(f"  components up in {time.monotonic() - t0:.0f}s", flush=True)
        weeks = S.seed_bikeshare(stack, history_weeks=6)
        stack.unpause(RETRAIN)
        first = stack.trigger(RETRAIN, {"reason": "first champion from history"})
        S.wait_until(
            "the first champion",
            _tolerant(
                lambda: (
                    stack.request("GET", f"/api/v2/dags/{RETRAIN}/dagRuns/{first['dag_run_id']}")["state"]
                    in ("success", "failed")
                )
            ),
            timeout=1200,
            every=2,
        )
        stack.unpause(MONITOR)
        print(f"{'batch':<12} {'verdict':<11} {'decision':>8} {'work':>6} {'ratio':>5} {'champion':>9}")
        for week, df in weeks[: args.batches]:
            S.wait_until(
                "the monitor to wait for a batch", _tolerant(lambda: _idle(stack, arrival)), every=0.5
            )
            row = _one_batch(stack, week, df, champion=not args.decision_only)
            rows.append({"arrival": arrival, **row})
            champion_s = row["landing_to_champion_s"]
            print(
                f"{week:<12} {row['verdict']:<11} {row['landing_to_decision_s']:>7.1f}s "
                f"{row['monitor_work_s']:>5.1f}s "
                f"{row['landing_to_decision_s'] / row['monitor_work_s']:>5.2f} "
                f"{'-' if champion_s is None else f'{champion_s:.0f}s':>9}",
                flush=True,
            )
    finally:
        stack.stop()
        if not args.keep:
            import shutil

            shutil.rmtree(state, ignore_errors=True)
    return rows


def _one_batch(stack: S.Stack, week: str, df: Any, champion: bool) -> dict[str, Any]:
    """Land one batch; seconds to its decision, the monitor's own work, and to a new champion."""
    from retrainer.tracking import registry
    from retrainer.tracking import runs as tracking

    before = registry.champion(MODEL)
    landed = time.time()
    S.drop_batch(stack, week, df)
    batch = f"{week}.parquet"

    def decided() -> Any:
        runs = tracking.find_runs(
            MODEL, "monitor", f"tags.`retrainer.batch` = '{batch}' and attributes.status = 'FINISHED'"
        )
        return runs[-1] if runs else None

    run = S.wait_until(f"the decision for {batch}", decided)
    decision_s = run.info.end_time / 1000 - landed
    verdict = run.data.tags.get("retrainer.verdict", "?")
    dag_run_id = run.data.tags.get("retrainer.dag_run_id", "")
    work = S.wait_until(
        "the monitor run's task times", _tolerant(lambda: _monitor_work(stack, dag_run_id)), every=1
    )
    champion_s = None
    if verdict == "retrain" and champion:
        retrain = S.wait_until(
            "the asset-triggered retrain",
            lambda: next(
                (
                    r
                    for r in stack.runs(RETRAIN)
                    if r["run_type"] == "asset_triggered"
                    and r["state"] in ("success", "failed")
                    and (_ts(r["queued_at"]) or 0) >= landed
                ),
                None,
            ),
            every=0.5,
        )
        after = registry.champion(MODEL)
        if retrain["state"] == "success" and after and (not before or after.version != before.version):
            moved = [e for e in registry.history(MODEL) if e["to_version"] == after.version]
            champion_s = _ts(moved[-1]["at"]) - landed if moved else None
    return {
        "batch": batch,
        "verdict": verdict,
        "landing_to_decision_s": round(decision_s, 1),
        "monitor_work_s": round(work, 1),
        "landing_to_champion_s": None if champion_s is None else round(champion_s, 1),
    }


def _summary(arrival: str, rows: list[dict[str, Any]], poke: int | None) -> dict[str, Any]:
    dec = [r["landing_to_decision_s"] for r in rows]
    work = [r["monitor_work_s"] for r in rows]
    champ = [r["landing_to_champion_s"] for r in rows if r["landing_to_champion_s"] is not None]
    return {
        "arrival": arrival,
        "batches": len(rows),
        "cores": os.cpu_count(),
        "poke_interval_s": poke,
        "median_landing_to_decision_s": statistics.median(dec),
        "p95_landing_to_decision_s": _p95(dec),
        "max_landing_to_decision_s": max(dec),
        "median_monitor_work_s": statistics.median(work),
        "ratio_latency_to_work": round(statistics.median(dec) / statistics.median(work), 2),
        "median_landing_to_champion_s": statistics.median(champ) if champ else None,
        "new_champions": len(champ),
        "target_landing_to_decision_s": TARGET_DECISION_S,
        "rows": rows,
    }


def _p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batches", type=int, default=5, help="weekly batches to land (default 5)")
    ap.add_argument("--poke", type=int, default=None, help="override triggers.poke_interval_seconds")
    ap.add_argument(
        "--arrival",
        default="event,sensor",
        help="arrival paths to measure, one stack each, in this order (default: event,sensor)",
    )
    ap.add_argument(
        "--decision-only", action="store_true", help="do not wait for the retrain a decision requests"
    )
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--keep", action="store_true", help="keep the temp state folders")
    args = ap.parse_args()

    summaries = []
    for arrival in [a.strip() for a in args.arrival.split(",") if a.strip()]:
        summaries.append(_summary(arrival, _measure(arrival, args), args.poke))
    print()
    for sm in summaries:
        print(
            f"{sm['arrival']:>6}: landing -> decision p50 {sm['median_landing_to_decision_s']:.1f}s, "
            f"p95 {sm['p95_landing_to_decision_s']:.1f}s (max {sm['max_landing_to_decision_s']:.1f}s); "
            f"monitor work p50 {sm['median_monitor_work_s']:.1f}s; ratio {sm['ratio_latency_to_work']}; "
            + (
                f"landing -> new champion p50 {sm['median_landing_to_champion_s']:.1f}s "
                f"over {sm['new_champions']} promotions"
                if sm["new_champions"]
                else "no promotion measured"
            )
        )
    if args.json:
        Path(args.json).write_text(json.dumps(summaries if len(summaries) > 1 else summaries[0], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
