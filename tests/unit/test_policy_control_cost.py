"""The stream-calibrated performance signal (control chart), the cost-aware signal, and their records."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from retrainer import backtest, policy
from retrainer.config import TriggerConfig, parse_config

pytestmark = pytest.mark.unit

OFF = {
    "data_drift": None,
    "prediction_drift": None,
    "performance": None,
    "flags": None,
    "max_age_batches": None,
}


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


def cusum(k: float = 0.5, h: float = 4.0) -> TriggerConfig:
    return TriggerConfig(
        **{
            **OFF,
            "performance": {"mode": "cusum", "cusum_k": k, "cusum_h": h, "predecessor_z": None},
            "cooldown_batches": 0,
        }
    )


def test_cusum_adds_up_a_small_lasting_decay_that_a_control_chart_misses():
    rng = np.random.default_rng(3)
    quiet = list(5.0 + rng.normal(scale=0.1, size=12))  # noise ~0.1 per batch
    decay = [quiet[0] + 0.15] * 6  # 1.5 noise units worse, every batch: under a z=2 chart's limit
    chart = TriggerConfig(**{**OFF, "performance": {"mode": "control", "z": 2.0}, "cooldown_batches": 0})
    assert not any(d.retrain for d, _ in feed(chart, [*quiet, *decay], reference=5.0)[0])
    out, _ = feed(cusum(), [*quiet, *decay], reference=5.0)
    fired = [i for i, (d, _) in enumerate(out) if d.retrain]
    assert fired and fired[0] >= len(quiet) + 2  # a few batches of it, not the first one
    first = out[fired[0]][0]
    assert "summed over its batches" in first.reasons[0] and first.details["cusum"] > 4.0
    assert first.details["worse_units"] == pytest.approx(0.15, abs=1e-9)


def test_cusum_catches_a_lasting_decay_more_often_than_it_fires_on_noise():
    """Stationary noise vs a lasting 1.5-noise-unit decay, the noise known from an earlier champion."""

    def fires(t: TriggerConfig, seed: int, decay: float) -> bool:
        rng = np.random.default_rng(seed)
        history, batches = 5 + rng.normal(scale=0.1, size=26), 5 + rng.normal(scale=0.1, size=12)
        batches[1:] += decay  # from the champion's second batch on (its first sets the baseline)
        state, fired = policy.PolicyState(), False
        for model, values in (("v0", history), ("v1", batches)):
            for v in values:
                s = policy.Signals(
                    metric_name="rmse", metric_value=v, metric_reference=5.0, labelled_rows=100
                )
                d, state, _ = policy.step(s, t, state, model_id=model)
                fired |= d.retrain and model == "v1"
        return fired

    t = cusum(k=1.0, h=4.0)
    seeds = range(100)
    false_alarms = sum(fires(t, s, 0.0) for s in seeds) / len(seeds)
    detected = sum(fires(t, s, 0.15) for s in seeds) / len(seeds)
    assert false_alarms <= 0.3 and detected >= 0.6  # measured: 0.20 and 0.68 over these seeds


def test_cusum_sum_starts_again_for_a_new_champion_and_round_trips():
    t = cusum(k=0.0, h=100.0)
    _, state = feed(t, [1.0, 1.1, 0.9, 1.0, 1.4, 1.5])
    assert state.cusum > 0
    back = policy.PolicyState.from_dict(json.loads(json.dumps(state.to_dict())))
    assert back == state
    s = policy.Signals(metric_name="rmse", metric_value=3.0, metric_reference=2.9, labelled_rows=100)
    _, state, seen = policy.step(s, t, state, model_id="v2")
    assert seen.metric_cusum is None and state.cusum == 0.0  # v2's first batch sets its baseline
    s = policy.Signals(metric_name="rmse", metric_value=3.3, metric_reference=2.9, labelled_rows=100)
    _, state, seen = policy.step(s, t, state, model_id="v2")
    assert seen.metric_cusum == 0.0 and state.cusum == pytest.approx(0.3 / seen.metric_noise)


def test_cusum_higher_is_better_metric():
    t = cusum()
    rng = np.random.default_rng(5)
    vals = [*(0.8 + rng.normal(scale=0.01, size=10)), *([0.77] * 4)]
    state, fired = policy.PolicyState(), []
    for v in vals:
        s = policy.Signals(
            metric_name="f1", metric_value=v, metric_reference=0.8, labelled_rows=100, lower_is_better=False
        )
        d, state, _ = policy.step(s, t, state, model_id="v1")
        fired.append(d.retrain)
    assert not any(fired[:10]) and any(fired[10:])


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


# -- the retrain budget ------------------------------------------------------------------------------------
def drifting(t: TriggerConfig, pattern: list[bool]):
    """Batches whose prediction drift is high (True) or low (False): the retrain decisions."""
    state, out = policy.PolicyState(), []
    for high in pattern:
        s = policy.Signals(prediction_drift=0.5 if high else 0.01)
        d, state, _ = policy.step(s, t, state, model_id="v1")
        out.append(d)
    return out, state


def budget(share: float = 0.25, burst: float = 2.0, cooldown: int = 0) -> TriggerConfig:
    return TriggerConfig(
        **{
            **OFF,
            "prediction_drift": {"threshold": 0.15},
            "budget_share": share,
            "budget_burst": burst,
            "cooldown_batches": cooldown,
        }
    )


def test_budget_caps_the_long_run_share_of_retrains():
    out, _ = drifting(budget(0.25), [True] * 400)
    assert sum(d.retrain for d in out) == pytest.approx(100, abs=2)
    refused = [d for d in out if d.suppressed_by]
    assert refused and "retrain budget" in refused[0].suppressed_by


def test_budget_saved_in_quiet_batches_allows_retrains_close_together():
    out, _ = drifting(budget(0.25, burst=2.0), [False] * 12 + [True] * 3)
    assert [d.retrain for d in out[12:]] == [True, True, False]  # two saved credits, then none
    # a cooldown of 3 would allow one of them: the budget spends retrains where the drift is
    out, _ = drifting(
        TriggerConfig(**{**OFF, "prediction_drift": {"threshold": 0.15}, "cooldown_batches": 3}),
        [False] * 12 + [True] * 3,
    )
    assert [d.retrain for d in out[12:]] == [True, False, False]


def test_budget_credits_round_trip_and_start_with_one():
    out, state = drifting(budget(0.25), [True])
    assert out[0].retrain and state.credits == pytest.approx(0.0)
    back = policy.PolicyState.from_dict(json.loads(json.dumps(state.to_dict())))
    assert back == state


# -- prediction drift calibrated on the stream -------------------------------------------------------------
def test_prediction_drift_control_mode_ignores_a_distance_that_is_always_large():
    rng = np.random.default_rng(7)
    t = TriggerConfig(
        **{**OFF, "prediction_drift": {"mode": "control", "z": 3.0, "threshold": 0.15}, "cooldown_batches": 0}
    )
    absolute = TriggerConfig(**{**OFF, "prediction_drift": {"threshold": 0.15}, "cooldown_batches": 0})
    values = list(2.0 + rng.normal(scale=0.1, size=20))  # large on every batch, and steady
    fired, seen = {}, {}
    for name, cfg in (("control", t), ("absolute", absolute)):
        state, fired[name] = policy.PolicyState(), []
        for v in [*values, 3.0]:  # then a jump of ~10 noise units
            d, state, seen[name] = policy.step(policy.Signals(prediction_drift=v), cfg, state, model_id="v1")
            fired[name].append(d.retrain)
    assert all(fired["absolute"])
    # the absolute threshold judges the first batches, until three differences give the noise
    assert all(fired["control"][:4]) and not any(fired["control"][4:20]) and fired["control"][20]
    last = seen["control"]
    assert last.drift_baseline == pytest.approx(values[0]) and 0.05 < last.drift_noise < 0.2


def test_prediction_drift_control_mode_starts_a_new_baseline_for_a_new_champion():
    t = TriggerConfig(**{**OFF, "prediction_drift": {"mode": "control"}, "cooldown_batches": 0})
    state = policy.PolicyState()
    for v in (1.0, 1.1, 0.9, 1.0):
        _, state, _ = policy.step(policy.Signals(prediction_drift=v), t, state, model_id="v1")
    _, state, seen = policy.step(policy.Signals(prediction_drift=0.2), t, state, model_id="v2")
    assert seen.drift_baseline is None and state.drift_baseline_values == (0.2,)
    assert policy.PolicyState.from_dict(json.loads(json.dumps(state.to_dict()))) == state


def test_prediction_drift_auto_mode_is_absolute_until_the_threshold_fires_on_nearly_every_batch():
    t = TriggerConfig(
        **{**OFF, "prediction_drift": {"mode": "auto", "z": 3.0, "threshold": 0.15}, "cooldown_batches": 0}
    )
    rng = np.random.default_rng(8)

    def run(values):
        state, out = policy.PolicyState(), []
        for v in values:
            d, state, seen = policy.step(policy.Signals(prediction_drift=float(v)), t, state, model_id="v1")
            out.append((d, seen))
        return out

    # a stream whose distance is small, now and then above the threshold: absolute on every batch
    sometimes = run(np.where(np.arange(30) % 4 == 0, 0.3, 0.05) + rng.normal(scale=0.005, size=30))
    assert [d.retrain for d, _ in sometimes] == [i % 4 == 0 for i in range(30)]
    # a stream whose distance is always large: absolute for the first batches, then its own noise
    always = run([*(2.0 + rng.normal(scale=0.1, size=30)), 3.5])
    fired = [d.retrain for d, _ in always]
    assert all(fired[:8]) and not any(fired[8:30]) and fired[30]
    last, seen = always[-1]
    assert seen.drift_above == (26, 26) and "on 26 of the last 26 batches" in last.reasons[0]


def predecessor(z: float = 2.0) -> TriggerConfig:
    return TriggerConfig(
        **{**OFF, "performance": {"mode": "control", "z": 3.0, "predecessor_z": z}, "cooldown_batches": 0}
    )


def serve(t: TriggerConfig, batches: list[tuple[str, float]], higher_is_better: bool = False):
    state, out = policy.PolicyState(), []
    for model, v in batches:
        s = policy.Signals(
            metric_name="f1" if higher_is_better else "rmse",
            metric_value=v,
            metric_reference=v,
            labelled_rows=100,
            lower_is_better=not higher_is_better,
        )
        decision, state, _ = policy.step(s, t, state, model_id=model)
        out.append(decision)
    return out, state


def test_a_champion_worse_than_its_predecessor_was_when_fresh_asks_for_one_refit():
    rng = np.random.default_rng(2)
    v1 = [("v1", float(v)) for v in 5.0 + rng.normal(scale=0.1, size=10)]
    first_v1 = v1[0][1]
    # v2 was trained just after a change: on its own first batch it is 0.8 (8 noise units) worse than v1
    # was on its first, and it stays there, so the control chart (against v2's own first batch) is quiet
    v2 = [("v2", first_v1 + 0.8 + d) for d in (0.0, 0.02, -0.03, 0.01, 0.0)]
    out, state = serve(predecessor(), [*v1, *v2])
    assert not any(d.retrain for d in out[: len(v1) + 1])  # v2's first batch sets its baseline
    fired = [i - len(v1) for i, d in enumerate(out) if d.retrain]
    assert fired == [1]  # once: the request was made while v2 served
    reason = out[len(v1) + 1].reasons[0]
    assert "vs its predecessor's" in reason and "refit on newer data" in reason
    assert out[len(v1) + 1].details["behind_predecessor"] == pytest.approx(0.8)
    assert state.previous_baseline == pytest.approx(first_v1)
    back = policy.PolicyState.from_dict(json.loads(json.dumps(state.to_dict())))
    assert back == state
    # a new champion as good as its predecessor was, or the option off: nothing
    as_good = [("v2", first_v1 + d) for d in (0.05, 0.0, 0.02)]
    assert not any(d.retrain for d in serve(predecessor(), [*v1, *as_good])[0])
    off = TriggerConfig(
        **{**OFF, "performance": {"mode": "control", "z": 3.0, "predecessor_z": None}, "cooldown_batches": 0}
    )
    assert not any(d.retrain for d in serve(off, [*v1, *v2])[0])


def test_behind_the_predecessor_for_a_higher_is_better_metric():
    rng = np.random.default_rng(4)
    v1 = [("v1", float(v)) for v in 0.9 + rng.normal(scale=0.01, size=10)]
    v2 = [("v2", v1[0][1] - 0.1)] * 3  # F1 10 points lower than v1's first batch
    out, _ = serve(predecessor(), [*v1, *v2], higher_is_better=True)
    assert [d.retrain for d in out[len(v1) :]] == [False, True, False]
