"""`retrainer backtest`: prequential replay, policies, report schema, shared code, clear errors."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from retrainer import backtest, cli, monitor, policy
from retrainer.config import parse_config

pytestmark = pytest.mark.unit

DRIFT_DAY = 14  # batch index (days from the start) where the concept flips


def synthetic(days: int = 24, rows: int = 96, seed: int = 0) -> pd.DataFrame:
    """A stable linear stream whose concept flips abruptly on day DRIFT_DAY (inputs unchanged)."""
    rng = np.random.default_rng(seed)
    n = days * rows
    t = pd.Timestamp("2024-01-01") + pd.to_timedelta(np.arange(n) * (24 / rows), unit="h")
    a, b = rng.normal(size=n), rng.normal(size=n)
    after = np.arange(n) >= DRIFT_DAY * rows
    y = np.where(after, -3 * a + b + 4, 3 * a + b) + rng.normal(scale=0.3, size=n)
    return pd.DataFrame({"ts": t, "a": a, "b": b, "y": y})


def make_cfg(**triggers):
    base = {
        "data_drift": {"share": 0.5, "column_threshold": 0.5},
        "prediction_drift": None,
        "performance": {"max_degradation": 0.5, "min_labelled_rows": 20},
        "flags": None,
        "cooldown_batches": 1,
    }
    return parse_config(
        {
            "name": "synthetic",
            "task": "regression",
            "data": {"time_column": "ts", "target": "y", "features": ["a", "b"]},
            "model": {"estimator": "sklearn.linear_model.LinearRegression"},
            "training": {"window": "4D", "holdout": "1D", "min_rows": 50},
            "triggers": {**base, **triggers},
            "validation": {"metric": "mae"},
            "backtest": {
                "batch_freq": "1D",
                "max_k": 4,
                "alternatives": {
                    "detector_only": {"performance": None, "error_detector": {"method": "adwin"}}
                },
            },
        }
    )


@pytest.fixture(scope="module")
def report():
    cfg = make_cfg()
    return backtest.backtest(cfg, synthetic(), progress=False, data_name="synthetic")


def _first_request(report, name):
    first = report["warmup_batches"]
    return [i for i in report["policies"][name]["retrain_batches"] if i >= first]


def test_abrupt_drift_detected_within_two_batches(report):
    for name in ("trigger", "detector_only"):
        requests = _first_request(report, name)
        assert requests, f"{name} never retrained"
        assert DRIFT_DAY <= requests[0] <= DRIFT_DAY + 1, (name, requests)  # no false alarm before it


def test_trigger_recovers_and_beats_never(report):
    pol = report["policies"]
    per_batch = pol["trigger"]["per_batch"]
    after = DRIFT_DAY - report["warmup_batches"]
    assert pol["trigger"]["mean"] < pol["never"]["mean"]  # mae: lower is better
    assert per_batch[-1] < 0.5 * max(per_batch[after:])  # the new concept was learnt
    assert pol["never"]["retrains"] == 0 and pol["every_batch"]["retrains"] == report["batches"]


def test_report_schema_is_stable(report):
    assert {
        "schema_version",
        "metric",
        "lower_is_better",
        "task",
        "batches",
        "batch_freq",
        "label_delay_batches",
        "warmup_batches",
        "policies",
        "baseline",
        "frontier",
        "trigger_vs_frontier",
        "alternatives_vs_frontier",
        "recovered_gain",
        "retrain_share",
        "halves",
    } <= set(report)
    assert report["schema_version"] == 2 and report["metric"] == "mae"
    names = list(report["policies"])
    assert names[:2] == ["never", "every_batch"] and {"every_2", "every_3", "every_4"} <= set(names)
    assert names[-2:] == ["trigger", "detector_only"]
    for s in report["policies"].values():
        assert {
            "mean",
            "worst",
            "retrains",
            "promoted",
            "rows_trained",
            "seconds",
            "metrics",
            "per_batch",
        } <= set(s)
        assert len(s["per_batch"]) == report["batches"]
        assert set(s["metrics"]) == {"mae", "rmse", "r2"}
        assert s["worst"] >= s["mean"]
    tv = report["trigger_vs_frontier"]
    assert {
        "retrains",
        "mean",
        "frontier_mean",
        "difference",
        "ci95",
        "retrain_fraction",
        "gap_to_every_batch",
        "recovered_gain",
        "retrain_share",
        "criteria",
    } <= set(tv)
    assert tv["ci95"][0] <= tv["difference"] <= tv["ci95"][1]
    assert tv["retrain_fraction"] == report["policies"]["trigger"]["retrains"] / report["batches"]
    assert report["baseline"]["policy"] == "mean_prediction"
    json.loads(json.dumps(report))  # serialisable as is


def test_frontier_interpolation_is_linear(report):
    pol = report["policies"]
    mid = {"policy": "x", "kind": "trigger", "retrains": None}
    a, b = pol["every_3"], pol["every_2"]
    r = (a["retrains"] + b["retrains"]) / 2
    fake = {**pol, "x": {**mid, "retrains": r, "per_batch": a["per_batch"], "mean": a["mean"]}}
    _, value, between = backtest._interpolate(fake, r)
    assert between == ["every_3", "every_2"]
    assert value == pytest.approx((np.mean(a["per_batch"]) + np.mean(b["per_batch"])) / 2)


def test_label_delay_postpones_detection():
    cfg = make_cfg()
    delayed = backtest.backtest(cfg, synthetic(), label_delay=2, progress=False)
    requests = _first_request(delayed, "trigger")
    assert requests and requests[0] >= DRIFT_DAY + 2 > DRIFT_DAY  # the labels of the drift day arrive late
    assert delayed["label_delay_batches"] == 2


def test_backtest_and_monitor_share_the_policy_entry_point():
    assert backtest.STEP is policy.step
    assert monitor.STEP is policy.step


def test_cli_writes_table_json_and_plot(tmp_path, capsys):
    data = tmp_path / "stream.csv"
    synthetic(days=12).to_csv(data, index=False)
    cfg_path = tmp_path / "synthetic.yaml"
    cfg_path.write_text(
        "name: synthetic\ntask: regression\n"
        "data: {time_column: ts, target: y, features: [a, b]}\n"
        "model: {estimator: sklearn.linear_model.Ridge}\n"
        "training: {window: 3D, holdout: 1D, min_rows: 50}\n"
    )
    out_json, out_png = tmp_path / "r.json", tmp_path / "r.png"

    code = cli.main(
        [
            "backtest",
            str(cfg_path),
            "--data",
            str(data),
            "--batch-freq",
            "1D",
            "--json",
            str(out_json),
            "--plot",
            str(out_png),
            "--no-progress",
        ]
    )

    assert code == 0
    text = capsys.readouterr().out
    assert "every_batch" in text and "trigger" in text and "frontier" in text and "mean_prediction" in text
    report = json.loads(out_json.read_text())
    assert report["metric"] == "rmse" and report["batches"] == 12 - 3
    assert out_png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out_png.stat().st_size < 300_000


def test_bad_data_file_gives_clear_error(tmp_path, capsys):
    cfg_path = tmp_path / "synthetic.yaml"
    cfg_path.write_text(
        "name: synthetic\ntask: regression\n"
        "data: {time_column: ts, target: y, features: [a, b]}\n"
        "model: {estimator: sklearn.linear_model.Ridge}\n"
    )
    missing = tmp_path / "nope.csv"
    assert cli.main(["backtest", str(cfg_path), "--data", str(missing)]) == 2
    assert "nope.csv: no such file" in capsys.readouterr().err

    no_b = tmp_path / "no_b.csv"
    synthetic(days=3).drop(columns=["b"]).to_csv(no_b, index=False)
    assert cli.main(["backtest", str(cfg_path), "--data", str(no_b)]) == 2
    err = capsys.readouterr().err
    assert "missing column(s) ['b']" in err and "no_b.csv" in err

    bad_time = tmp_path / "bad_time.csv"
    synthetic(days=3).assign(ts="yesterday").to_csv(bad_time, index=False)
    assert cli.main(["backtest", str(cfg_path), "--data", str(bad_time)]) == 2
    assert "'ts' is not a timestamp" in capsys.readouterr().err

    short = tmp_path / "short.csv"
    synthetic(days=3).to_csv(short, index=False)
    assert cli.main(["backtest", str(cfg_path), "--data", str(short), "--batch-freq", "1D"]) == 2
    assert "too few" in capsys.readouterr().err


def test_bad_config_gives_clear_error(tmp_path, capsys):
    cfg_path = tmp_path / "synthetic.yaml"
    cfg_path.write_text(
        "name: synthetic\ntask: regression\n"
        "data: {time_column: ts, target: y, features: [a, b]}\n"
        "model: {estimator: sklearn.linear_model.Ridge}\n"
        "triggers: {error_detector: {method: ddm}, hysteresis: 2}\n"
    )
    assert cli.main(["backtest", str(cfg_path), "--data", "bikeshare"]) == 2
    err = capsys.readouterr().err
    assert "synthetic.yaml" in err and "unknown key 'triggers.hysteresis'" in err

    cfg_path.write_text(cfg_path.read_text().replace(", hysteresis: 2", ""))
    assert cli.main(["backtest", str(cfg_path), "--data", "bikeshare"]) == 2
    err = capsys.readouterr().err
    assert "ddm" in err and "classification only" in err

    cfg_path.write_text(
        cfg_path.read_text().replace("{error_detector: {method: ddm}}", "{}")
        + "backtest: {alternatives: {never: {cooldown_batches: 0}}}\n"
    )
    assert cli.main(["backtest", str(cfg_path), "--data", "bikeshare"]) == 2
    assert "alternative name 'never'" in capsys.readouterr().err
