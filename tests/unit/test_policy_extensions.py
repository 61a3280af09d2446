"""Policy extensions: river detectors, hysteresis, follow-up refit, persisted state; shared rules."""

from __future__ import annotations

import numpy as np
import pytest

from retrainer import policy
from retrainer.config import ErrorDetectorTrigger, PerformanceTrigger, TriggerConfig, parse_config
from retrainer.exceptions import PolicyStateError
from retrainer.gates import compare
from retrainer.policy import PolicyState, Signals, decide, step

pytestmark = pytest.mark.unit

PERF = TriggerConfig(
    data_drift=None,
    prediction_drift=None,
    flags=None,
    performance=PerformanceTrigger(max_degradation=0.2, min_labelled_rows=10),
    cooldown_batches=0,
)
BAD = Signals(metric_name="mae", metric_value=2.0, metric_reference=1.0, labelled_rows=50)
GOOD = Signals(metric_name="mae", metric_value=1.0, metric_reference=1.0, labelled_rows=50)


def run(t, signals, state=None):
    state = state or PolicyState()
    verdicts = []
    for s in signals:
        d, state, _ = step(s, t, state)
        verdicts.append(d.verdict)
    return verdicts


def test_hysteresis_needs_quiet_batches_before_firing_again():
    t = PERF.model_copy(update={"hysteresis_batches": 2})

    assert run(t, [BAD, BAD, GOOD, BAD, GOOD, GOOD, BAD]) == [
        "retrain",
        "suppressed",  # disarmed: still the same event
        "no_retrain",
        "suppressed",  # one quiet batch is not enough
        "no_retrain",
        "no_retrain",
        "retrain",  # re-armed after two quiet batches
    ]
    d = decide(BAD, t, PolicyState(batches_since_request=0, armed=False, quiet_batches=1))
    assert "hysteresis" in d.suppressed_by and "hysteresis_batches=2" in d.suppressed_by


def test_hysteresis_does_not_hold_back_when_the_model_was_not_replaced():
    t = PERF.model_copy(update={"hysteresis_batches": 2, "cooldown_batches": 1})

    def verdicts(models):
        state, out = PolicyState(), []
        for model in models:
            d, state, _ = step(BAD, t, state, model_id=model)
            out.append(d.verdict if not d.suppressed_by else d.suppressed_by.split(":")[0])
        return out

    # every request rejected: the champion stays v1, so only the cooldown spaces the requests
    assert verdicts(["v1"] * 5) == ["retrain", "cooldown", "retrain", "cooldown", "retrain"]
    # the first request replaced v1 by v2: the same event is held back until quiet batches re-arm
    assert verdicts(["v1", "v2", "v2", "v2"]) == ["retrain", "cooldown", "hysteresis", "hysteresis"]


def test_follow_up_refit_once_after_a_triggered_retrain():
    t = PERF.model_copy(update={"follow_up_refit": True, "cooldown_batches": 3})

    verdicts = run(t, [BAD, GOOD, GOOD, BAD, BAD, BAD])

    # the follow-up is a request too: the cooldown counts from it
    assert verdicts == ["retrain", "retrain", "no_retrain", "suppressed", "suppressed", "retrain"]
    d, state, _ = step(GOOD, t, PolicyState(batches_since_request=0, follow_up_due=True))
    assert d.retrain and d.fired == ["follow_up"] and "follow-up" in d.reasons[0]
    assert state.follow_up_due is False  # a follow-up does not schedule another one


def test_no_follow_up_without_the_option():
    assert run(PERF, [BAD, GOOD]) == ["retrain", "no_retrain"]


@pytest.mark.parametrize("method", ["adwin", "page_hinkley", "ddm"])
def test_river_detector_fires_on_an_error_jump(method):
    t = PERF.model_copy(update={"performance": None, "error_detector": ErrorDetectorTrigger(method=method)})
    rng = np.random.default_rng(0)
    state = PolicyState()
    fired_at = []
    for batch in range(12):
        rate = 0.1 if batch < 8 else 0.6  # the error rate jumps at batch 8
        errors = (rng.random(100) < rate).astype(float)
        d, state, _s = step(Signals(), t, state, errors=errors, model_id="v1")
        if d.retrain:
            fired_at.append(batch)
    assert fired_at and 8 <= fired_at[0] <= 9, fired_at
    assert state.detector is not None and state.detector_model == "v1"


