"""A feature column that is entirely null in one batch (an outage week), and nullable features with
estimators that cannot take NaN: no crash anywhere, the column reported as "no data", imputation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from retrainer import backtest
from retrainer.config import parse_config
from retrainer.gates.drift import drift_report, drift_signals

pytestmark = pytest.mark.unit


def stream(days: int = 20, rows: int = 48, seed: int = 0, outage_day: int | None = 12) -> pd.DataFrame:
    """A stable stream with a numeric ``a`` (nullable; all null on ``outage_day``), a numeric ``b`` with
    scattered nulls, and a nullable categorical ``c``."""
    rng = np.random.default_rng(seed)
    n = days * rows
    t = pd.Timestamp("2024-01-01") + pd.to_timedelta(np.arange(n) * (24 / rows), unit="h")
    a, b = rng.normal(size=n), rng.normal(size=n)
    c = rng.choice(["x", "y", "z"], size=n)
    y = 2 * a + b + (c == "x") + rng.normal(scale=0.3, size=n)
    df = pd.DataFrame({"ts": t, "a": a, "b": b, "c": c, "y": y})
    df.loc[rng.random(n) < 0.05, "b"] = np.nan
    df.loc[rng.random(n) < 0.05, "c"] = None
    if outage_day is not None:
        df.loc[(np.arange(n) // rows) == outage_day, "a"] = np.nan
    return df


def make_cfg(estimator: str = "sklearn.linear_model.LinearRegression", task: str = "regression", **data):
    return parse_config(
        {
            "name": "outage",
            "task": task,
            "data": {
                "time_column": "ts",
                "target": "y",
                "features": [
                    {"name": "a", "nullable": True},
                    {"name": "b", "nullable": True},
                    {"name": "c", "type": "categorical", "nullable": True},
                ],
                **data,
            },
            "model": {"estimator": estimator},
            "training": {"window": "4D", "holdout": "1D", "min_rows": 50},
            "triggers": {
                "data_drift": {"share": 0.5, "column_threshold": 0.5},
                "performance": {"max_degradation": 0.5, "min_labelled_rows": 20},
                "cooldown_batches": 1,
            },
            "validation": {"metric": "mae" if task == "regression" else "f1"},
            "backtest": {"batch_freq": "1D", "max_k": 3},
        }
    )


def _sides(df: pd.DataFrame):
    ref = df.iloc[:480].copy()
    cur = df.iloc[576:624].copy()  # day 12: the outage
    ref["prediction"], cur["prediction"] = ref.y, cur.y
    assert cur["a"].isna().all()
    return ref, cur


def test_all_null_column_is_no_data_in_drift_signals():
    cfg = make_cfg()
    ref, cur = _sides(stream())

    r = drift_signals(cfg, ref, cur)

    assert r["no_data_columns"] == ["a"]
    assert r["column_drift"]["a"] is None
    assert "a" not in r["drifted_columns"]
    assert r["column_drift"]["b"] is not None and r["prediction_drift"] is not None
    assert r["data_drift_share"] == len(r["drifted_columns"]) / 2  # over the columns that had data


def test_all_null_column_in_reference_is_no_data_too():
    cfg = make_cfg()
    ref, cur = _sides(stream())
    ref, cur = cur.assign(a=np.nan), ref  # the reference side is the empty one

    r = drift_signals(cfg, ref, cur)

    assert r["no_data_columns"] == ["a"] and r["column_drift"]["a"] is None


def test_all_null_column_in_evidently_report(tmp_path):
    cfg = make_cfg()
    ref, cur = _sides(stream())
    html = tmp_path / "report.html"

    r = drift_report(cfg, ref, cur, html_path=html)

    assert r["no_data_columns"] == ["a"]
    assert "a" not in r["drifted_columns"] and r["column_drift"]["a"] is None
    assert html.exists() and html.stat().st_size > 0


def test_evidently_report_with_ks_method_and_an_all_null_column(tmp_path):
    """The slow path (numbers from Evidently itself) skips the empty column too."""
    cfg = make_cfg()
    cfg = cfg.model_copy(
        update={
            "triggers": cfg.triggers.model_copy(
                update={"data_drift": cfg.triggers.data_drift.model_copy(update={"num_method": "ks"})}
            )
        }
    )
    ref, cur = _sides(stream())

    r = drift_signals(cfg, ref, cur)  # not the fast path: goes through the Evidently report

    assert r["no_data_columns"] == ["a"] and "a" not in r["drifted_columns"]


def test_backtest_on_a_stream_with_an_outage_day():
    cfg = make_cfg()

    report = backtest.backtest(cfg, stream(), progress=False, data_name="outage")

    assert report["batches"] == 20 - report["warmup_batches"]
    for s in report["policies"].values():
        assert len(s["per_batch"]) == report["batches"]
        assert np.isfinite(s["per_batch"]).all()


@pytest.mark.parametrize(
    "estimator",
    [
        "sklearn.linear_model.LinearRegression",
        "sklearn.linear_model.Ridge",
        "sklearn.ensemble.HistGradientBoostingRegressor",
        "sklearn.ensemble.RandomForestRegressor",
        "sklearn.neighbors.KNeighborsRegressor",
    ],
)
def test_every_estimator_family_trains_on_nullable_features(estimator):
    from retrainer.ml.train import fit, predict, prepare

    cfg = make_cfg(estimator)
    df = prepare(cfg, stream())
    assert df[["a", "b", "c"]].isna().any().all()

    model = fit(cfg, df)
    pred = predict(cfg, model, df)

    assert np.isfinite(pred).all() and len(pred) == len(df)
    # a batch whose nullable column is entirely empty is predicted too (the outage week)
    assert np.isfinite(predict(cfg, model, df.assign(a=np.nan, c=None))).all()


def test_classifier_trains_on_nullable_features():
    from retrainer.ml.train import fit, predict, prepare

    cfg = make_cfg("sklearn.linear_model.LogisticRegression", task="classification")
    df = stream()
    df["y"] = (df.y > df.y.median()).astype(int)
    df = prepare(cfg, df)

    pred = predict(cfg, fit(cfg, df), df)

    assert set(np.unique(pred)) <= {0, 1} and (pred == df.y).mean() > 0.8


def test_imputation_is_configurable():
    from retrainer.ml.train import build_pipeline

    default = build_pipeline(make_cfg())
    custom = build_pipeline(
        make_cfg(impute={"numeric": "constant", "numeric_fill": -1, "categorical": "most_frequent"})
    )

    def imputers(pipe):
        return {
            name: step.named_steps["impute"]
            for name, step, _ in pipe.named_steps["pre"].transformers
            if hasattr(step, "named_steps")
        }

    assert imputers(default)["num_nullable"].strategy == "median"
    assert imputers(default)["cat_nullable"].strategy == "constant"
    assert imputers(custom)["num_nullable"].strategy == "constant"
    assert imputers(custom)["num_nullable"].fill_value == -1
    assert imputers(custom)["cat_nullable"].strategy == "most_frequent"


def test_bad_imputation_strategy_is_a_config_error():
    from retrainer.exceptions import ConfigError

    with pytest.raises(ConfigError, match=r"data\.impute\.numeric"):
        make_cfg(impute={"numeric": "zero"})


def test_shipped_configs_without_nullable_features_keep_their_pipeline():
    """No nullable feature: no imputer, so the shipped models train exactly as before."""
    from pathlib import Path

    from retrainer.config import load_config
    from retrainer.ml.train import build_pipeline

    cfg = load_config(Path(__file__).resolve().parents[2] / "include" / "models" / "bikeshare.yaml")
    names = [name for name, _, _ in build_pipeline(cfg).named_steps["pre"].transformers]

    assert names == ["num", "cat"]
