"""``make demo``: a real model lives through a drifting year, driven by the real DAGs.

Bikeshare 2011 (hourly rentals, shipped in the ISLP package) is cut into weekly batches. The first
weeks are history: the retrain DAG trains the first champion from them. Every following week is dropped
into ``landing/`` and the monitor DAG runs on it (``dag.test()``: real tasks, real GX, Evidently, MLflow).
This script plays the scheduler's part: when the monitor emitted the retrain-request asset it runs the
retrain DAG as the asset-triggered run, and when the config's cron fires (in data time) it runs it as the
scheduled run. One broken export is injected on the way to show the quality gate and quarantine.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import shutil
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from devtools import harness
from retrainer import assets

REPO = Path(__file__).resolve().parents[1]


@contextlib.contextmanager
def quiet(log_path: Path):  # type: ignore[no-untyped-def]
    """Send everything Airflow and the libraries print (fd 1 and 2) to a log file."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(log_path, "a") as fh:
        os.dup2(fh.fileno(), 1)
        os.dup2(fh.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


def say(text: str = "") -> None:
    print(text, flush=True)


def fmt(v: Any, spec: str = ".2f") -> str:
    return "-" if v is None else format(v, spec)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--state", default=str(REPO / ".demo"), help="folder for all demo state (wiped first)")
    ap.add_argument("--history-weeks", type=int, default=6, help="weeks used to train the first champion")
    ap.add_argument(
        "--weeks", type=int, default=0, help="weeks to replay after the history (0 = rest of 2011)"
    )
    ap.add_argument("--no-bad-batch", action="store_true", help="do not inject the broken export")
    args = ap.parse_args()

    started = time.monotonic()
    state = Path(args.state).resolve()
    if state.exists():
        shutil.rmtree(state)
    harness.configure(state)
    logs = state / "logs"
    say(f"Retrainer demo: state in {state}")
    say("Setting up the Airflow metadata DB (SQLite)...")
    with quiet(logs / "setup.log"):
        harness.reset_db()
        import pandas as pd
        from croniter import croniter

        from retrainer import settings
        from retrainer.config import load_config
        from retrainer.ml.datasets import bikeshare, weekly_batches
        from retrainer.storage import DataRoot
        from retrainer.tracking import registry

    cfg = load_config(REPO / "include" / "models" / "bikeshare.yaml")
    weeks = weekly_batches(bikeshare(), cfg.data.time_column)
    history, rest = weeks[: args.history_weeks], weeks[args.history_weeks :]
    if args.weeks:
        rest = rest[: args.weeks]
    dr = DataRoot(settings.data_root(), cfg.name).ensure()
    dr.import_batch(pd.concat([w for _, w in history]), f"{history[0][0]}-history.parquet", stage="archive")
    say(
        f"History: {len(history)} weeks ({sum(len(w) for _, w in history)} rows) in archive/; "
        f"replaying {len(rest)} weekly batches."
    )

    rows: list[dict[str, Any]] = []
    counts = {"asset": 0, "schedule": 0, "registered": 0, "rejected": 0}

    def retrain(source: str, reason: str, week: str) -> dict[str, Any]:
        conf = {"trigger_source": source, "reason": reason}
        with quiet(logs / f"retrain-{week}-{source}.log"):
            res = harness.run_dag(f"{cfg.name}__retrain", conf)
        ev = harness.xcom(f"{cfg.name}__retrain", res["run_id"], "evaluate") or {}
        reg = harness.xcom(f"{cfg.name}__retrain", res["run_id"], "register")
        champ = registry.champion(cfg.name)
        if res["state"] != "success":
            outcome = f"FAILED ({res['state']}; see {logs})"
        elif reg:
            outcome = f"registered v{reg['version']}, promoted to champion"
            counts["registered"] += 1
        else:
            outcome = "rejected: " + "; ".join(ev.get("failed_checks") or ["see MLflow"])
            counts["rejected"] += 1
        cand = (ev.get("candidate") or {}).get(cfg.metric)
        champ_m = (ev.get("champion") or {}).get(cfg.metric)
        say(
            f"    retrain [{source}] {res['seconds']:.1f}s: candidate {cfg.metric} {fmt(cand)} vs champion "
            f"{fmt(champ_m)} -> {outcome}"
        )
        counts[source] = counts.get(source, 0) + 1
        rows.append(
            {
                "week": week,
                "kind": f"retrain:{source}",
                "outcome": outcome,
                "reason": reason,
                "version": champ.version if champ else None,
                "seconds": res["seconds"],
            }
        )
        return res

    say("\nTraining the first champion (retrain DAG, manual run)...")
    retrain("manual", "initial champion from history", history[-1][0])

    cron = croniter(cfg.schedule, datetime.fromisoformat(rest[0][0])) if cfg.schedule else None
    next_cron = cron.get_next(datetime) if cron else None
    bad_at = len(rest) // 3 if not args.no_bad_batch else -1
    say(f"\n{'week':<11} {'rows':>4} {'drift':>5} {'pdrift':>6} {cfg.metric:>6}  decision")
    for i, (week, df) in enumerate(rest):
        week_start = datetime.fromisoformat(week)
        while next_cron is not None and next_cron <= week_start:  # the cron fired before this batch landed
            retrain("schedule", f"cron {cfg.schedule} at {next_cron:%Y-%m-%d %H:%M} (data time)", week)
            next_cron = cron.get_next(datetime)  # type: ignore[union-attr]
        if i == bad_at:  # a broken export: the temperature column arrives as text
            bad = df.copy()
            bad["temp"] = "n/a"
            dr.import_batch(bad, f"{week}-export-broken.csv")
            with quiet(logs / f"monitor-{week}-broken.log"):
                res = harness.run_dag(f"{cfg.name}__monitor")
            reason = dr.quarantine_reason(f"{week}-export-broken.csv") or {}
            first = (reason.get("message") or "").splitlines()[1:2]
            say(
                f"{week:<11} {len(bad):>4} {'-':>5} {'-':>6} {'-':>6}  QUARANTINED ({res['state']}): "
                f"{first[0].strip() if first else reason}"
            )
            rows.append({"week": week, "kind": "quarantine", "outcome": "quarantined", "reason": first})
        dr.import_batch(df, f"{week}.parquet")
        before = len(harness.asset_events(assets.retrain_request_uri(cfg.name)))
        with quiet(logs / f"monitor-{week}.log"):
            res = harness.run_dag(f"{cfg.name}__monitor")
        d = harness.xcom(f"{cfg.name}__monitor", res["run_id"], "decide") or {}
        drift = harness.xcom(f"{cfg.name}__monitor", res["run_id"], "drift_report") or {}
        perf = harness.xcom(f"{cfg.name}__monitor", res["run_id"], "performance") or {}
        events = harness.asset_events(assets.retrain_request_uri(cfg.name))
        verdict = d.get("verdict", f"monitor {res['state']}")
        detail = "; ".join(d.get("reasons") or [])
        if d.get("suppressed_by"):
            detail += f" [{d['suppressed_by']}]"
        say(
            f"{week:<11} {len(df):>4} {fmt(drift.get('data_drift_share'))} {fmt(drift.get('prediction_drift'), '6.3f')} "
            f"{fmt(perf.get('value'), '6.1f')}  {verdict.upper()}{': ' + detail if detail else ''}"
        )
        rows.append(
            {
                "week": week,
                "kind": "monitor",
                "drift": drift.get("data_drift_share"),
                "prediction_drift": drift.get("prediction_drift"),
                "metric": perf.get("value"),
                "verdict": verdict,
                "reasons": d.get("reasons"),
                "seconds": res["seconds"],
                "version": champ.version if (champ := registry.champion(cfg.name)) else 0,
            }
        )
        if len(events) > before:  # the monitor emitted the asset: run the asset-triggered retrain
            retrain("asset", "; ".join(events[-1]["extra"].get("reasons", [])), week)

    champ = registry.champion(cfg.name)
    elapsed = time.monotonic() - started
    monitors = [r for r in rows if r["kind"] == "monitor"]
    say("\nSummary")
    say(
        f"  batches checked: {len(monitors)}; retrain requests from the trigger policy: {counts['asset']}; "
        f"scheduled retrains: {counts['schedule']}"
    )
    say(
        f"  candidates registered and promoted: {counts['registered']}; rejected by validation: {counts['rejected']}"
    )
    if monitors:
        vals = [r["metric"] for r in monitors if r["metric"] is not None]
        say(
            f"  champion {cfg.metric} on incoming batches: mean {sum(vals) / len(vals):.1f}, worst {max(vals):.1f}"
        )
        say(f"  monitor run median {sorted(r['seconds'] for r in monitors)[len(monitors) // 2]:.1f}s")
    if champ:
        say(
            f"  final champion: {cfg.name} v{champ.version}, holdout {cfg.metric} {champ.metrics.get(cfg.metric, float('nan')):.1f}"
        )
    say(f"  demo took {elapsed:.0f}s")
    say("\nLook around:")
    say(
        f"  MLflow UI:        .venv/bin/mlflow ui --backend-store-uri sqlite:///{state / 'mlflow.db'} --host 127.0.0.1 --port 5000"
    )
    say(f"  Evidently HTML:   {dr.reports / 'evidently'}/<week>.html")
    say(f"  GX results/docs:  {dr.reports / 'gx'}/ (Data Docs: <batch>/docs/index.html)")
    say(f"  quarantine:       {dr.quarantine}/ (each file with a .reason.json)")
    say(f"  snapshots:        {dr.snapshots}/<sha256>/manifest.json")
    say(f"  task logs:        {logs}/")
    ok = counts["registered"] >= 1 and (counts["asset"] >= 1 or counts["schedule"] >= 1)
    return 0 if ok else 1


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    sys.exit(main())
