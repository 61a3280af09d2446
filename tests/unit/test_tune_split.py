"""`retrainer tune` chooses on the search part alone: rewriting every row of the verification part (another
concept schedule, more noise) leaves the choice and every candidate's figures as they were, and changes only
the verification figures."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from retrainer.backtest import tune
from retrainer.config import parse_config
from tests.support import streams

pytestmark = pytest.mark.unit

DAYS, ROWS_PER_DAY = 48, 64


def flips(days: int = DAYS, rows: int = ROWS_PER_DAY, seed: int = 0) -> pd.DataFrame:
    """The concept-flipping stream (:func:`tests.support.streams.flips`) at this file's size."""
    return streams.flips(days, rows, seed)


CFG = parse_config(
    {
        "name": "flips",
        "task": "regression",
        "data": {"time_column": "ts", "target": "y", "features": ["a", "b"]},
        "model": {"estimator": "sklearn.linear_model.LinearRegression"},
        "training": {"window": "1D", "holdout": "6H", "min_rows": 30},
        "triggers": {"label_delay_batches": 0},
        "validation": {"metric": "mae"},
        "backtest": {"batch_freq": "1D", "max_k": 6},
    }
)


def _later_rewritten(df: pd.DataFrame, start: pd.Timestamp) -> pd.DataFrame:
    """The same history up to ``start``; after it another stream: a flip every 2 days, three times the noise."""
    out = df.copy()
    later = out["ts"] >= start
    rng = np.random.default_rng(99)
    days = ((out.loc[later, "ts"] - start) / pd.Timedelta("1D")).astype(int).to_numpy()
    sign = np.where(days // 2 % 2 == 0, -1.0, 1.0)
    a, b = out.loc[later, "a"].to_numpy(), out.loc[later, "b"].to_numpy()
    out.loc[later, "y"] = sign * 2 * a - b + rng.normal(scale=1.5, size=int(later.sum()))
    return out


def _search_view(report: dict) -> dict:
    """What the choice is made from: the chosen policy and every candidate's figures on the search part."""
    return {
        "chosen": report["chosen"]["name"],
        "triggers": report["chosen"]["triggers"],
        "candidates": [
            (c["name"], c["mean"], c["retrains"], c["eligible"], c["vs_frontier"], c["ci95"])
            for c in report["candidates"]
        ],
    }


def test_changing_only_the_verification_part_does_not_change_the_choice():
    df = flips()
    first = tune.tune(CFG, df, progress=False)
    start = pd.Timestamp(first["verification_batches"][0])
    assert df["ts"].min() < start < df["ts"].max()
    second = tune.tune(CFG, _later_rewritten(df, start), progress=False)

    assert second["search_batches"] == first["search_batches"]
    assert _search_view(second) == _search_view(first)
    assert second["parts"]["search"] == first["parts"]["search"]  # the search part's report, every figure
    # the rewrite did reach the verification part: its figures moved
    v1, v2 = first["parts"]["verification"], second["parts"]["verification"]
    assert v1["batches"] == v2["batches"]
    assert v2["never_mean"] != pytest.approx(v1["never_mean"], rel=0.05)
    assert v2["policies"]["chosen"]["mean"] != pytest.approx(v1["policies"]["chosen"]["mean"], rel=0.05)


def test_a_max_share_no_signal_can_meet_still_chooses_within_the_bounds():
    """With --max-share below what any signal or schedule of the family uses on the search part, the choice
    is never retraining (0 retrains, equal to the frontier's first point), not the best policy over the bound."""
    report = tune.tune(CFG, flips(), progress=False, max_share=0.03)
    chosen = report["chosen"]["search"]
    assert chosen["eligible"] and chosen["retrain_share"] <= 0.03, report["chosen"]["name"]
    assert report["chosen"]["triggers"]["max_age_batches"] is None
    assert "never retrain on a signal" in tune.format_tune(report)
    assert all(
        c["eligible"] == (c["retrain_share"] <= 0.03 and c["vs_frontier"] != "below")
        for c in report["candidates"]
    )
    assert len({c["name"] for c in report["candidates"]}) == len(report["candidates"])  # each once


@pytest.mark.parametrize(
    ("flags", "days", "words"),
    [
        (["--split", "1.2"], 48, "--split 1.2"),
        (["--max-share", "0"], 48, "--max-share 0"),
        ([], 8, "need at least 4 each"),  # 8 daily batches: too short a history to split
    ],
)
def test_bad_arguments_and_a_short_history_are_refused_and_write_nothing(
    tmp_path, capsys, flags, days, words
):
    from retrainer import cli

    data, cfg_path, out = tmp_path / "flips.csv", tmp_path / "flips.yaml", tmp_path / "tuned" / "flips.yaml"
    flips(days=days).to_csv(data, index=False)
    cfg_path.write_text(
        "name: flips\ntask: regression\ndata: {time_column: ts, target: y, features: [a, b]}\n"
        "model: {estimator: sklearn.linear_model.LinearRegression}\n"
        "training: {window: 1D, holdout: 6H, min_rows: 30}\nvalidation: {metric: mae}\n"
        "backtest: {batch_freq: 1D, max_k: 6}\n"
    )
    code = cli.main(
        ["tune", str(cfg_path), "--data", str(data), "--write", str(out), "--no-progress", *flags]
    )
    assert code == 2
    assert words in capsys.readouterr().err
    assert not out.exists() and not out.parent.exists()
