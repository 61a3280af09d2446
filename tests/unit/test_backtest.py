"""`retrainer backtest`: prequential replay, policies, report schema, shared code, clear errors."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from retrainer import backtest, cli
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
        "max_age_batches": None,  # detection tests: no floor under the signals
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
        "recovered_gain_ci95",
        "retrain_share",
        "criteria",
    } <= set(tv)
    assert tv["recovered_gain_ci95"][0] <= tv["recovered_gain_ci95"][1]
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


def _brute_force_oracle(values, lower_is_better, lo, hi):
    """Every schedule of retrains in [lo, hi), every start model: the best mean per number of retrains."""
    from itertools import combinations

    n = values.shape[1]
    sign = -1 if lower_is_better else 1
    best = {}
    starts = [r for r in range(lo + 1) if not np.isnan(values[r, lo])]
    for m in range(hi - lo + 1):
        for sched in combinations(range(lo, hi), m):
            for start in starts:
                total, row = 0.0, start
                for e in range(lo, hi):
                    total += values[row, e]
                    if e in sched:
                        row = e + 1 if e + 1 <= n else row
                best[m] = max(best.get(m, -np.inf), sign * total)
    out, running = [], -np.inf
    for m in range(hi - lo + 1):
        running = max(running, best[m])
        out.append(sign * running / (hi - lo))
    return out


@pytest.mark.parametrize("lower_is_better", [True, False])
def test_oracle_curve_equals_brute_force(lower_is_better):
    """The dynamic programme finds the best schedule with m retrains, as trying every schedule does."""
    rng = np.random.default_rng(3)
    n = 7
    values = rng.uniform(0, 10, size=(n + 1, n))
    values[np.tril_indices(n + 1, -1, n)] = np.nan  # model r + 1 serves from batch r + 1 only
    for lo, hi in [(0, n), (0, 3), (3, n)]:
        got = backtest.oracle_curve(values, lower_is_better, lo, hi)
        assert got == pytest.approx(_brute_force_oracle(values, lower_is_better, lo, hi))


def test_oracle_bounds_every_policy_at_its_retrains(report):
    """No policy beats the best schedule with the same retrains; with none, the oracle is never retraining."""
    whole = report["oracle"]["whole"]
    assert whole["recovered_gain"][0] == pytest.approx(0.0)
    assert whole["mean"][0] == pytest.approx(report["policies"]["never"]["mean"])
    for name, s in report["policies"].items():
        bound = backtest.oracle_at(whole, s["retrains"])
        assert report["recovered_gain"][name] <= bound + 1e-9, name
    assert report["trigger_vs_frontier"]["oracle_recovered_gain"] == backtest.oracle_at(
        whole, report["policies"]["trigger"]["retrains"]
    )
    for label in ("first", "second"):
        for name, p in report["halves"][label]["policies"].items():
            assert p["recovered_gain"] <= p["oracle_recovered_gain"] + 1e-9, (label, name)


def test_report_speaks_in_comparisons_with_documented_thresholds(report):
    text = backtest.format_table(report)
    assert "of retrain-every-batch" in text and "of its retrains" in text
    assert "fixed-schedule frontier" in text and "95% CI" in text and "oracle bound" in text
    assert "(--target-recovered)" in text and "(--max-share)" in text
    lowered = text.lower()
    assert "goal" not in lowered and " met" not in lowered and "issue" not in lowered
    strict = backtest.backtest(
        make_cfg(), synthetic(), progress=False, oracle_bound=False, target_recovered=0.0, max_share=1.0
    )
    assert "oracle" not in strict and strict["thresholds"] == {"target_recovered": 0.0, "max_share": 1.0}
    crit = strict["trigger_vs_frontier"]["criteria"]
    assert crit["recovered"] is (strict["recovered_gain"]["trigger"] >= 0.0) and crit["share"] is True


def test_report_says_when_a_signal_fires_on_nearly_every_batch():
    cfg = make_cfg(prediction_drift={"threshold": 1e-6}, cooldown_batches=2)  # fires on every batch
    text = backtest.format_table(backtest.backtest(cfg, synthetic(), progress=False, oracle_bound=False))
    n = len([line for line in text.splitlines() if "prediction_drift fired on" in line])
    assert n >= 1 and "prediction_drift: {mode: auto}" in text
    quiet = backtest.format_table(
        backtest.backtest(make_cfg(), synthetic(), progress=False, oracle_bound=False)
    )
    assert "fired on" not in quiet


def test_report_says_when_the_performance_signal_could_judge_few_batches():
    cfg = make_cfg(performance={"max_degradation": 0.5, "min_labelled_rows": 10_000})
    report = backtest.backtest(cfg, synthetic(), progress=False, oracle_bound=False)
    assert report["policies"]["trigger"]["performance_judged"] == 0
    text = backtest.format_table(report)
    assert "performance judged 0 of" in text and "min_labelled_rows (10000)" in text
    fine = backtest.backtest(make_cfg(), synthetic(), progress=False, oracle_bound=False)
    assert fine["policies"]["trigger"]["performance_judged"] >= fine["batches"] - 1
    assert "performance judged" not in backtest.format_table(fine)


def test_recovered_gain_ci_resamples_batches_of_all_three_policies():
    from retrainer.backtest.stats import recovered_gain_ci

    rng = np.random.default_rng(1)
    never = rng.uniform(50, 60, size=40)
    eb = never - rng.uniform(5, 15, size=40)
    half = np.where(np.arange(40) % 2 == 0, eb, never)  # every_batch's quality on every other batch
    summaries = {
        "never": {"per_batch": list(never)},
        "every_batch": {"per_batch": list(eb)},
        "same": {"per_batch": list(eb)},
        "half": {"per_batch": list(half)},
        "nan": {"per_batch": [float("nan")] * 40},
    }
    assert recovered_gain_ci(summaries, "same") == pytest.approx((1.0, 1.0))
    lo, hi = recovered_gain_ci(summaries, "half")
    point = (half - never).sum() / (eb - never).sum()
    assert 0.25 < lo < point < hi < 0.75
    assert all(v != v for v in recovered_gain_ci(summaries, "nan"))  # NaN, not an error
    summaries["half"]["per_batch"][3] = float("nan")  # an unscored batch drops out of all three
    assert recovered_gain_ci(summaries, "half") != (lo, hi)
    text = backtest.format_table(
        backtest.backtest(make_cfg(), synthetic(), progress=False, oracle_bound=False)
    )
    assert "of its gain over never retraining (95% CI " in text


def stationary(task: str, weeks: int = 60, rows: int = 168, seed: int = 0) -> pd.DataFrame:
    """Weekly batches of hourly rows from one fixed concept: retraining cannot help."""
    rng = np.random.default_rng(seed)
    n = weeks * rows
    t = pd.Timestamp("2024-01-01") + pd.to_timedelta(np.arange(n), unit="h")
    a, b, c = rng.normal(size=n), rng.normal(size=n), rng.uniform(size=n)
    f = 3 * a + np.sin(3 * b) + 2 * c + rng.normal(size=n)
    y = f if task == "regression" else np.where(f > 1, "yes", "no")
    return pd.DataFrame({"ts": t, "a": a, "b": b, "c": c, "y": y})


@pytest.mark.parametrize(
    ("task", "estimator", "metric", "at_most"),
    [
        ("regression", "sklearn.linear_model.LinearRegression", "rmse", 0.2),
        ("classification", "sklearn.linear_model.LogisticRegression", "f1", 0.1),
    ],
)
def test_default_policy_stays_quiet_on_a_stationary_stream(task, estimator, metric, at_most):
    """A config without `triggers` (the shipped default) on a stream that never drifts: the sampling
    noise of the signals causes a few retrains, never a storm, and the age floor adds at most one per
    nine batches (docs/backtest: "A stream that does not drift")."""
    cfg = parse_config(
        {
            "name": "stationary",
            "task": task,
            "data": {"time_column": "ts", "target": "y", "features": ["a", "b", "c"], "min_batch_rows": 24},
            "model": {"estimator": estimator},
            "training": {"window": "8W", "holdout": "1W", "min_rows": 300},
            "validation": {"metric": metric},
            "backtest": {"batch_freq": "7D", "max_k": 2},
        }
    )
    signalled, total = [], []
    for seed in range(3):
        report = backtest.backtest(cfg, stationary(task, seed=seed), progress=False, oracle_bound=False)
        trigger = report["policies"]["trigger"]
        floor = trigger["fired"].get("max_age", 0)  # the age floor: one retrain per 9 quiet batches
        signalled.append((trigger["retrains"] - floor) / report["batches"])
        total.append(trigger["retrains"] / report["batches"])
    assert max(signalled) <= at_most, signalled
    assert max(total) <= at_most + 1 / (cfg.triggers.max_age_batches + 1), total


@pytest.mark.parametrize(
    ("name", "config"),
    [
        ("bikeshare", "include/models/bikeshare.yaml"),
        ("rainfall", "include/models/rainfall.yaml"),
        ("co2", "docs/backtest/configs/co2.yaml"),
        ("trump_approval", "docs/backtest/configs/trump_approval.yaml"),
        ("nyse", "docs/backtest/configs/nyse.yaml"),
        ("sea", "docs/backtest/configs/sea.yaml"),
        ("agrawal", "docs/backtest/configs/agrawal.yaml"),
        ("friedman_lea", "docs/backtest/configs/friedman_lea.yaml"),
        ("friedman_gra", "docs/backtest/configs/friedman_gra.yaml"),
        ("friedman_gsg", "docs/backtest/configs/friedman_gsg.yaml"),
        ("reversal", "docs/backtest/configs/reversal.yaml"),
    ],
)
def test_shipped_datasets_load_against_their_configs(name, config):
    from pathlib import Path

    from retrainer.config import load_config

    root = Path(__file__).resolve().parents[2]
    cfg = load_config(root / config)
    df = backtest.load_data(cfg, name)
    assert len(df) > 1000 and df[cfg.data.time_column].is_monotonic_increasing
    assert df[cfg.data.target].notna().mean() > 0.9
    if name == "nyse":  # yesterday's volume is today's first lag, on every row
        assert (df["lv_lag1"].iloc[1:].to_numpy() == df["log_volume"].iloc[:-1].to_numpy()).all()
        assert df[[c for c in df.columns if "_lag" in c]].notna().all().all()


def test_synthetic_streams_are_the_same_on_every_run_with_weekly_batches():
    from retrainer.ml import datasets

    first, again = datasets.load("sea"), datasets.load("sea")
    pd.testing.assert_frame_equal(first, again)  # seeded: a report is reproducible
    weeks = first.groupby(first["timestamp"].dt.to_period("W-SUN")).size()
    assert len(weeks) == datasets.SYNTH_BATCHES and set(weeks) == {datasets.SYNTH_ROWS}
    # SEA: class "1" where x0 + x1 > threshold (5% noise); the threshold changes at week 24
    before, after = first.iloc[: 24 * 250], first.iloc[25 * 250 : 40 * 250]
    agree = lambda part, theta: ((part["x0"] + part["x1"] > theta) == (part["y"] == "1")).mean()  # noqa: E731
    assert agree(before, 8) > 0.9 > agree(after, 8)
    assert agree(after, 9) > 0.9
