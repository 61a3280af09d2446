"""The trigger policy as pure functions: signals, combination rules, cooldown."""

from __future__ import annotations

import pytest

from retrainer.config import (
    DataDriftTrigger,
    FlagsTrigger,
    PerformanceTrigger,
    PredictionDriftTrigger,
    TriggerConfig,
)
from retrainer.policy import Decision, PolicyState, Signals, combine, decide, evaluate_signals, next_state

pytestmark = pytest.mark.unit

T = TriggerConfig(
    data_drift=DataDriftTrigger(share=0.5),
    prediction_drift=PredictionDriftTrigger(threshold=0.1),
    performance=PerformanceTrigger(max_degradation=0.25, min_labelled_rows=24),
    flags=FlagsTrigger(threshold=0.05),
    combine="any",
    cooldown_batches=2,
)
QUIET = Signals(
    data_drift_share=0.1,
    drifted_columns=("temp",),
    prediction_drift=0.02,
    metric_name="rmse",
    metric_value=21.0,
    metric_reference=20.0,
    lower_is_better=True,
    labelled_rows=100,
    flagged_rate=0.01,
)
DRIFTING = Signals(data_drift_share=0.6, drifted_columns=("temp", "atemp"))
PERF_BAD = Signals(metric_name="rmse", metric_value=30.0, metric_reference=20.0, labelled_rows=100)


def test_no_champion_always_retrains():
    decision = decide(Signals(has_champion=False), T, PolicyState(batches_since_request=0))

    assert decision.retrain is True and decision.verdict == "retrain"
    assert decision.fired == ["no_champion"]
    assert "no champion" in decision.reasons[0]


def test_below_all_thresholds_no_retrain():
    decision = decide(QUIET, T)

    assert decision.retrain is False
    assert decision.verdict == "no_retrain"
    assert decision.fired == [] and decision.reasons == [] and decision.suppressed_by is None


def test_nothing_measured_no_retrain():
    assert decide(Signals(), T).verdict == "no_retrain"


def test_data_drift_fires_with_numbers_and_columns():
    fired = evaluate_signals(DRIFTING, T)

    assert list(fired) == ["data_drift"]
    assert "0.60" in fired["data_drift"] and "0.50" in fired["data_drift"]
    assert "temp, atemp" in fired["data_drift"]


def test_data_drift_threshold_is_inclusive():
    assert "data_drift" in evaluate_signals(Signals(data_drift_share=0.5), T)
    assert "data_drift" not in evaluate_signals(Signals(data_drift_share=0.49), T)


def test_prediction_drift_fires_with_numbers():
    fired = evaluate_signals(Signals(prediction_drift=0.25), T)

    assert list(fired) == ["prediction_drift"]
    assert "0.250" in fired["prediction_drift"] and "0.100" in fired["prediction_drift"]


def test_performance_fires_with_numbers():
    fired = evaluate_signals(PERF_BAD, T)

    assert list(fired) == ["performance"]
    reason = fired["performance"]
    assert "rmse 30" in reason and "20" in reason and "+50%" in reason and "25%" in reason


def test_performance_direction_for_higher_is_better_metric():
    worse = Signals(
        metric_name="r2", metric_value=0.5, metric_reference=0.8, lower_is_better=False, labelled_rows=100
    )
    better = Signals(
        metric_name="r2", metric_value=0.95, metric_reference=0.8, lower_is_better=False, labelled_rows=100
    )

    assert "performance" in evaluate_signals(worse, T)
    assert "performance" not in evaluate_signals(better, T)


def test_performance_at_exact_limit_does_not_fire():
    s = Signals(metric_name="rmse", metric_value=25.0, metric_reference=20.0, labelled_rows=100)  # +25%

    assert "performance" not in evaluate_signals(s, T)


def test_performance_ignored_below_min_labelled_rows():
    few = Signals(metric_name="rmse", metric_value=30.0, metric_reference=20.0, labelled_rows=23)
    enough = Signals(metric_name="rmse", metric_value=30.0, metric_reference=20.0, labelled_rows=24)

    assert evaluate_signals(few, T) == {}
    assert decide(few, T).retrain is False
    assert "performance" in evaluate_signals(enough, T)


def test_flags_fire_with_percentages():
    fired = evaluate_signals(Signals(flagged_rate=0.08), T)

    assert list(fired) == ["flags"]
    assert "8.0%" in fired["flags"] and "5.0%" in fired["flags"]


