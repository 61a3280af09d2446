"""Benchmark: big batches and long histories, each number beside a baseline measured in the same run.

    .venv/bin/python benchmarks/scale.py        (or: make bench-scale; ~6-10 min on 2 cores)

1. **Monitor on a 1M-row x 22-feature batch** (CSV and Parquet): every monitor task (claim, validate,
   score, drift, performance, flagged_rate, decide, archive) runs in its own process, as under Airflow;
   each reports its time (libraries imported and the MLflow store opened first, not counted) and its peak RSS
   (``VmHWM``).
   Baseline: the minimal work in one process: read the file once, predict once, a scipy KS / chi-squared
   loop over the 22 columns against the champion's training data. Also: the quality gate alone vs a
   plain 11-expectation GX suite on the same rows.
2. **Retrain with 10 vs 100 archived batches** (100k rows each, the training window holds 10): snapshot,
   gate, train, evaluate, register, promote in one process per archive length. Baseline: reading the
   window's files and fitting the same estimator once. The same with a LightGBM classifier on the
   shorter archive (its own read + fit baseline).
3. **Policy state read at 100 vs 3,000 recorded decisions** (``decisions.policy_state``, what ``decide``
   calls), median of 3 reads.

Prints the table with ratios and writes ``.bench/scale.json``. State lives in ``.bench/scale/`` (wiped
at the start). Sizes are options (``--help``); the defaults are the documented run.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
NUMERIC = [f"f{i:02d}" for i in range(18)]
CATEGORIES = {
    "c0": ["a", "b", "c", "d"],
    "c1": ["x", "y", "z"],
    "c2": [f"k{i}" for i in range(8)],
    "c3": ["north", "south", "east", "west", "centre"],
}
TARGETS = {
    "monitor_ratio": 3.0,
    "task_rss_mb": 1536,
    "retrain_ratio": 3.0,
    "archive_growth": 1.2,
    "state_growth": 1.2,
}
PROFILE: list[str] = []  # steps run under cProfile (--profile STEP): their stats go beside the step's output


# -- data ------------------------------------------------------------------------------------------------
SKLEARN_MODEL = {"estimator": "sklearn.linear_model.LogisticRegression", "params": {"max_iter": 200}}
# the LightGBM row: seeded and deterministic, as docs/how-to/bring-your-own-model.md recommends
LIGHTGBM_MODEL = {
    "estimator": "lightgbm.LGBMClassifier",
    "params": {
        "n_estimators": 100,
        "random_state": 0,
        "deterministic": True,
        "force_row_wise": True,
        "verbose": -1,
    },
    "scale_numeric": False,
}


def config_dict(
    window_weeks: int, window: str | None = None, model: dict[str, Any] | None = None
) -> dict[str, Any]:
    return {
        "name": "scale",
        "task": "classification",
        "description": "synthetic 22-feature classification (benchmark)",
        "data": {
            "time_column": "ts",
            "target": "label",
            "min_batch_rows": 100,
            "features": [
                *NUMERIC,
                *({"name": c, "type": "categorical"} for c in CATEGORIES),
            ],
        },
        "model": model or SKLEARN_MODEL,
        "training": {"window": window or f"{window_weeks}W", "holdout": "1W", "min_rows": 300},
        "schedule": None,
        "validation": {"metric": "f1"},
    }


def synth(n: int, start: str, days: float, seed: int) -> Any:
    """``n`` rows spread over ``days`` from ``start``: 18 numeric, 4 categorical features, binary label."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    t = pd.Timestamp(start) + pd.to_timedelta(np.sort(rng.integers(0, int(days * 86400), n)), unit="s")
    x = rng.normal(size=(n, len(NUMERIC)))
    df = pd.DataFrame(x, columns=NUMERIC)
    df.insert(0, "ts", t)
    for c, cats in CATEGORIES.items():
        df[c] = rng.choice(cats, n)
    logit = x[:, 0] - 0.7 * x[:, 1] + 0.5 * x[:, 2] + (df["c0"] == "a").to_numpy()
    df["label"] = (logit + rng.logistic(size=n) > 0).astype(int)
    return df


