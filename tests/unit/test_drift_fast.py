"""The policy's drift numbers (one implementation, used by monitor and backtest) equal Evidently's."""

from __future__ import annotations

from pathlib import Path

import pytest

from retrainer.config import load_config
from retrainer.gates.drift import drift_report, drift_signals, fast_path

pytestmark = pytest.mark.unit


def test_fast_drift_equals_evidently_regression(bikeshare_cfg):
    from retrainer.ml.datasets import bikeshare

    df = bikeshare()
    winter = df[df.timestamp < "2011-03-01"].copy()
    june = df[(df.timestamp >= "2011-06-01") & (df.timestamp < "2011-06-08")].copy()
    winter["prediction"], june["prediction"] = winter.bikers * 0.9, june.bikers * 1.1

    r = drift_report(bikeshare_cfg, winter, june)

    assert fast_path(bikeshare_cfg)
    assert r["column_drift"] == pytest.approx(r["evidently_column_drift"], rel=1e-9)
    assert r["prediction_drift"] == pytest.approx(r["evidently_prediction_drift"], rel=1e-9)
    assert "weathersit" in r["column_drift"] and {"temp", "atemp"} <= set(r["drifted_columns"])
    assert drift_signals(bikeshare_cfg, winter, june)["column_drift"] == r["column_drift"]


def test_fast_drift_equals_evidently_classification():
    from retrainer.ml.datasets import rainfall

    cfg = load_config(Path(__file__).resolve().parents[2] / "include" / "models" / "rainfall.yaml")
    df = rainfall()
    ref, cur = df.iloc[:3000].copy(), df.iloc[15000:15400].copy()
    ref["prediction"], cur["prediction"] = ref.rain, (cur.temperature > 0).astype(int)

    r = drift_report(cfg, ref, cur)

    assert r["column_drift"] == pytest.approx(r["evidently_column_drift"], rel=1e-9)
    assert r["prediction_drift"] == pytest.approx(r["evidently_prediction_drift"], rel=1e-9)
