"""Evidently drift signals on real Bikeshare weeks, and the metric helpers on hand-checkable arrays."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
import pytest

from retrainer.config import DataDriftTrigger
from retrainer.exceptions import DriftCheckError
from retrainer.gates.drift import drift_report
from retrainer.ml import metrics

if TYPE_CHECKING:
    import pandas as pd

pytestmark = pytest.mark.unit


def with_prediction(df: pd.DataFrame) -> pd.DataFrame:
    """A deterministic stand-in for model output: rentals rise with temperature and daytime hours."""
    return df.assign(prediction=400 * df["temp"] + 5 * df["hr"])


@pytest.fixture(scope="module")
def winter(bikeshare_weeks):
    name, df = bikeshare_weeks[2]
    assert name.startswith("2011-01")
    return with_prediction(df)


@pytest.fixture(scope="module")
def summer(bikeshare_weeks):
    name, df = bikeshare_weeks[28]
    assert name.startswith("2011-07")
    return with_prediction(df)


@pytest.fixture(scope="module")
def same_week_report(bikeshare_cfg, winter):
    return drift_report(bikeshare_cfg, winter, winter.copy())


def test_same_week_has_no_drift(bikeshare_cfg, same_week_report):
    r = same_week_report

    assert r["data_drift_share"] == 0.0
    assert r["drifted_columns"] == []
    assert set(r["column_drift"]) == set(bikeshare_cfg.data.feature_names)
    assert max(r["column_drift"].values()) < 1e-9
    assert r["prediction_drift"] is not None and r["prediction_drift"] < 0.01
    assert r["method"] == "wasserstein/jensenshannon"


def test_summer_vs_winter_temp_drifts(bikeshare_cfg, winter, summer, tmp_path):
    html = tmp_path / "reports" / "drift.html"

    r = drift_report(bikeshare_cfg, winter, summer, html_path=html)

    assert "temp" in r["drifted_columns"] and "atemp" in r["drifted_columns"]
    assert (
        r["column_drift"]["temp"]
        >= (bikeshare_cfg.triggers.data_drift or DataDriftTrigger()).column_threshold
    )
    assert r["data_drift_share"] > 0
    assert r["data_drift_share"] == len(r["drifted_columns"]) / len(bikeshare_cfg.data.feature_names)
    assert r["prediction_drift"] > bikeshare_cfg.triggers.prediction_drift.threshold  # temp drives it
    assert r["report"] == str(html)
    assert html.stat().st_size > 10_000 and "<html" in html.read_text()[:2000].lower()


def test_no_prediction_column_means_no_prediction_drift(bikeshare_cfg, winter):
    plain = winter.drop(columns=["prediction"])

    r = drift_report(bikeshare_cfg, plain, plain)

    assert r["prediction_drift"] is None
    assert r["report"] is None


def test_empty_reference_is_a_drift_check_error(bikeshare_cfg, winter):
    with pytest.raises(DriftCheckError, match="reference"):
        drift_report(bikeshare_cfg, winter.iloc[0:0], winter)
    with pytest.raises(DriftCheckError):
        drift_report(bikeshare_cfg, None, winter)


# -- metrics --------------------------------------------------------------------------------------------
def test_regression_metrics_by_hand():
    y = np.array([1.0, 2.0, 3.0, 4.0])
    p = np.array([1.0, 2.0, 3.0, 6.0])  # one error of 2

    m = metrics.compute("regression", y, p)

    assert m["rmse"] == pytest.approx(1.0)  # sqrt(4 / 4)
    assert m["mae"] == pytest.approx(0.5)  # 2 / 4
    assert m["r2"] == pytest.approx(1 - 4 / 5)  # SS_res 4, SS_tot 5


def test_regression_single_row_r2_is_nan():
    m = metrics.compute("regression", np.array([3.0]), np.array([1.0]))

    assert m["rmse"] == pytest.approx(2.0) and math.isnan(m["r2"])


def test_binary_classification_by_hand():
    y = np.array([0, 0, 1, 1, 1])
    p = np.array([0, 1, 1, 1, 0])  # TP 2, FP 1, FN 1, TN 1

    m = metrics.compute("classification", y, p)

    assert m["accuracy"] == pytest.approx(3 / 5)
    # macro F1: class 1 (P 2/3, R 2/3) -> 2/3; class 0 (P 1/2, R 1/2) -> 1/2
    assert m["f1"] == pytest.approx((2 / 3 + 1 / 2) / 2)
    assert m["balanced_accuracy"] == pytest.approx((2 / 3 + 1 / 2) / 2)


def test_f1_definition_does_not_change_with_classes_present():
    y = np.array(["no", "yes", "yes", "no"])
    p = np.array(["yes", "yes", "no", "no"])  # each class: P 1/2, R 1/2

    m = metrics.compute("classification", y, p)
    one_class = metrics.compute("classification", np.array(["no", "no"]), np.array(["no", "yes"]))

    assert m["f1"] == pytest.approx(0.5)
    assert m["accuracy"] == pytest.approx(0.5)
    # 'no' F1 = 2/3, 'yes' F1 = 0: macro over the labels present, not a switch to binary positive-class F1
    assert one_class["f1"] == pytest.approx((2 / 3 + 0) / 2)


def test_multiclass_macro_by_hand():
    y = np.array(["a", "a", "b", "b", "c", "c"])
    p = np.array(["a", "a", "b", "c", "c", "c"])
    # per class F1: a 1.0, b 2/3 (P 1, R 1/2), c 0.8 (P 2/3, R 1)

    m = metrics.compute("classification", y, p)

    assert m["accuracy"] == pytest.approx(5 / 6)
    assert m["f1"] == pytest.approx((1.0 + 2 / 3 + 0.8) / 3)
    assert m["balanced_accuracy"] == pytest.approx((1.0 + 0.5 + 1.0) / 3)


def test_empty_input_gives_empty_dict():
    assert metrics.compute("regression", np.array([]), np.array([])) == {}
    assert metrics.compute("classification", np.array([]), np.array([])) == {}


@pytest.mark.parametrize(
    ("value", "reference", "lower_is_better", "expected"),
    [
        (12.0, 10.0, True, 0.2),  # rmse up 20%: worse
        (8.0, 10.0, True, -0.2),  # rmse down: better (negative)
        (0.6, 0.8, False, 0.25),  # f1 down by a quarter: worse
        (0.9, 0.8, False, -0.125),  # f1 up: better
        (-0.5, -1.0, False, -0.5),  # negative reference (r2): uses |reference|, higher is still better
        (0.0, 0.0, True, 0.0),
    ],
)
def test_worse_by_sign_conventions(value, reference, lower_is_better, expected):
    assert metrics.worse_by(value, reference, lower_is_better) == pytest.approx(expected)


def test_worse_by_zero_reference_any_change_is_infinitely_worse():
    assert metrics.worse_by(0.1, 0.0, True) == math.inf