def test_detector_is_reset_for_a_new_model_and_state_is_not_mutated():
    t = PERF.model_copy(update={"performance": None, "error_detector": ErrorDetectorTrigger(method="adwin")})
    _, s1, _ = step(Signals(), t, PolicyState(), errors=np.zeros(200), model_id="v1")
    before = s1.detector.n_detections, s1.detector.width

    _, s2, _ = step(Signals(), t, s1, errors=np.zeros(50), model_id="v1")
    _, s3, _ = step(Signals(), t, s2, errors=np.zeros(10), model_id="v2")

    assert (s1.detector.n_detections, s1.detector.width) == before  # states are values
    assert s2.detector.width == 250 and s3.detector.width == 10


def test_policy_state_round_trips_with_its_detector():
    t = PERF.model_copy(update={"performance": None, "error_detector": ErrorDetectorTrigger(method="adwin")})
    _, state, _ = step(Signals(), t, PolicyState(batches_since_request=3), errors=np.ones(64), model_id="v7")

    back = PolicyState.from_dict(state.to_dict())

    assert back == state and back.detector.width == state.detector.width == 64
    assert back.detector_model == "v7" and back.batches_since_request == 4


@pytest.mark.parametrize("method", ["adwin", "page_hinkley", "ddm"])
def test_stored_detector_state_is_bounded_and_decides_as_the_live_one(method):
    """Each decision stores the state and the next one restores it: the stored form must not grow with every
    error fed (40 batches of 2,000 labelled rows), and the restored detector must decide exactly as one
    that was never stored."""
    import json

    t = PERF.model_copy(update={"performance": None, "error_detector": ErrorDetectorTrigger(method=method)})
    rng = np.random.default_rng(1)
    live, stored = PolicyState(), PolicyState()
    live_verdicts, stored_verdicts, sizes = [], [], []
    for batch in range(40):
        rate = 0.1 if batch < 25 else 0.45  # a change the detectors see
        errors = (rng.random(2000) < rate).astype(float)
        if method != "ddm":  # ddm watches 0/1 errors; the others see a regression's absolute errors
            errors = errors * rng.gamma(2.0, 1.0, errors.size)
        d, live, _ = step(Signals(), t, live, errors=errors, model_id="v1")
        live_verdicts.append(d.verdict)
        d, stored, _ = step(Signals(), t, stored, errors=errors, model_id="v1")
        stored_verdicts.append(d.verdict)
        text = json.dumps(stored.to_dict())
        sizes.append(len(text))
        stored = PolicyState.from_dict(json.loads(text))

    assert stored_verdicts == live_verdicts and "retrain" in live_verdicts
    assert max(sizes) < 8_000, sizes  # bounded: the detector's statistics, not its 80,000 errors
    assert stored.to_dict() == live.to_dict()


@pytest.mark.parametrize(
    "stats",
    [
        {"drift_detected": False, "window": "bm90IHpsaWI="},  # base64, not zlib
        {
            "drift_detected": False,
            "window": __import__("base64").b64encode(__import__("zlib").compress(b"x" * 40)).decode(),
        },
        {"drift_detected": False},
        {"drift_detected": "os.system", "window": ""},
    ],
)
def test_a_damaged_adwin_state_is_refused_with_a_reason(stats):
    blob = {"format": policy.STATE_FORMAT, "detector": {"method": "adwin", "params": {}, "stats": stats}}
    with pytest.raises(PolicyStateError):
        PolicyState.from_dict(blob)


def test_a_state_stored_with_the_error_stream_still_restores():
    import base64
    import zlib

    t = PERF.model_copy(update={"performance": None, "error_detector": ErrorDetectorTrigger(method="adwin")})
    errors = np.r_[np.zeros(300), np.ones(40)]
    _, live, _ = step(Signals(), t, PolicyState(), errors=errors, model_id="v1")
    old = {k: v for k, v in live.to_dict().items() if k != "detector"}
    raw = base64.b64encode(zlib.compress(errors.astype("<f8").tobytes())).decode()
    old["detector"] = {"method": "adwin", "params": {}, "errors": raw, "n": errors.size}

    back = PolicyState.from_dict(old)

    assert back.detector.width == live.detector.width and back.to_dict() == live.to_dict()


def test_error_stream():
    assert policy.error_stream("classification", np.array([1, 0, 1]), np.array([1, 1, 0])).tolist() == [
        0,
        1,
        1,
    ]
    assert policy.error_stream("regression", np.array([1.0, 3.0]), np.array([2.0, 1.0])).tolist() == [
        1.0,
        2.0,
    ]


