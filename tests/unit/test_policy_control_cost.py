"""The stream-calibrated performance signal (control chart), the cost-aware signal, and their records."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from retrainer import backtest, policy
from retrainer.config import TriggerConfig, parse_config

pytestmark = pytest.mark.unit

OFF = {"data_drift": None, "prediction_drift": None, "performance": None, "flags": None}


def feed(t: TriggerConfig, values: list[float], model: str = "v1", reference: float = 1.0):
    """Run labelled batches with these metric values (RMSE-like) through the policy."""
    state, out = policy.PolicyState(), []
    for v in values:
        s = policy.Signals(metric_name="rmse", metric_value=v, metric_reference=reference, labelled_rows=100)
        decision, state, seen = policy.step(s, t, state, model_id=model)
        out.append((decision, seen))
    return out, state


def test_noise_is_a_robust_sd_of_same_model_differences_and_ignores_a_trend():
    rng = np.random.default_rng(0)
    values = 10 + 0.5 * np.arange(400) + rng.normal(scale=2.0, size=400)  # trend + noise sd 2
    sigma, n = policy.noise(tuple(("m", float(v)) for v in values), window=400)
    assert n == 399 and sigma == pytest.approx(2.0, rel=0.15)
    mixed = (("a", 1.0), ("b", 100.0), ("b", 101.0), ("a", 1.0))
    assert policy.noise(mixed, 10)[1] == 1  # only consecutive batches of the same model count


def test_control_chart_fires_on_a_shift_of_a_few_noise_units_not_on_noise():
    t = TriggerConfig(**{**OFF, "performance": {"mode": "control", "z": 3.0}, "cooldown_batches": 0})
    rng = np.random.default_rng(1)
    quiet = list(5.0 + rng.normal(scale=0.1, size=12))
    out, _ = feed(t, [*quiet, 5.8], reference=5.0)
    assert not any(d.retrain for d, _ in out[:-1])
    last, seen = out[-1]
    assert last.retrain and "x stream noise" in last.reasons[0]
    assert seen.metric_baseline == pytest.approx(quiet[0]) and 0.05 < seen.metric_noise < 0.2
    assert last.details["worse_units"] == pytest.approx(5.8 - quiet[0])
    # the same +0.8 on a stream whose batch-to-batch noise is 1.0 does not fire
    noisy = list(5.0 + rng.normal(scale=1.0, size=12))
    out, _ = feed(t, [*noisy, noisy[0] + 0.8], reference=5.0)
    assert not out[-1][0].retrain


def test_control_chart_falls_back_to_the_relative_threshold_until_noise_is_known():
    t = TriggerConfig(
        **{**OFF, "performance": {"mode": "control", "max_degradation": 0.25}, "cooldown_batches": 0}
    )
    out, _ = feed(t, [1.5])  # nothing known about the stream yet: 50% worse than the holdout fires
    assert out[0][0].retrain and "worse > 25%" in out[0][0].reasons[0]


def test_state_with_logs_round_trips_through_json():
    t = TriggerConfig(**{**OFF, "performance": {"mode": "control"}})
    _, state = feed(t, [1.0, 1.1, 0.9])
    back = policy.PolicyState.from_dict(json.loads(json.dumps(state.to_dict())))
    assert back == state and back.metric_log[-1] == ("v1", 0.9) and back.baseline_values == (1.0,)


def test_a_new_champion_gets_a_new_baseline():
    t = TriggerConfig(**{**OFF, "performance": {"mode": "control"}})
    _, state = feed(t, [1.0, 1.1])
    s = policy.Signals(metric_name="rmse", metric_value=3.0, metric_reference=2.9, labelled_rows=100)
    _, state, seen = policy.step(s, t, state, model_id="v2")
    assert seen.metric_baseline == 2.9  # the holdout until v2's own first batch is known
    assert state.baseline_model == "v2" and state.baseline_values == (3.0,)


def test_cost_signal_records_the_numbers_behind_it():
    t = TriggerConfig(**{**OFF, "cost": {"retrain_cost": 10, "value_per_unit": 2, "horizon_batches": 3}})
    out, _ = feed(t, [1.0, 1.0, 1.0, 2.0, 3.0], reference=1.0)
    gains = [d.details.get("expected_gain") for d, _ in out]
    assert gains[:3] == [0.0, 0.0, 0.0] and gains[3] == pytest.approx(6.0) and gains[4] == pytest.approx(12)
    assert [d.retrain for d, _ in out] == [False, False, False, False, True]  # 6 <= 10 < 12
    d = out[4][0]
    assert d.fired == ["cost"] and d.details["retrain_cost"] == 10 and d.details["degradation_units"] == 2.0
    assert (
        "expected gain 12 = 2 rmse units (realised) x 2 per unit x 3 batches > retrain cost 10"
        in d.reasons[0]
    )


# -- the cost-aware policy on a stream where the right answer is known -------------------------------------
DRIFT_DAY = 10


def flipped(days: int = 20, rows: int = 96) -> pd.DataFrame:
    """A stable stream whose concept flips on DRIFT_DAY: MAE of the old model jumps from ~0.24 to ~3."""
    rng = np.random.default_rng(0)
    n = days * rows
    t = pd.Timestamp("2024-01-01") + pd.to_timedelta(np.arange(n) * (24 / rows), unit="h")
    a, b = rng.normal(size=n), rng.normal(size=n)
    y = np.where(np.arange(n) >= DRIFT_DAY * rows, -3 * a + b + 4, 3 * a + b) + rng.normal(scale=0.3, size=n)
    return pd.DataFrame({"ts": t, "a": a, "b": b, "y": y})


def cost_cfg(cost: float):
    return parse_config(
        {
            "name": "synthetic",
            "task": "regression",
            "data": {"time_column": "ts", "target": "y", "features": ["a", "b"]},
            "model": {"estimator": "sklearn.linear_model.LinearRegression"},
            "training": {"window": "3D", "holdout": "1D", "min_rows": 50},
            "triggers": {
                **OFF,
                "cost": {"retrain_cost": cost, "value_per_unit": 1.0, "horizon_batches": 4},
                "cooldown_batches": 1,
            },
            "validation": {"metric": "mae"},
            "backtest": {"batch_freq": "1D", "max_k": 2},
        }
    )


@pytest.mark.parametrize(
    ("cost", "retrains"),
    [
        # the flip costs ~2.8 MAE per batch for the remaining batches: worth ~11 over the 4-batch horizon
        (2.0, True),  # cheap retrains: retrain right after the flip, never before it
        (100.0, False),  # a retrain costs more than it can win back: never retrain
    ],
)
def test_cost_aware_policy_retrains_exactly_when_the_gain_exceeds_the_cost(cost, retrains):
    report = backtest.backtest(cost_cfg(cost), flipped(), progress=False)
    done = [i for i in report["policies"]["trigger"]["retrain_batches"] if i >= report["warmup_batches"]]
    if retrains:
        assert done and done[0] == DRIFT_DAY, done
        assert report["recovered_gain"]["trigger"] > 0.9
    else:
        assert done == []
        assert report["recovered_gain"]["trigger"] == pytest.approx(0.0)
    assert "trigger" in report["retrain_share"]


def test_a_malformed_control_chart_log_is_refused_not_trusted():
    from retrainer.exceptions import PolicyStateError

    t = TriggerConfig(**{**OFF, "performance": {"mode": "control"}})
    _, state = feed(t, [1.0, 1.1])
    doc = state.to_dict()
    for bad in ([["v1", "1.0"]], [[3, 1.0]], "v1", [["v1"]]):
        with pytest.raises(PolicyStateError):
            policy.PolicyState.from_dict({**doc, "metric_log": bad})
