"""Probability metrics, and performance estimation without labels (CBPE, DLE) against known answers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm

from retrainer.config import parse_config
from retrainer.exceptions import ConfigError
from retrainer.ml import estimation, metrics

pytestmark = pytest.mark.unit


def clf_cfg(**validation):
    return parse_config(
        {
            "name": "clf",
            "task": "classification",
            "data": {"time_column": "ts", "target": "y", "features": ["a", "b"]},
            "model": {"estimator": "sklearn.linear_model.LogisticRegression"},
            "validation": validation,
        }
    )


# -- probability metrics --------------------------------------------------------------------------------
def test_probability_metrics_match_their_definitions():
    y = np.array([0, 0, 1, 1, 1, 0])
    p1 = np.array([0.1, 0.4, 0.35, 0.8, 0.9, 0.2])
    proba = np.column_stack([1 - p1, p1])
    out = metrics.compute("classification", y, (p1 >= 0.5).astype(int), proba, [0, 1])
    assert out["roc_auc"] == pytest.approx(skm.roc_auc_score(y, p1))
    assert out["pr_auc"] == pytest.approx(skm.average_precision_score(y, p1))
    assert out["log_loss"] == pytest.approx(-np.mean(np.log(np.where(y == 1, p1, 1 - p1))))
    assert out["brier"] == pytest.approx(np.mean((p1 - y) ** 2))
    assert {"accuracy", "f1", "balanced_accuracy"} <= set(out)


def test_perfect_probabilities_and_one_class_batches():
    y = np.array([0, 1, 1, 0])
    proba = np.column_stack([1 - y, y]).astype(float)
    out = metrics.compute("classification", y, y, proba, [0, 1])
    assert out["roc_auc"] == 1.0 and out["pr_auc"] == 1.0 and out["brier"] == 0.0
    assert out["log_loss"] == pytest.approx(0.0, abs=1e-9)
    one = metrics.compute("classification", np.array([1, 1]), np.array([1, 1]), proba[1:3], [0, 1])
    assert "roc_auc" not in one and "brier" in one  # undefined with one class present: left out


def test_multiclass_probability_metrics_are_one_vs_rest_macro():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 3, size=200)
    proba = rng.dirichlet([1, 1, 1], size=200)
    proba[np.arange(200), y] += 0.5
    proba /= proba.sum(axis=1, keepdims=True)
    out = metrics.probability_metrics(y, proba, [0, 1, 2])
    assert out["roc_auc"] == pytest.approx(skm.roc_auc_score(y, proba, multi_class="ovr", average="macro"))
    onehot = np.eye(3)[y]
    assert out["brier"] == pytest.approx(np.mean(np.sum((proba - onehot) ** 2, axis=1)))


def test_probability_metrics_selectable_and_scored_for_a_fitted_model():
    from retrainer.ml.train import fit

    cfg = clf_cfg(metric="roc_auc")
    assert cfg.metric == "roc_auc" and not cfg.lower_is_better
    assert clf_cfg(metric="log_loss").lower_is_better and clf_cfg(metric="brier").lower_is_better
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"ts": pd.date_range("2024-01-01", periods=300, freq="h"), "a": rng.normal(size=300)})
    df["b"] = rng.normal(size=300)
    df["y"] = (df["a"] + 0.5 * rng.normal(size=300) > 0).astype(int)
    scores = metrics.score(cfg, fit(cfg, df), df)
    assert scores["roc_auc"] > 0.9 and 0 < scores["brier"] < 0.25
    with pytest.raises(ConfigError, match="roc_auc"):
        parse_config(
            {
                "name": "reg",
                "task": "regression",
                "data": {"time_column": "ts", "target": "y", "features": ["a"]},
                "model": {"estimator": "sklearn.linear_model.Ridge"},
                "validation": {"metric": "roc_auc"},
            }
        )


# -- CBPE -----------------------------------------------------------------------------------------------
def test_cbpe_formulas_equal_nannyml_on_a_fixture():
    """NannyML 0.13.1's estimate_accuracy / estimate_f1 / estimate_roc_auc on the same fixture gave these
    numbers (its functions run on rng(42).beta(2, 3, 500) as calibrated probabilities)."""
    p = np.random.default_rng(42).beta(2, 3, size=500)
    pred = (p >= 0.5).astype(int)
    proba = np.column_stack([1 - p, p])
    assert estimation.expected_accuracy(pred, proba) == pytest.approx(0.6883197814867587, abs=1e-12)
    assert estimation.expected_f1_binary(pred == 1, p) == pytest.approx(0.5648104420971294, abs=1e-12)
    assert estimation.expected_f1_binary(pred == 0, 1 - p) == pytest.approx(0.7572216856715308, abs=1e-12)
    assert estimation.expected_roc_auc_binary(p, p) == pytest.approx(0.7404407259688234, abs=1e-12)
    macro = estimation.expected_macro_f1(pred, proba)
    assert macro == pytest.approx((0.5648104420971294 + 0.7572216856715308) / 2, abs=1e-12)


def test_cbpe_with_calibration_agrees_with_nannyml_on_a_fixture():
    """NannyML 0.13.1's CBPE (``classification_binary``, isotonic calibration, ``chunk_size=1000``), fitted
    on ``ref`` and run on the three chunks from this same generator (an overconfident model; the last
    two chunks shifted), estimated these; ours, calibration included, gives the same numbers (F1 here is
    the positive class's, as NannyML reports it; the project's ``f1`` is macro)."""
    rng = np.random.default_rng(21)

    def draw(n, a, b):
        p_true = rng.beta(a, b, size=n)
        y = (rng.random(n) < p_true).astype(int)
        score = np.clip(0.5 + 1.6 * (p_true - 0.5), 0.001, 0.999)
        return y, np.column_stack([1 - score, score]), (score >= 0.5).astype(int)

    y_ref, proba_ref, _ = draw(4000, 2, 2)
    chunks = [draw(1000, 2, 2), draw(1000, 0.7, 1.5), draw(1000, 3, 1)]
    nannyml = {
        "accuracy": [0.6901431878436625, 0.7843767742072594, 0.7492841320921844],
        "f1": [0.6843955690799128, 0.6241219154663864, 0.8415154387194181],
        "roc_auc": [0.7593226772154213, 0.8141448472628731, 0.7086887161141767],
    }
    cbpe = estimation.CBPE.fit(y_ref, proba_ref, [0, 1])
    for k, (_, proba, pred) in enumerate(chunks):
        est = cbpe.estimate(proba, pred)
        positive_f1 = estimation.expected_f1_binary(pred == 1, cbpe.calibrate(proba)[:, 1])
        assert est["accuracy"] == pytest.approx(nannyml["accuracy"][k], abs=1e-6), k
        assert est["roc_auc"] == pytest.approx(nannyml["roc_auc"][k], abs=1e-6), k
        assert positive_f1 == pytest.approx(nannyml["f1"][k], abs=1e-6), k


def test_cbpe_on_calibrated_probabilities_equals_the_realised_metric_within_sampling_error():
    rng = np.random.default_rng(7)
    n_ref, n = 4000, 3000
    p_ref, p = rng.beta(2, 2, size=n_ref), rng.beta(0.7, 1.5, size=n)  # the batch's inputs shifted
    y_ref, y = (rng.random(n_ref) < p_ref).astype(int), (rng.random(n) < p).astype(int)
    cbpe = estimation.CBPE.fit(y_ref, np.column_stack([1 - p_ref, p_ref]), [0, 1])
    pred = (p >= 0.5).astype(int)
    est = cbpe.estimate(np.column_stack([1 - p, p]), pred)
    real = metrics.compute("classification", y, pred, np.column_stack([1 - p, p]), [0, 1])
    se = np.sqrt(real["accuracy"] * (1 - real["accuracy"]) / n)
    assert abs(est["accuracy"] - real["accuracy"]) < 3 * se
    assert est["f1"] == pytest.approx(real["f1"], abs=0.03)
    assert est["roc_auc"] == pytest.approx(real["roc_auc"], abs=0.03)
    assert est["brier"] == pytest.approx(real["brier"], abs=0.02)
    assert est["log_loss"] == pytest.approx(real["log_loss"], abs=0.05)
    # the shift is visible: accuracy on the reference inputs differs from this batch's
    ref_acc = metrics.compute("classification", y_ref, (p_ref >= 0.5).astype(int))["accuracy"]
    assert abs(ref_acc - real["accuracy"]) > 5 * se


def test_cbpe_calibrates_overconfident_scores():
    rng = np.random.default_rng(3)
    p_true = rng.beta(2, 2, size=5000)
    y = (rng.random(5000) < p_true).astype(int)
    score = np.clip(0.5 + 1.8 * (p_true - 0.5), 0.001, 0.999)  # overconfident model
    cbpe = estimation.CBPE.fit(y[:2500], np.column_stack([1 - score, score])[:2500], [0, 1])
    pred = (score[2500:] >= 0.5).astype(int)
    est = cbpe.estimate(np.column_stack([1 - score, score])[2500:], pred)
    real = metrics.compute("classification", y[2500:], pred)["accuracy"]
    naive = estimation.expected_accuracy(pred, np.column_stack([1 - score, score])[2500:])
    assert abs(est["accuracy"] - real) < 0.02 < abs(naive - real)  # uncalibrated would overstate it


# -- DLE ------------------------------------------------------------------------------------------------
def test_dle_tracks_rmse_under_covariate_shift():
    rng = np.random.default_rng(5)

    def draw(n, lo, hi):
        x = rng.uniform(lo, hi, size=n)
        y = 2 * x + rng.normal(scale=0.2 + np.abs(x), size=n)  # noisier for large |x|
        return pd.DataFrame({"x": x}), y

    x_ref, y_ref = draw(3000, -3, 3)
    dle = estimation.DLE.fit(x_ref, y_ref, 2 * x_ref["x"].to_numpy(), [])
    for lo, hi in [(-0.5, 0.5), (2, 3)]:  # a quiet and a noisy region
        x, y = draw(2000, lo, hi)
        pred = 2 * x["x"].to_numpy()
        est = dle.estimate(x, pred, [])
        real = metrics.compute("regression", y, pred)
        assert est["rmse"] == pytest.approx(real["rmse"], rel=0.1)
        assert est["mae"] == pytest.approx(real["mae"], rel=0.1)


def test_dle_agrees_with_nannyml_on_a_fixture():
    """NannyML 0.13.1's DLE (LightGBM loss models, ``tune_hyperparameters=False``, ``chunk_size=1000``),
    fitted on ``ref`` and run on ``analysis`` from this same generator, estimated these per chunk; our DLE
    (scikit-learn's histogram gradient boosting) comes within 2% of each."""
    rng = np.random.default_rng(11)

    def draw(n, lo, hi):
        x1, x2 = rng.uniform(lo, hi, size=n), rng.normal(size=n)
        y = 2 * x1 + x2 + rng.normal(scale=0.2 + np.abs(x1), size=n)
        return pd.DataFrame({"x1": x1, "x2": x2, "y_true": y, "y_pred": 2 * x1 + x2})

    ref = draw(3000, -3, 3)
    chunks = [draw(1000, -0.5, 0.5), draw(1000, 2, 3), draw(1000, -3, 3)]  # quiet, noisy, as the reference
    nannyml = {
        "rmse": [0.6587247490959783, 2.7226751087376364, 1.9346875484258843],
        "mae": [0.3812123457769277, 2.2030560122853173, 1.395156607177032],
    }
    dle = estimation.DLE.fit(ref[["x1", "x2"]], ref["y_true"].to_numpy(), ref["y_pred"].to_numpy(), [])
    for k, chunk in enumerate(chunks):
        ours = dle.estimate(chunk[["x1", "x2"]], chunk["y_pred"].to_numpy(), [])
        for m in ("rmse", "mae"):
            assert ours[m] == pytest.approx(nannyml[m][k], rel=0.02), (k, m)


def test_fit_estimator_picks_cbpe_or_dle_and_needs_enough_rows():
    from retrainer.ml.train import fit

    cfg = clf_cfg()
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"ts": pd.date_range("2024-01-01", periods=200, freq="h"), "a": rng.normal(size=200)})
    df["b"] = rng.normal(size=200)
    df["y"] = (df["a"] > 0).astype(int)
    model = fit(cfg, df)
    est = estimation.fit_estimator(cfg, model, df)
    assert est is not None and est.method == "cbpe"
    assert 0.8 < est.estimate(cfg, model, df.drop(columns=["y"]))["accuracy"] <= 1.0
    assert estimation.fit_estimator(cfg, model, df.head(20)) is None  # below min_reference_rows
