"""The ``retrainer`` command: each stage runnable without Airflow."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

from retrainer import backtest, settings
from retrainer.backtest import tune
from retrainer.config import find_config, load_config
from retrainer.config.reference import json_schema
from retrainer.exceptions import ModelRejected, RetrainerError
from retrainer.ml.datasets import bikeshare
from retrainer.stages import retrain
from retrainer.stages.check import check_file
from retrainer.stages.promotion import rollback
from retrainer.stages.reproduce import reproduce
from retrainer.stages.retention import collect
from retrainer.storage import DataRoot, read_batch, to_utc_naive, write_text
from retrainer.tracking import registry


def _validate_config(args: argparse.Namespace) -> int:

    cfg = load_config(args.config)
    print(
        f"{args.config}: OK (model {cfg.name!r}, {cfg.task}, {len(cfg.data.features)} features, "
        f"metric {cfg.metric}, schedule {cfg.schedule!r})"
    )
    return 0


def _config_schema(args: argparse.Namespace) -> int:
    """JSON Schema of a model config, for editors (YAML language server) and other tools."""
    import json

    text = json.dumps(json_schema(), indent=2, ensure_ascii=False) + "\n"
    if args.out:
        Path(args.out).write_text(text, encoding="utf-8")
        print(f"wrote {args.out}")
    else:
        sys.stdout.write(text)
    return 0


def _seed(args: argparse.Namespace) -> int:
    """Put history into archive/ (the first champion is trained from it) or batches into landing/."""
    import pandas as pd

    cfg = load_config(args.config)
    df = read_batch(Path(args.data)) if args.data != "bikeshare" else _bikeshare()
    dr = DataRoot(settings.data_root(), cfg.name).ensure()
    df[cfg.data.time_column] = to_utc_naive(df[cfg.data.time_column])
    if args.until:
        df = df[df[cfg.data.time_column] < pd.Timestamp(args.until)]
    path = dr.import_batch(df, args.name, stage=args.stage)
    print(f"wrote {len(df)} rows to {path}")
    return 0


def _backtest(args: argparse.Namespace) -> int:
    """Replay a dataset through never / every_k / the trigger policy; table, JSON and plot."""
    import json

    cfg = load_config(args.config)
    df = backtest.load_data(cfg, args.data)
    report = backtest.backtest(
        cfg,
        df,
        batch_freq=args.batch_freq,
        label_delay=args.label_delay,
        warmup=args.warmup,
        max_k=args.max_k,
        progress=not args.no_progress,
        data_name=args.data,
        oracle_bound=not args.no_oracle,
        target_recovered=args.target_recovered,
        max_share=args.max_share,
        threads=args.threads or None,
    )
    print(backtest.format_table(report))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=1))
        print(f"\nJSON: {args.json}")
    if args.plot:
        print(f"plot: {backtest.plot(report, args.plot)}")
    return 0


def _tune(args: argparse.Namespace) -> int:
    """Choose the trigger policy on the earlier part of the history, verify it on the rest."""
    import json

    cfg = load_config(args.config)
    out = Path(args.write) if args.write else None
    if out is not None:  # refused before the replay, not after minutes of it
        if out.exists() and out.resolve() == Path(args.config).resolve():
            raise RetrainerError(
                f"--write {out}: that is the input config; tune never edits it, give a new path"
            )
        if out.stem != cfg.name:
            raise RetrainerError(
                f"--write {out}: a model config's file name must be its model name ({cfg.name}.yaml); "
                f"write it to another folder, e.g. tuned/{cfg.name}.yaml"
            )
    df = backtest.load_data(cfg, args.data)
    report = tune.tune(
        cfg,
        df,
        batch_freq=args.batch_freq,
        label_delay=args.label_delay,
        warmup=args.warmup,
        max_k=args.max_k,
        max_share=args.max_share,
        split=args.split,
        progress=not args.no_progress,
        data_name=args.data,
        threads=args.threads or None,
    )
    print(tune.format_tune(report))
    if args.json:
        write_text(Path(args.json), json.dumps(report, indent=1))
        print(f"\nJSON: {args.json}")
    if out is not None:
        text = tune.tuned_yaml(Path(args.config).read_text(encoding="utf-8"), report)
        tune.check_tuned(text, report, str(out))
        write_text(out, text)
        print(f"tuned config: {out} (the input {args.config} is unchanged)")
    return 0


def _bikeshare():  # type: ignore[no-untyped-def]

    return bikeshare()


def _history(args: argparse.Namespace) -> int:
    """Every recorded alias move of a model, oldest first."""
    import json

    events = registry.history(args.model)
    if args.json:
        print(json.dumps(events, indent=2))
        return 0
    if not events:
        print(f"no history for model {args.model!r} (tracking URI: see MLFLOW_TRACKING_URI)")
        return 0
    rows = [
        (
            str(e["seq"]),
            e["at"],
            e["action"],
            e["alias"],
            "-" if e["from_version"] is None else f"v{e['from_version']}",
            "-" if e["to_version"] is None else f"v{e['to_version']}",
            e["by"],
            e["reason"] if args.full else _clip(e["reason"], 70),
        )
        for e in events
    ]
    head = ("#", "when (UTC)", "action", "alias", "from", "to", "by", "why")
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head) - 1)]
    for r in [head, *rows]:
        print("  ".join(c.ljust(w) for c, w in zip(r[:-1], widths, strict=True)) + "  " + r[-1])
    return 0


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _rollback(args: argparse.Namespace) -> int:
    """Point the champion alias back at an earlier version (default: the previous champion)."""
    import getpass

    out = rollback(args.model, args.to, args.reason, by=f"cli:{getpass.getuser()}")
    print(
        f"{args.model}: champion rolled back v{out['from_version']} -> v{out['to_version']} (recorded in history)"
    )
    return 0


def _reproduce(args: argparse.Namespace) -> int:
    """Retrain a version from its snapshot and recorded config; exit 1 if the metrics differ."""
    import json

    out = reproduce(args.model, args.version)
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        print(
            f"{args.model} v{out['version']}: run {out['run_id']}, snapshot {out['snapshot_sha256'][:12]}, "
            f"config {out['config_fingerprint']}, {out['train_rows']} train / {out['holdout_rows']} holdout rows"
        )
        for k, m in out["metrics"].items():
            print(
                f"  {k:<18} recorded {m['recorded']!r:<22} reproduced {m['reproduced']!r:<22} {'same' if m['match'] else 'DIFFERENT'}"
            )
        print(f"  predictions on the holdout: {'identical' if out['predictions_match'] else 'DIFFERENT'}")
        print("REPRODUCED: identical metrics" if out["match"] else "NOT REPRODUCED: results differ")
    return 0 if out["match"] else 1


def _check(args: argparse.Namespace) -> int:
    """Gate, score, signals and decision for one batch file against the current champion."""
    import json

    cfg = load_config(args.config)
    path = Path(args.file)
    if not path.is_file():
        raise RetrainerError(f"{path}: no such batch file")
    out = check_file(cfg, path, Path(args.report_dir) if args.report_dir else None)
    if args.json:
        print(json.dumps(out, indent=2, default=str))
        return 0 if out["gate"]["passed"] else 1
    gate = out["gate"]
    print(f"{cfg.name}: {path} ({out['rows']} rows)")
    print(f"  quality gate: {'passed' if gate['passed'] else 'FAILED'}")
    for line in gate["failures"]:
        print(f"    - {line}")
    if not gate["passed"]:
        print(f"verdict: {out['verdict']}")
        return 1
    if out["champion_version"] is None:
        print("  no champion yet: nothing to score with")
    else:
        d, perf = out["drift"], out["performance"]
        print(f"  champion v{out['champion_version']}")
        if d.get("data_drift_share") is not None:
            print(
                f"  data drift share {d['data_drift_share']:.2f} {d.get('drifted_columns') or ''}; "
                f"prediction drift {d['prediction_drift']:.3f} ({d.get('sampled', '')})"
            )
        value = perf.get("value")
        print(
            f"  {perf['metric']} on {perf['labelled_rows']} labelled rows: "
            + ("-" if value is None else f"{value:.4g}")
            + f" (champion holdout {perf.get('reference')})"
        )
        if out["flagged_rate"] is not None:
            print(f"  flagged rate {out['flagged_rate']:.3f}")
    dec = out["decision"]
    reasons = "; ".join(dec.get("reasons") or [])
    print(f"verdict: {out['verdict']}" + (f": {reasons}" if reasons else ""))
    return 0


def _retrain(args: argparse.Namespace) -> int:
    """The retrain path once, without Airflow: snapshot, gate, train, evaluate, register, promote."""
    import json

    cfg = load_config(args.config)
    trigger = retrain.resolve_trigger(
        "manual", [], {"force": args.force, "reason": args.reason, "window": args.window}
    )
    snap = retrain.snapshot(cfg, trigger["window"])
    retrain.gate(cfg, snap)
    trained = retrain.train(cfg, snap, trigger, "cli")
    evaluation = retrain.evaluate(cfg, snap, trained, trigger["force"])
    out: dict[str, Any] = {
        "snapshot": snap,
        "train": trained,
        "evaluation": evaluation,
        "registered": None,
        "promoted": None,
    }
    try:
        registered = retrain.register(cfg, snap, trained, evaluation, trigger)
    except ModelRejected:
        registered = None
    if registered is not None:
        out["registered"] = registered
        out["promoted"] = retrain.promote(cfg, registered, evaluation, trigger)
    if args.json:
        print(json.dumps(out, indent=2, default=str))
        return 0 if registered is not None else 1
    m = cfg.metric
    cand, champ = evaluation["candidate"].get(m), evaluation["champion"].get(m)
    print(
        f"{cfg.name}: snapshot {snap['sha256'][:12]} ({snap['rows']} rows from {len(snap['sources'])} batches); "
        f"run {trained['run_id']}{' (reused)' if trained['reused'] else ''}"
    )
    print(
        f"  {m}: candidate {cand:.4g}"
        + ("" if champ is None else f" vs champion v{evaluation['champion_version']} {champ:.4g}")
    )
    if registered is None:
        print("rejected: " + "; ".join(evaluation["failed_checks"]))
        return 1
    staged = out["promoted"]
    print(
        f"registered v{registered['version']}"
        + ("" if registered["created"] else " (already registered)")
        + (f", {staged['alias']}" if staged.get("alias") else "")
    )
    if staged.get("refused"):
        print(staged["refused"])
    return 0


def _gc(args: argparse.Namespace) -> int:
    """Remove what the model's retention rules allow (archive, snapshots, reports, predictions, records)."""
    import json

    cfg = (
        load_config(args.model)
        if args.model.endswith((".yaml", ".yml"))
        else find_config(args.model, settings.config_dir())
    )
    plan = collect(cfg, dry_run=args.dry_run)
    if args.json:
        print(json.dumps(plan.to_dict(), indent=2))
        return 0
    verb = "would remove" if args.dry_run else "removed"
    for kind, entries in plan.remove.items():
        print(f"{kind}: {verb} {len(entries)}")
        for e in entries:
            print(f"  {e['path']}  ({e['why']})")
    kept = ", ".join(f"{k} {v}" for k, v in plan.kept.items())
    print(
        f"{cfg.name}: {verb} {sum(len(v) for v in plan.remove.values())} item(s), {plan.bytes / 1e6:.1f} MB; kept {kept}"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="retrainer", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("validate-config", help="check a model config; non-zero exit with the problem")
    p.add_argument("config")
    p.set_defaults(func=_validate_config)

    p = sub.add_parser(
        "config-schema", help="print the JSON Schema of a model config (for editor completion and validation)"
    )
    p.add_argument("--out", help="write it to this file instead")
    p.set_defaults(func=_config_schema)

    p = sub.add_parser("seed", help="import a data file as a batch (history into archive/, or into landing/)")
    p.add_argument("config")
    p.add_argument("--data", required=True, help="CSV/Parquet file, or 'bikeshare' for the shipped dataset")
    p.add_argument("--name", default="history.parquet", help="batch file name")
    p.add_argument("--stage", choices=["archive", "landing"], default="archive")
    p.add_argument("--until", help="keep rows before this timestamp")
    p.set_defaults(func=_seed)

    p = sub.add_parser("history", help="every promotion, retirement and rollback of a model, as a table")
    p.add_argument("model")
    p.add_argument("--json", action="store_true", help="print the events as JSON")
    p.add_argument("--full", action="store_true", help="do not shorten the reasons")
    p.set_defaults(func=_history)

    p = sub.add_parser("rollback", help="move the champion alias back (default: to the previous champion)")
    p.add_argument("model")
    p.add_argument("--to", type=int, help="version to restore (default: the previous champion)")
    p.add_argument("--reason", default="", help="why (recorded in the history)")
    p.set_defaults(func=_rollback)

    p = sub.add_parser("reproduce", help="retrain a version from its snapshot and config; compare metrics")
    p.add_argument("model")
    p.add_argument("version", type=int)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_reproduce)
    p = sub.add_parser(
        "check", help="gate, score, drift, performance and decision for one batch file (nothing recorded)"
    )
    p.add_argument("config")
    p.add_argument("file", help="a CSV or Parquet batch")
    p.add_argument("--json", action="store_true", help="print the full result as JSON")
    p.add_argument("--report-dir", help="write the GX result, Data Docs and Evidently report here")
    p.set_defaults(func=_check)

    p = sub.add_parser("retrain", help="run the retrain path once: snapshot, gate, train, evaluate, register")
    p.add_argument("config")
    p.add_argument("--force", action="store_true", help="skip the comparison with the champion")
    p.add_argument("--reason", default="", help="why (recorded in MLflow and the history)")
    p.add_argument("--window", help="override the training window, e.g. 12W")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_retrain)

    p = sub.add_parser("gc", help="remove what the retention rules allow (--dry-run lists it)")
    p.add_argument("model", help="model name (config from RETRAINER_CONFIG_DIR) or a config file")
    p.add_argument("--dry-run", action="store_true", help="list what would be removed; remove nothing")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_gc)

    p = sub.add_parser(
        "backtest",
        help="replay a time-ordered dataset through the retraining policies (prequential, no Airflow/MLflow)",
    )
    p.add_argument("config")
    p.add_argument(
        "--data",
        required=True,
        help="CSV/Parquet file, or a shipped dataset: bikeshare, rainfall, co2, trump_approval, nyse",
    )
    p.add_argument("--batch-freq", help="batch length, e.g. 7D (default: backtest.batch_freq or 7D)")
    p.add_argument(
        "--label-delay", type=int, help="batches until labels arrive (default: triggers.label_delay_batches)"
    )
    p.add_argument(
        "--warmup", type=int, help="batches that train the first model (default: the training window)"
    )
    p.add_argument("--max-k", type=int, help="largest k of the every_k schedules (default: backtest.max_k)")
    p.add_argument("--json", help="write the report as JSON here")
    p.add_argument("--plot", help="write a PNG plot here")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    p.add_argument(
        "--target-recovered",
        type=float,
        default=0.95,
        help="check each trigger policy recovers at least this share of every_batch's gain over never "
        "(default 0.95)",
    )
    p.add_argument(
        "--max-share",
        type=float,
        default=0.25,
        help="check each trigger policy uses at most this share of every_batch's retrains (default 0.25)",
    )
    p.add_argument(
        "--no-oracle",
        action="store_true",
        help="skip the oracle bound (the best schedule with the same retrains, chosen in hindsight)",
    )
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="BLAS/OpenMP threads for the replay's many small fits (default 1: fastest on small batches and "
        "on shared cores; 0 = the libraries' defaults)",
    )
    p.set_defaults(func=_backtest)

    p = sub.add_parser(
        "tune",
        help="choose the trigger policy on the earlier part of a history and verify it on the later part",
    )
    p.add_argument("config")
    p.add_argument("--data", required=True, help="CSV/Parquet file, or a shipped dataset (as for backtest)")
    p.add_argument(
        "--label-delay", type=int, help="batches until labels arrive (default: triggers.label_delay_batches)"
    )
    p.add_argument(
        "--max-share",
        type=float,
        default=0.25,
        help="the chosen policy uses at most this share of every_batch's retrains on the search part "
        "(default 0.25)",
    )
    p.add_argument(
        "--split",
        type=float,
        default=0.6,
        help="share of the replayed batches (the earlier ones) the search uses; the rest verifies (default 0.6)",
    )
    p.add_argument("--json", help="write the report as JSON here")
    p.add_argument(
        "--write",
        help="write the config with the chosen triggers block here (a new file named <model>.yaml; the input "
        "is never edited)",
    )
    p.add_argument("--batch-freq", help="batch length, e.g. 7D (default: backtest.batch_freq or 7D)")
    p.add_argument(
        "--warmup", type=int, help="batches that train the first model (default: the training window)"
    )
    p.add_argument("--max-k", type=int, help="largest k of the every_k schedules (default: backtest.max_k)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="BLAS/OpenMP threads for the fits (default 1; 0 = the libraries')",
    )
    p.set_defaults(func=_tune)

    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    try:
        return int(args.func(args))
    except RetrainerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
