"""``assess``: the pure step from a batch's evidence to the policy's decision, shared by the monitor's decide
task and ``retrainer check``. No MLflow, GX or Evidently: evidence in, decision and new state out."""

from __future__ import annotations

import pytest

from retrainer.policy import PolicyState
from retrainer.stages.assess import Evidence, assess

pytestmark = pytest.mark.unit

QUIET = {"data_drift_share": 0.0, "drifted_columns": [], "prediction_drift": 0.0}
NO_LABELS = {"metric": "rmse", "value": None, "reference": None, "labelled_rows": 0}


def test_a_champion_that_cannot_score_the_batch_counts_as_none_and_the_decision_says_why(bikeshare_cfg):
    why = "champion v3 cannot score batch b.parquet: it was trained on feature(s) ['hum'] that are not there"

    unscorable = assess(
        bikeshare_cfg, Evidence(QUIET, NO_LABELS, champion_version=3, unscorable=why), PolicyState()
    )
    scorable = assess(bikeshare_cfg, Evidence(QUIET, NO_LABELS, champion_version=3), PolicyState())
    none_yet = assess(bikeshare_cfg, Evidence(QUIET, NO_LABELS), PolicyState())

    assert unscorable.decision.retrain and unscorable.decision.fired == ["champion_unscorable"]
    assert unscorable.decision.reasons == [why]
    assert not scorable.decision.retrain and scorable.signals.has_champion
    assert none_yet.decision.fired == ["no_champion"] and none_yet.decision.reasons != [why]


def test_the_estimated_metric_reaches_the_policy_only_for_the_watched_metric(bikeshare_cfg):
    metric = bikeshare_cfg.trigger_metric
    estimate = {"method": "dle", metric: 12.5}

    with_estimate = assess(
        bikeshare_cfg, Evidence(QUIET, NO_LABELS, champion_version=1, estimate=estimate), PolicyState()
    )
    other_metric = assess(
        bikeshare_cfg,
        Evidence(QUIET, NO_LABELS, champion_version=1, estimate={"method": "dle", "other": 1.0}),
        PolicyState(),
    )

    assert with_estimate.signals.estimated_value == 12.5 and with_estimate.signals.estimate_method == "dle"
    assert other_metric.signals.estimated_value is None


def test_assess_leaves_the_state_it_was_given_and_returns_the_next_one(bikeshare_cfg):
    drifted = {**QUIET, "prediction_drift": 0.9}
    before = PolicyState()
    snapshot = before.to_dict()

    first = assess(bikeshare_cfg, Evidence(drifted, NO_LABELS, champion_version=1), before)
    again = assess(bikeshare_cfg, Evidence(drifted, NO_LABELS, champion_version=1), before)
    after = assess(bikeshare_cfg, Evidence(drifted, NO_LABELS, champion_version=1), first.state)

    assert before.to_dict() == snapshot  # pure: the caller's state is not changed
    assert first.decision.retrain and "prediction_drift" in first.decision.fired
    assert again.decision == first.decision and again.state.to_dict() == first.state.to_dict()
    assert first.state.to_dict() != snapshot  # the request is remembered: the next step starts from it
    assert after.decision.verdict == ("suppressed" if bikeshare_cfg.triggers.cooldown_batches else "retrain")
