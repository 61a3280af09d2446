"""The ``retrainer`` command: each stage runnable without Airflow."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from retrainer.exceptions import RetrainerError


def _validate_config(args: argparse.Namespace) -> int:
    from retrainer.config import load_config

    cfg = load_config(args.config)
    print(
        f"{args.config}: OK (model {cfg.name!r}, {cfg.task}, {len(cfg.data.features)} features, "
        f"metric {cfg.metric}, schedule {cfg.schedule!r})"
    )
    return 0


def _seed(args: argparse.Namespace) -> int:
    """Put history into archive/ (the first champion is trained from it) or batches into landing/."""
    import pandas as pd

    from retrainer import settings
    from retrainer.config import load_config
    from retrainer.storage import DataRoot, read_batch

    cfg = load_config(args.config)
    df = read_batch(Path(args.data)) if args.data != "bikeshare" else _bikeshare()
    dr = DataRoot(settings.data_root(), cfg.name).ensure()
    df[cfg.data.time_column] = pd.to_datetime(df[cfg.data.time_column])
    if args.until:
        df = df[df[cfg.data.time_column] < pd.Timestamp(args.until)]
    path = dr.import_batch(df, args.name, stage=args.stage)
    print(f"wrote {len(df)} rows to {path}")
    return 0


def _backtest(args: argparse.Namespace) -> int:
    """Replay a dataset through never / every_k / the trigger policy; table, JSON and plot."""
    import json

    from retrainer import backtest
    from retrainer.config import load_config

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
    )
    print(backtest.format_table(report))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=1))
        print(f"\nJSON: {args.json}")
    if args.plot:
        print(f"plot: {backtest.plot(report, args.plot)}")
    return 0


def _bikeshare():  # type: ignore[no-untyped-def]
    from retrainer.datasets import bikeshare

    return bikeshare()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="retrainer", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("validate-config", help="check a model config; non-zero exit with the problem")
    p.add_argument("config")
    p.set_defaults(func=_validate_config)

    p = sub.add_parser("seed", help="import a data file as a batch (history into archive/, or into landing/)")
    p.add_argument("config")
    p.add_argument("--data", required=True, help="CSV/Parquet file, or 'bikeshare' for the shipped dataset")
    p.add_argument("--name", default="history.parquet", help="batch file name")
    p.add_argument("--stage", choices=["archive", "landing"], default="archive")
    p.add_argument("--until", help="keep rows before this timestamp")
    p.set_defaults(func=_seed)

    p = sub.add_parser(
        "backtest",
        help="replay a time-ordered dataset through the retraining policies (prequential, no Airflow/MLflow)",
    )
    p.add_argument("config")
    p.add_argument(
        "--data", required=True, help="CSV/Parquet file, or a shipped dataset: bikeshare, rainfall"
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
    p.set_defaults(func=_backtest)

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
