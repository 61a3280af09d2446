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