def test_ddm_is_refused_for_regression():
    from retrainer.exceptions import ConfigError

    with pytest.raises(ConfigError, match="classification only"):
        parse_config(
            {
                "name": "m",
                "task": "regression",
                "data": {"time_column": "t", "target": "y", "features": ["a"]},
                "model": {"estimator": "sklearn.linear_model.Ridge"},
                "triggers": {"error_detector": {"method": "ddm"}},
            }
        )


# -- the candidate-vs-champion rule equals MLflow's verdict --------------------------------------------------
def test_compare_matches_mlflow_validate_evaluation_results(bikeshare_cfg):
    import mlflow
    from mlflow.exceptions import MlflowException
    from mlflow.models.evaluation import EvaluationResult

    from retrainer.stages.retrain import metric_thresholds

    rng = np.random.default_rng(1)
    cfgs = [
        bikeshare_cfg,  # rmse (lower is better) with an r2 floor
        bikeshare_cfg.model_copy(
            update={"validation": bikeshare_cfg.validation.model_copy(update={"max_degradation": 0.1})}
        ),
    ]
    checked = 0
    for cfg in cfgs:
        for _ in range(60):
            cand = {"rmse": float(rng.uniform(20, 40)), "r2": float(rng.uniform(0, 1))}
            # the champion's scores hold every metric, as metrics.compute gives them (or none: no champion)
            champ = (
                {"rmse": float(rng.uniform(20, 40)), "r2": float(rng.uniform(0, 1)), "mae": 1.0}
                if rng.random() < 0.8
                else {}
            )
            force = bool(rng.random() < 0.2)
            ours = compare.failed_checks(cfg, cand, champ, force)
            try:
                mlflow.validate_evaluation_results(
                    metric_thresholds(cfg, champ.get("rmse"), force),
                    EvaluationResult(cand, {}, None),
                    EvaluationResult(champ, {}, None),
                )
                theirs: list[str] = []
            except MlflowException as exc:
                theirs = [line.strip(" -") for line in str(exc).splitlines() if line.strip()]
            assert ours == theirs, (cand, champ, force)
            checked += bool(ours)
    assert checked > 20  # both verdicts were exercised


def test_max_age_is_a_floor_under_quiet_signals_and_counts_from_the_last_request():
    t = PERF.model_copy(update={"max_age_batches": 3, "cooldown_batches": 1})

    def verdicts(models, signals=None):
        state, out = PolicyState(), []
        for i, model in enumerate(models):
            d, state, _ = step((signals or {}).get(i, GOOD), t, state, model_id=model)
            out.append("max_age" if d.fired == ["max_age"] else d.verdict)
        return out, state

    # quiet signals: the champion serves three batches, the fourth requests a retrain (every request
    # rejected here: the champion stays v1, and the age counts from the request)
    out, state = verdicts(["v1"] * 9)
    assert out == ["no_retrain"] * 3 + ["max_age"] + ["no_retrain"] * 3 + ["max_age", "no_retrain"]
    assert state.served == 9 and state.batches_since_request == 1
    # a signal's request resets the age; a new champion starts its own
    out, _ = verdicts(["v1", "v1", "v1", "v2", "v2", "v2", "v2", "v2"], {1: BAD})
    assert out == [
        "no_retrain",
        "retrain",
        "no_retrain",
        "no_retrain",
        "no_retrain",
        "no_retrain",
        "max_age",
        "no_retrain",
    ]
    d, _, _ = step(GOOD, t, PolicyState(served=3, baseline_model="v1"), model_id="v1")
    assert d.retrain and "max age: 4 batches without a retrain request > max_age_batches=3" in d.reasons


def test_max_age_waits_for_the_cooldown_and_is_off_with_null():
    t = PERF.model_copy(update={"max_age_batches": 1, "cooldown_batches": 3})
    verdicts = run(t, [BAD, GOOD, GOOD, GOOD, GOOD])
    assert verdicts == ["retrain", "no_retrain", "no_retrain", "no_retrain", "retrain"]
    off = PERF.model_copy(update={"max_age_batches": None})
    assert run(off, [GOOD] * 30) == ["no_retrain"] * 30


def test_served_round_trips_and_an_older_state_without_it_still_loads():
    _, state, _ = step(GOOD, PERF, PolicyState(), model_id="v1")
    _, state, _ = step(GOOD, PERF, state, model_id="v1")
    data = state.to_dict()
    assert data["served"] == 2 and PolicyState.from_dict(data) == state
    del data["served"]  # a state stored before the age floor existed
    assert PolicyState.from_dict(data).served == 0
