"""Scale-out through the production twin: batches per minute with 1 and then 2 Celery workers.

For each worker count a fresh twin (Postgres, Redis, CeleryExecutor, MLflow server) is started with
``--models`` copies of the bikeshare model; each gets six weeks of history and a first champion (its retrain
DAG's first run), then ``--batches`` weekly batches land per model at once and the monitors are unpaused.
The clock runs from unpausing the monitors until every batch is archived or quarantined (drift-triggered
retrains run meanwhile, as they would in production). Prints batches per minute for each worker count and
the ratio to the first (the baseline, measured in the same run).

    python benchmarks/scaleout.py [--models 4] [--batches 10] [--workers 1 2] [--concurrency 4]

On one machine both workers share its cores: the ratio shows how much the second worker's slots help when
the work is CPU-bound on the same host; workers on separate machines add their cores too.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

from devtools import stack as S

REPO = Path(__file__).resolve().parents[1]


def model_configs(dest: Path, models: int) -> list[str]:
    S.fast_config_dir(dest, poke_interval=2)
    text = (dest / "bikeshare.yaml").read_text()
    (dest / "bikeshare.yaml").unlink()
    names = [f"bike{i + 1}" for i in range(models)]
    for name in names:
        (dest / f"{name}.yaml").write_text(text.replace("name: bikeshare", f"name: {name}", 1))
    return names


def settled(stack: S.ProdStack, dag_id: str) -> bool:
    runs = stack.runs(dag_id)
    return bool(runs) and all(r["state"] in ("success", "failed") for r in runs)


def one(workers: int, models: int, batches: int, concurrency: int) -> dict[str, float]:
    import pandas as pd

    from retrainer.ml.datasets import bikeshare, weekly_batches
    from retrainer.storage import DataRoot

    state = Path(tempfile.mkdtemp(prefix="retrainer-scaleout-"))
    names = model_configs(state / "models", models)
    stack = S.ProdStack(
        state,
        port=S.free_port(),
        config_dir=state / "models",
        workers=workers,
        worker_concurrency=concurrency,
    )
    weeks = weekly_batches(bikeshare(), "timestamp")
    try:
        stack.start()
        print(f"[{workers} worker(s)] twin started in {stack.start_seconds:.0f}s", flush=True)
        roots = {}
        for name in names:
            roots[name] = DataRoot(stack.state / "data", name).ensure()
            history = pd.concat([w for _, w in weeks[:6]])
            roots[name].import_batch(history, f"{weeks[0][0]}-history.parquet", stage="archive")
        t = time.monotonic()
        for name in names:  # unpausing starts the latest cron run: the first champion
            stack.unpause(f"{name}__retrain")
        for name in names:
            S.wait_until(f"{name}'s first champion", lambda n=name: settled(stack, f"{n}__retrain"), 900, 2)
        print(f"[{workers} worker(s)] {models} first champions in {time.monotonic() - t:.0f}s", flush=True)
        for name in names:
            for week, df in weeks[6 : 6 + batches]:
                roots[name].import_batch(df, f"{week}.parquet")
        t0 = time.monotonic()
        for name in names:
            stack.unpause(f"{name}__monitor")
        total = models * batches

        def done() -> bool:
            n = sum(
                len(list(r.archive.glob("*.parquet"))) - 1 + len(list(r.quarantine.glob("*.parquet")))
                for r in roots.values()
            )
            return n >= total

        S.wait_until("every batch archived or quarantined", done, timeout=7200, every=1)
        minutes = (time.monotonic() - t0) / 60
        rate = total / minutes
        print(
            f"[{workers} worker(s)] {total} batches in {minutes * 60:.0f}s: {rate:.2f} batches/min",
            flush=True,
        )
        return {"workers": workers, "seconds": minutes * 60, "batches_per_min": rate}
    finally:
        stack.stop()
        stack.destroy()
        shutil.rmtree(state, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", type=int, default=4)
    ap.add_argument("--batches", type=int, default=10, help="weekly batches per model (at most 40)")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--concurrency", type=int, default=4, help="task slots per Celery worker")
    args = ap.parse_args(argv)
    results = [one(w, args.models, args.batches, args.concurrency) for w in args.workers]
    base = results[0]["batches_per_min"]
    print(f"\n{args.models} models x {args.batches} batches, {args.concurrency} slots per worker")
    print(f"{'workers':>8} {'seconds':>8} {'batches/min':>12} {'ratio':>6}")
    for r in results:
        print(
            f"{r['workers']:>8} {r['seconds']:>8.0f} {r['batches_per_min']:>12.2f} {r['batches_per_min'] / base:>6.2f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