# -- child processes ----------------------------------------------------------------------------------------
def _maxrss_mb() -> float:
    """Peak RSS of this process: VmHWM (ru_maxrss would include the parent's size from before exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _child(spec_file: str) -> None:
    """Run one measured step (imports first, not timed) and write its time, result and peak RSS."""
    spec = json.loads(Path(spec_file).read_text())
    os.environ.update(spec["env"])
    for module in spec["imports"]:
        importlib.import_module(module)
    if any(m.startswith("mlflow") for m in spec["imports"]):  # open the tracking store (migrations check)
        from retrainer.tracking import runs as tracking

        tracking.client().search_experiments(max_results=1)
    rss_imports = _maxrss_mb()
    fn = globals()[f"step_{spec['step']}"]
    profile = spec["step"] in spec.get("profile", [])
    if profile:
        import cProfile

        prof = cProfile.Profile()
        prof.enable()
    t = time.perf_counter()
    result = fn(*spec["args"])
    seconds = time.perf_counter() - t
    if profile:
        import pstats

        prof.disable()
        prof.dump_stats(Path(spec["out"]).with_suffix(".prof"))
        with Path(spec["out"]).with_suffix(".profile.txt").open("w") as f:
            pstats.Stats(prof, stream=f).sort_stats("cumulative").print_stats(40)
    out = {"seconds": seconds, "rss_mb": _maxrss_mb(), "rss_imports_mb": rss_imports, "result": result}
    Path(spec["out"]).write_text(json.dumps(out, default=str))


def run_step(
    work: Path, env: dict[str, str], step: str, args: list[Any], imports: list[str]
) -> dict[str, Any]:
    spec = work / f"step-{step}-{time.monotonic_ns()}.json"
    out = spec.with_suffix(".out.json")
    spec.write_text(
        json.dumps(
            {"env": env, "step": step, "args": args, "imports": imports, "out": str(out), "profile": PROFILE}
        )
    )
    proc = subprocess.run(
        [sys.executable, __file__, "--child", str(spec)],
        env={**os.environ, "PYTHONPATH": str(REPO / "include")},
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        raise SystemExit(f"step {step} failed:\n{proc.stderr[-4000:]}")
    if step in PROFILE:
        print(f"    profile of {step}: {out.with_suffix('.profile.txt')}", flush=True)
    return json.loads(out.read_text())


def _cfg(path: str) -> Any:
    from retrainer.config import load_config

    return load_config(path)


# steps (run in the child) ---------------------------------------------------------------------------------
def step_train_champion(config: str) -> dict[str, Any]:
    from retrainer.stages import retrain

    cfg = _cfg(config)
    trigger = retrain.resolve_trigger("manual", [], {"reason": "benchmark champion"})
    snap = retrain.snapshot(cfg)
    retrain.gate(cfg, snap)
    trained = retrain.train(cfg, snap, trigger)
    ev = retrain.evaluate(cfg, snap, trained)
    reg = retrain.register(cfg, snap, trained, ev, trigger)
    retrain.promote(cfg, reg, ev, trigger)
    return {"version": reg["version"], "rows": snap["rows"]}


def step_claim(config: str, run_id: str) -> Any:
    from retrainer.stages import monitor

    return monitor.claim_batch(_cfg(config), run_id)


def step_validate(config: str, claim: dict[str, Any], run_id: str) -> Any:
    from retrainer.stages import monitor

    return monitor.validate_batch(_cfg(config), claim, run_id)


def step_score(config: str, claim: dict[str, Any]) -> Any:
    from retrainer.stages import monitor

    return monitor.score_batch(_cfg(config), claim)


def step_drift(config: str, claim: dict[str, Any], scored: dict[str, Any]) -> Any:
    from retrainer.stages import monitor

    return monitor.measure_drift(_cfg(config), claim, scored)


def step_performance(config: str, claim: dict[str, Any], scored: dict[str, Any]) -> Any:
    from retrainer.stages import monitor

    return monitor.performance(_cfg(config), claim, scored)


def step_flagged_rate(config: str, claim: dict[str, Any], validation: dict[str, Any]) -> Any:
    from retrainer.stages import monitor

    return monitor.flagged_rate(_cfg(config), claim, validation)


def step_decide(
    config: str, claim: Any, validation: Any, scored: Any, drift: Any, perf: Any, flags: Any
) -> Any:
    from retrainer.stages import monitor

    return monitor.decide(_cfg(config), claim, validation, scored, drift, perf, flags, "bench")


def step_archive(config: str, claim: dict[str, Any]) -> Any:
    from retrainer.stages import monitor

    return monitor.archive_batch(_cfg(config), claim)


def step_minimal_monitor(config: str, file: str) -> dict[str, Any]:
    """The least a monitor must do: read once, predict once, a KS / chi-squared test per column."""
    import numpy as np
    import pandas as pd
    from scipy import stats

    from retrainer import settings
    from retrainer.storage import DataRoot
    from retrainer.storage.snapshots import load_snapshot
    from retrainer.tracking import registry
    from retrainer.tracking.artifacts import load_run_model

    cfg = _cfg(config)
    champ = registry.champion(cfg.name)
    model = load_run_model(champ.run_id, cfg)
    ref = load_snapshot(DataRoot(settings.data_root(), cfg.name).snapshots, champ.snapshot_sha256)
    t = time.perf_counter()  # the timed part: what any monitor has to do with this batch
    df = pd.read_csv(file) if file.endswith(".csv") else pd.read_parquet(file)
    model.predict(df[cfg.data.feature_names])
    pvalues = {}
    for c in cfg.data.numeric:
        pvalues[c] = stats.ks_2samp(ref[c].to_numpy(), df[c].to_numpy()).pvalue
    for c in cfg.data.categorical:
        a, b = ref[c].value_counts(), df[c].value_counts()
        table = pd.concat([a, b], axis=1).fillna(0).to_numpy()
        pvalues[c] = stats.chi2_contingency(table)[1]
    return {
        "seconds_inner": time.perf_counter() - t,
        "columns": len(pvalues),
        "min_p": float(np.min(list(pvalues.values()))),
    }


def step_gate_only(config: str, file: str, plain: bool) -> dict[str, Any]:
    """The quality gate on the batch (``plain``: a plain 11-expectation GX suite on the same rows)."""
    import pandas as pd

    from retrainer.gates import quality
    from retrainer.ml.train import prepare

    cfg = _cfg(config)
    df = prepare(cfg, pd.read_parquet(file))
    if plain:
        exps = [quality.Expectation("row_count", kwargs={"min_value": 1})]
        for c in NUMERIC[:5]:
            exps += [
                quality.Expectation("not_null", c),
                quality.Expectation("between", c, {"min_value": -10, "max_value": 10, "mostly": 0.99}),
            ]
        import great_expectations as gx

        ctx = gx.get_context(mode="ephemeral")
        bd = (
            ctx.data_sources.add_pandas("p")
            .add_dataframe_asset("a")
            .add_batch_definition_whole_dataframe("all")
        )
        suite = ctx.suites.add(
            gx.ExpectationSuite(name="plain", expectations=[quality._to_gx(e) for e in exps])
        )
        vd = ctx.validation_definitions.add(gx.ValidationDefinition(name="plain", data=bd, suite=suite))
        t = time.perf_counter()
        ok = vd.run(batch_parameters={"dataframe": df}).success
        return {"seconds_inner": time.perf_counter() - t, "success": ok, "expectations": len(exps)}
    from retrainer.stages.batches import reference_frame
    from retrainer.tracking import registry

    exps = quality.build_expectations(cfg, reference_frame(cfg, registry.champion(cfg.name)))
    t = time.perf_counter()
    res = quality.validate(df, exps, name="gate", raise_on_failure=False)
    return {"seconds_inner": time.perf_counter() - t, "success": res["success"], "expectations": len(exps)}


def step_retrain(config: str) -> dict[str, Any]:
    from retrainer.stages import retrain

    cfg = _cfg(config)
    times: dict[str, float] = {}

    def timed(name: str, fn: Any, *args: Any) -> Any:
        t = time.perf_counter()
        out = fn(*args)
        times[name] = time.perf_counter() - t
        return out

    trigger = retrain.resolve_trigger("manual", [], {"reason": "benchmark"})
    snap = timed("snapshot", retrain.snapshot, cfg, None)
    timed("gate", retrain.gate, cfg, snap)
    trained = timed("train", retrain.train, cfg, snap, trigger)
    ev = timed("evaluate", retrain.evaluate, cfg, snap, trained)
    reg = timed("register", retrain.register, cfg, snap, trained, ev, trigger)
    timed("promote", retrain.promote, cfg, reg, ev, trigger)
    return {"stages": times, "rows": snap["rows"], "sources": len(snap["sources"])}


def step_index_archive(config: str) -> dict[str, Any]:
    """Record every archived batch in the archive index, as the archive step does when it archives one."""
    from retrainer.settings import data_root
    from retrainer.storage import DataRoot

    cfg = _cfg(config)
    dr = DataRoot(data_root(), cfg.name)
    for path in dr.archived():
        dr.index_archived(path, cfg.data.time_column)
    return {"batches": len(dr.archived())}


def step_minimal_retrain(config: str, files: list[str]) -> dict[str, Any]:
    import pandas as pd

    from retrainer import settings
    from retrainer.ml.train import fit, prepare, thread_cap

    cfg = _cfg(config)
    df = pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)
    with thread_cap(cfg, settings.threads()):  # as the retrain task fits
        fit(cfg, prepare(cfg, df))
    return {"rows": len(df)}


def step_seed_decisions(config: str, n: int) -> dict[str, Any]:
    """``n`` recorded decisions: ``n - 1`` decision runs, then one real ``decide`` (the policy-state
    benchmark's seeding, shared)."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    from policy_state import seed

    seed(_cfg(config), n)
    return {"seeded": n}


def step_state_read(config: str) -> dict[str, Any]:
    from retrainer.stages import decisions

    cfg = _cfg(config)
    decisions.policy_state(cfg)  # first read warms the MLflow client
    reads = []
    for _ in range(3):
        t = time.perf_counter()
        state = decisions.policy_state(cfg)
        reads.append(time.perf_counter() - t)
    return {"median": statistics.median(reads), "reads": reads, "state": str(state)[:200]}


# -- the run ------------------------------------------------------------------------------------------------
COMMON = [
    "retrainer.stages.monitor",
    "retrainer.ml.train",
    "retrainer.storage.snapshots",
    "pandas",
    "pyarrow.parquet",
    "mlflow",
]
GX = ["great_expectations", "great_expectations.expectations", "great_expectations.checkpoint"]
MODEL = [
    "mlflow.sklearn",
    "mlflow.models",
    "sklearn.pipeline",
    "sklearn.compose",
    "sklearn.linear_model",
    "skops.io",
]
EVIDENTLY = [
    "evidently",
    "evidently.presets",
    "evidently.metrics",
    "retrainer.gates.drift",
    "scipy.stats",
    "scipy.spatial",
]
MONITOR_IMPORTS = {
    "claim": [*COMMON],
    "validate": [*COMMON, *GX],
    "score": [*COMMON, *MODEL],
    "drift": [*COMMON, *MODEL, *EVIDENTLY],
    "performance": [*COMMON, "retrainer.ml.metrics", "sklearn.metrics"],
    "flagged_rate": ["retrainer.stages.monitor", "pandas"],
    "decide": [*COMMON, "retrainer.policy", "river.drift"],
    "archive": [*COMMON],
}
HEAVY = [
    "retrainer.stages.monitor",
    "pandas",
    "pyarrow.parquet",
    "mlflow.sklearn",
    "sklearn",
    "scipy.stats",
    "skops.io",
]


def environment(root: Path) -> dict[str, str]:
    return {
        "RETRAINER_DATA_ROOT": str(root / "data"),
        "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}",
        "RETRAINER_ARTIFACT_ROOT": str(root / "mlartifacts"),
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "GX_ANALYTICS_ENABLED": "false",
        "RETRAINER_CONFIG_DIR": str(root / "models"),
        "RETRAINER_SETTLE_SECONDS": "0",  # files are renamed into landing complete (delivery contract)
    }


def make_root(
    base: Path, name: str, window_weeks: int, window: str | None = None, model: dict[str, Any] | None = None
) -> tuple[Path, dict[str, str], str]:
    import yaml

    root = base / name
    (root / "models").mkdir(parents=True)
    config = root / "models" / "scale.yaml"
    config.write_text(yaml.safe_dump(config_dict(window_weeks, window, model), sort_keys=False))
    return root, environment(root), str(config)


def bench_monitor(base: Path, rows: int, train_rows: int, say: Any) -> dict[str, Any]:
    from retrainer.storage import DataRoot

    root, env, config = make_root(base, "monitor", 4)
    dr = DataRoot(root / "data", "scale").ensure()
    history = synth(train_rows, "2025-01-06", 28, seed=1)
    dr.import_batch(history, "history.parquet", stage="archive")
    champion = run_step(base, env, "train_champion", [config], HEAVY)
    say(f"champion v{champion['result']['version']} trained on {champion['result']['rows']:,} rows")
    batch = synth(rows, "2025-02-03", 7, seed=2)
    batch.loc[batch.index[: rows // 2], "label"] = None  # half the labels have arrived
    files = base / "files"
    files.mkdir()
    batch.to_parquet(files / "batch.parquet", index=False)
    import pyarrow as pa
    import pyarrow.csv

    pyarrow.csv.write_csv(pa.Table.from_pandas(batch, preserve_index=False), files / "batch.csv")
    del batch, history
    out: dict[str, Any] = {"rows": rows, "features": len(NUMERIC) + len(CATEGORIES), "train_rows": train_rows}
    for fmt in ("parquet", "csv"):
        name = f"2025-02-03-{fmt}.{fmt}"
        shutil.copy(files / f"batch.{fmt}", dr.landing / f"{name}.part")
        os.replace(dr.landing / f"{name}.part", dr.landing / name)  # delivered by rename, as producers must
        run_id = f"bench-{fmt}"
        stages: dict[str, Any] = {}

        def stage(step: str, *args: Any, stages: dict[str, Any] = stages, fmt: str = fmt) -> Any:
            res = run_step(base, env, step, [config, *args], MONITOR_IMPORTS[step])
            stages[step] = {
                "seconds": res["seconds"],
                "rss_mb": res["rss_mb"],
                "rss_imports_mb": res["rss_imports_mb"],
            }
            say(f"  {fmt:<7} {step:<13} {res['seconds']:7.2f} s  peak RSS {res['rss_mb']:6.0f} MB")
            return res["result"]

        claim = stage("claim", run_id)
        validation = stage("validate", claim, run_id)
        scored = stage("score", claim)
        drift = stage("drift", claim, scored)
        perf = stage("performance", claim, scored)
        flags = stage("flagged_rate", claim, validation)
        decision = stage("decide", claim, validation, scored, drift, perf, flags)
        stage("archive", claim)
        base_res = run_step(base, env, "minimal_monitor", [config, str(files / f"batch.{fmt}")], HEAVY)
        total = sum(s["seconds"] for s in stages.values())
        minimal = base_res["result"]["seconds_inner"]
        out[fmt] = {
            "stages": stages,
            "total_seconds": total,
            "minimal_seconds": minimal,
            "minimal_rss_mb": base_res["rss_mb"],
            "ratio": total / minimal,
            "peak_rss_mb": max(s["rss_mb"] for s in stages.values()),
            "verdict": decision.get("verdict"),
            "sampled": drift.get("sampled"),
        }
        say(
            f"  {fmt}: monitor {total:.1f} s vs minimal {minimal:.1f} s -> {total / minimal:.2f}x; peak RSS {out[fmt]['peak_rss_mb']:.0f} MB"
        )
    gate = run_step(
        base, env, "gate_only", [config, str(files / "batch.parquet"), False], MONITOR_IMPORTS["validate"]
    )
    plain = run_step(
        base, env, "gate_only", [config, str(files / "batch.parquet"), True], MONITOR_IMPORTS["validate"]
    )
    out["gate"] = {
        "seconds": gate["result"]["seconds_inner"],
        "expectations": gate["result"]["expectations"],
        "plain_seconds": plain["result"]["seconds_inner"],
        "plain_expectations": plain["result"]["expectations"],
        "ratio": gate["result"]["seconds_inner"] / plain["result"]["seconds_inner"],
    }
    say(
        f"  gate: {out['gate']['seconds']:.2f} s ({out['gate']['expectations']} expectations) vs plain "
        f"suite {out['gate']['plain_seconds']:.2f} s ({out['gate']['plain_expectations']}) -> {out['gate']['ratio']:.2f}x"
    )
    return out


def bench_retrain(base: Path, batch_rows: int, window: int, lengths: list[int], say: Any) -> dict[str, Any]:
    from retrainer.storage import DataRoot

    longest = max(lengths)
    pool = base / "archive-pool"
    pool.mkdir()
    files = []
    import pandas as pd

    first = pd.Timestamp("2020-01-06")
    for i in range(longest):
        day = first + pd.Timedelta(weeks=i)
        name = f"{day:%Y-%m-%d}.parquet"
        synth(batch_rows, str(day), 7, seed=100 + i).to_parquet(pool / name, index=False)
        files.append(name)
    say(f"{longest} archived batches of {batch_rows:,} rows written")
    out: dict[str, Any] = {"batch_rows": batch_rows, "window_batches": window}
    window_files = files[-window:]
    # the window ends at the newest row (just before the newest batch's week is over): 7n - 1 days
    # hold rows of the newest n weekly batches only, so every archive length trains on the same rows
    days = f"{7 * window - 1}D"
    for n in lengths:
        root, env, config = make_root(base, f"retrain-{n}", window, days)
        dr = DataRoot(root / "data", "scale").ensure()
        for name in files[-n:]:
            os.link(pool / name, dr.archive / name)  # the same files in every archive: no copies
        # as the monitor's archive step does for each batch it archives: its time range into the index
        indexed = run_step(base, env, "index_archive", [config], ["retrainer.storage", "pandas"])
        res = run_step(base, env, "retrain", [config], [*HEAVY, "great_expectations"])
        out[str(n)] = {
            "seconds": res["seconds"],
            "stages": res["result"]["stages"],
            "rss_mb": res["rss_mb"],
            "rows": res["result"]["rows"],
            "index_seconds_per_batch": indexed["seconds"] / n,
        }
        say(
            f"  retrain, {n:3d} archived batches: {res['seconds']:6.1f} s ({res['result']['rows']:,} rows)  peak RSS {res['rss_mb']:.0f} MB  {json.dumps({k: round(v, 1) for k, v in res['result']['stages'].items()})}"
        )
    _, env, config = make_root(base, "retrain-minimal", window, days)
    minimal = run_step(base, env, "minimal_retrain", [config, [str(pool / f) for f in window_files]], HEAVY)
    out["minimal_seconds"] = minimal["seconds"]
    short, long = out[str(min(lengths))]["seconds"], out[str(longest)]["seconds"]
    out["ratio"] = short / minimal["seconds"]
    out["growth"] = long / short
    say(
        f"  reading the window + one fit: {minimal['seconds']:.1f} s -> retrain {out['ratio']:.2f}x; {min(lengths)} -> {longest} batches: {out['growth']:.2f}x"
    )
    out["lightgbm"] = _lightgbm_retrain(base, pool, files[-min(lengths) :], window, days)
    say(
        f"  LightGBM: retrain {out['lightgbm']['seconds']:.1f} s, window + one fit {out['lightgbm']['minimal_seconds']:.1f} s -> {out['lightgbm']['ratio']:.2f}x"
    )
    return out


def _lightgbm_retrain(base: Path, pool: Path, names: list[str], window: int, days: str) -> dict[str, Any]:
    """The retrain of the shortest archive with a LightGBM classifier, and its read + fit baseline."""
    from retrainer.storage import DataRoot

    root, env, config = make_root(base, "retrain-lightgbm", window, days, LIGHTGBM_MODEL)
    dr = DataRoot(root / "data", "scale").ensure()
    for name in names:
        os.link(pool / name, dr.archive / name)
    run_step(base, env, "index_archive", [config], ["retrainer.storage", "pandas"])
    res = run_step(base, env, "retrain", [config], [*HEAVY, "great_expectations", "lightgbm"])
    _, env, config = make_root(base, "retrain-lightgbm-minimal", window, days, LIGHTGBM_MODEL)
    minimal = run_step(
        base, env, "minimal_retrain", [config, [str(pool / f) for f in names[-window:]]], [*HEAVY, "lightgbm"]
    )
    return {
        "seconds": res["seconds"],
        "stages": res["result"]["stages"],
        "rss_mb": res["rss_mb"],
        "minimal_seconds": minimal["seconds"],
        "ratio": res["seconds"] / minimal["seconds"],
    }


def bench_state(base: Path, counts: list[int], say: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for n in sorted(counts):
        _, env, config = make_root(base, f"state-{n}", 4)
        run_step(base, env, "seed_decisions", [config, n], ["retrainer.stages.monitor", "mlflow"])
        res = run_step(base, env, "state_read", [config], ["retrainer.stages.monitor", "mlflow"])
        out[str(n)] = res["result"]["median"]
        say(f"  policy state read with {n:5d} decisions: {1000 * res['result']['median']:.0f} ms")
    out["growth"] = out[str(max(counts))] / out[str(min(counts))]
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--rows", type=int, default=1_000_000, help="rows of the monitored batch")
    p.add_argument("--train-rows", type=int, default=200_000, help="rows the champion is trained on")
    p.add_argument("--batch-rows", type=int, default=100_000, help="rows per archived batch (retrain)")
    p.add_argument("--window", type=int, default=10, help="archived batches inside the training window")
    p.add_argument("--archive", default="10,100", help="archive lengths to compare")
    p.add_argument("--decisions", default="100,3000", help="decision-log lengths to compare")
    p.add_argument("--only", choices=["monitor", "retrain", "state"], action="append")
    p.add_argument(
        "--profile",
        action="append",
        default=[],
        metavar="STEP",
        help="run this step (validate, score, drift, retrain, ...) under cProfile; stats are written to "
        "<work>/step-STEP-*.out.profile.txt (times then include the profiler's overhead)",
    )
    p.add_argument("--work", default=str(REPO / ".bench" / "scale"))
    p.add_argument("--json", default=str(REPO / ".bench" / "scale.json"))
    args = p.parse_args()
    if args.child:
        _child(args.child)
        return
    PROFILE.extend(args.profile)
    base = Path(args.work)
    shutil.rmtree(base, ignore_errors=True)
    base.mkdir(parents=True)
    sys.path.insert(0, str(REPO / "include"))
    t0 = time.perf_counter()

    def say(msg: str) -> None:
        print(f"[{time.perf_counter() - t0:6.0f} s] {msg}", flush=True)

    only = set(args.only or ["monitor", "retrain", "state"])
    report: dict[str, Any] = {"machine": {"cpus": os.cpu_count(), "load_avg_start": os.getloadavg()}}
    if "monitor" in only:
        say(f"monitor: {args.rows:,} x 22 batch, champion on {args.train_rows:,} rows")
        report["monitor"] = bench_monitor(base, args.rows, args.train_rows, say)
    if "retrain" in only:
        lengths = [int(x) for x in args.archive.split(",")]
        say(f"retrain: window of {args.window} batches, archive of {lengths} batches")
        report["retrain"] = bench_retrain(base, args.batch_rows, args.window, lengths, say)
    if "state" in only:
        counts = [int(x) for x in args.decisions.split(",")]
        say(f"policy state: {counts} decisions")
        report["state"] = bench_state(base, counts, say)
    report["machine"]["load_avg_end"] = os.getloadavg()
    report["seconds"] = time.perf_counter() - t0
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(report, indent=2, default=str))
    print_table(report)
    print(f"\nJSON: {args.json}  (total {report['seconds']:.0f} s)")


def print_table(r: dict[str, Any]) -> None:
    print(
        "\nwhat                                   measured                 baseline (same run)       ratio   target"
    )
    if "monitor" in r:
        m = r["monitor"]
        for fmt in ("parquet", "csv"):
            x = m[fmt]
            print(
                f"monitor {m['rows']:,} x {m['features']} ({fmt:<7})    {x['total_seconds']:6.1f} s              minimal work {x['minimal_seconds']:5.1f} s      {x['ratio']:5.2f}x  <= {TARGETS['monitor_ratio']}x"
            )
            print(
                f"  peak RSS of any task ({fmt:<7})      {x['peak_rss_mb']:6.0f} MB             minimal work {x['minimal_rss_mb']:5.0f} MB              <= {TARGETS['task_rss_mb']} MB"
            )
        g = m["gate"]
        print(
            f"quality gate, {g['expectations']} expectations          {g['seconds']:6.2f} s              plain {g['plain_expectations']}-exp. suite {g['plain_seconds']:4.2f} s  {g['ratio']:5.2f}x"
        )
    if "retrain" in r:
        t = r["retrain"]
        lengths = sorted(int(k) for k in t if k.isdigit())
        print(
            f"retrain, window {t['window_batches']} x {t['batch_rows']:,} rows     {t[str(lengths[0])]['seconds']:6.1f} s              read window + fit {t['minimal_seconds']:5.1f} s  {t['ratio']:5.2f}x  <= {TARGETS['retrain_ratio']}x"
        )
        if "lightgbm" in t:
            g = t["lightgbm"]
            print(
                f"retrain, LightGBM, same window          {g['seconds']:6.1f} s              read window + fit {g['minimal_seconds']:5.1f} s  {g['ratio']:5.2f}x  <= {TARGETS['retrain_ratio']}x"
            )
        print(
            f"  archive {lengths[0]} -> {lengths[-1]} batches              {t[str(lengths[-1])]['seconds']:6.1f} s              {lengths[0]} batches {t[str(lengths[0])]['seconds']:5.1f} s          {t['growth']:5.2f}x  <= {TARGETS['archive_growth']}x"
        )
    if "state" in r:
        s = r["state"]
        counts = sorted(int(k) for k in s if k.isdigit())
        print(
            f"policy state read, {counts[-1]:,} decisions       {1000 * s[str(counts[-1])]:6.0f} ms             {counts[0]} decisions {1000 * s[str(counts[0])]:5.0f} ms        {s['growth']:5.2f}x  <= {TARGETS['state_growth']}x"
        )


if __name__ == "__main__":
    main()