def test_all_signals_fire_together():
    s = Signals(
        data_drift_share=0.9,
        prediction_drift=0.5,
        metric_name="rmse",
        metric_value=40.0,
        metric_reference=20.0,
        labelled_rows=100,
        flagged_rate=0.5,
    )

    decision = decide(s, T)

    assert decision.retrain is True
    assert decision.fired == ["data_drift", "prediction_drift", "performance", "flags"]
    assert len(decision.reasons) == 4 and decision.score == 4.0


@pytest.mark.parametrize("signal", ["data_drift", "prediction_drift", "performance", "flags"])
def test_disabled_signal_never_fires(signal):
    t = T.model_copy(update={signal: None})
    extreme = Signals(
        data_drift_share=1.0,
        prediction_drift=9.0,
        metric_name="rmse",
        metric_value=1e6,
        metric_reference=1.0,
        labelled_rows=10_000,
        flagged_rate=1.0,
    )

    fired = evaluate_signals(extreme, t)

    assert signal not in fired
    assert len(fired) == 3


def test_disabled_via_constructor_none():
    t = TriggerConfig(data_drift=None, prediction_drift=None, performance=None, flags=None)

    assert decide(Signals(data_drift_share=1.0, prediction_drift=1.0, flagged_rate=1.0), t).retrain is False


def test_k_of_n_needs_k_signals():
    t = T.model_copy(update={"combine": "k_of_n", "k": 2})

    one = decide(DRIFTING, t)
    two = decide(Signals(data_drift_share=0.6, prediction_drift=0.3), t)

    assert one.retrain is False and one.fired == ["data_drift"]
    assert two.retrain is True and two.score == 2.0


def test_k_of_n_caps_k_at_enabled_signals():
    t = TriggerConfig(
        combine="k_of_n",
        k=3,
        data_drift=DataDriftTrigger(),
        prediction_drift=None,
        performance=None,
        flags=None,
    )

    assert combine({"data_drift": "x"}, t) == (True, 1.0)


def test_weighted_combination():
    t = T.model_copy(
        update={
            "combine": "weighted",
            "weights": {"data_drift": 0.4, "flags": 0.7},
            "weighted_threshold": 1.0,
        }
    )

    drift_only = decide(DRIFTING, t)
    drift_and_flags = decide(Signals(data_drift_share=0.6, flagged_rate=0.2), t)
    unweighted_default = combine({"prediction_drift": "x"}, t)  # default weight 1.0

    assert drift_only.retrain is False and drift_only.score == pytest.approx(0.4)
    assert drift_and_flags.retrain is True and drift_and_flags.score == pytest.approx(1.1)
    assert unweighted_default == (True, 1.0)


def test_weights_for_unknown_signal_rejected():
    with pytest.raises(ValueError, match="unknown signals"):
        TriggerConfig(weights={"vibes": 1.0})


def test_cooldown_suppresses_within_and_allows_after():
    state = PolicyState()  # never requested
    verdicts = []
    for _ in range(5):
        decision = decide(DRIFTING, T, state)
        verdicts.append(decision.verdict)
        state = next_state(state, decision)

    # request, then cooldown_batches=2 suppressed batches, then a request again
    assert verdicts == ["retrain", "suppressed", "suppressed", "retrain", "suppressed"]


def test_suppressed_decision_says_why():
    decision = decide(DRIFTING, T, PolicyState(batches_since_request=0))

    assert decision.retrain is False and decision.fired == ["data_drift"]
    assert "cooldown" in decision.suppressed_by and "cooldown_batches=2" in decision.suppressed_by


def test_cooldown_zero_never_suppresses():
    t = T.model_copy(update={"cooldown_batches": 0})

    assert decide(DRIFTING, t, PolicyState(batches_since_request=0)).retrain is True


def test_quiet_batches_advance_cooldown_counter():
    state = PolicyState(batches_since_request=0)

    state = next_state(state, decide(QUIET, T, state))
    state = next_state(state, decide(QUIET, T, state))

    assert state.batches_since_request == 2
    assert decide(DRIFTING, T, state).retrain is True


def test_next_state():
    assert next_state(PolicyState(), Decision(False)).batches_since_request is None
    assert next_state(PolicyState(5), Decision(True)) == PolicyState(0)
    assert next_state(PolicyState(1), Decision(False)).batches_since_request == 2
