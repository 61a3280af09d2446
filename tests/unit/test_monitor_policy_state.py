"""The monitor's decide task runs the shared policy step and persists its state between runs in MLflow."""

from __future__ import annotations

import pytest

from retrainer.stages import monitor
from retrainer.stages.decisions import policy_state
from retrainer.tracking import policy_state as store
from tests.support import decisions

pytestmark = pytest.mark.unit


def _decide(cfg, n, *, drift):
    return decisions.decide(cfg, f"2011-03-{n:02d}.parquet", f"{n:064x}", drift, f"run-{n}")


def test_follow_up_and_cooldown_survive_between_monitor_runs(state, bikeshare_cfg):
    cfg = bikeshare_cfg.model_copy(
        update={
            "triggers": bikeshare_cfg.triggers.model_copy(
                update={"follow_up_refit": True, "cooldown_batches": 2, "hysteresis_batches": 1}
            )
        }
    )
    first = _decide(cfg, 1, drift=0.9)
    follow = _decide(cfg, 2, drift=0.0)  # quiet, but the follow-up refit is due
    cooled = _decide(cfg, 3, drift=0.9)
    rerun = _decide(cfg, 3, drift=0.9)  # a re-run of the same batch sees the same state

    assert first["verdict"] == "retrain" and "prediction_drift" in first["fired"]
    assert follow["verdict"] == "retrain" and follow["fired"] == ["follow_up"]
    assert cooled["verdict"] == "suppressed" and "cooldown" in cooled["suppressed_by"]
    assert rerun["verdict"] == cooled["verdict"] and rerun["mlflow_run_id"] == cooled["mlflow_run_id"]
    stored = policy_state(cfg)
    assert stored.batches_since_request == 1 and stored.follow_up_due is False


def test_river_detector_state_is_fed_by_the_batch_errors_and_persisted(state, bikeshare_cfg, bikeshare_weeks):
    import numpy as np
    import pandas as pd

    cfg = bikeshare_cfg.model_copy(
        update={"triggers": bikeshare_cfg.triggers.model_copy(update={"error_detector": {"method": "adwin"}})}
    )
    cfg = cfg.model_validate(cfg.model_dump())  # the override goes through validation
    dr = monitor.root(cfg).ensure()
    widths = []
    for n, (name, week) in enumerate(bikeshare_weeks[:2], start=1):
        dr.import_batch(week, f"{name}.parquet")
        claim = monitor.claim_batch(cfg, f"run-{n}")
        preds = dr.predictions / f"{name}.v1.parquet"
        pd.DataFrame({"prediction": week["bikers"].to_numpy() + np.arange(len(week)) % 7}).to_parquet(preds)
        monitor.decide(
            cfg,
            claim,
            {"rows": len(week)},
            {"champion_version": 1, "predictions": str(preds)},
            {"data_drift_share": 0.0, "drifted_columns": [], "prediction_drift": 0.0},
            {"metric": "rmse", "value": None, "reference": None, "labelled_rows": 0},
            {"flagged_rate": None},
            run_id=f"run-{n}",
        )
        monitor.archive_batch(cfg, claim)
        widths.append(policy_state(cfg).detector.width)

    assert widths == [len(bikeshare_weeks[0][1]), len(bikeshare_weeks[0][1]) + len(bikeshare_weeks[1][1])]
    assert policy_state(cfg).detector_model == "v1"


def test_a_retried_decide_after_a_failed_head_write_leaves_the_state_of_one_clean_run(
    state, bikeshare_cfg, monkeypatch
):
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    def cfg_named(name):
        t = bikeshare_cfg.triggers.model_copy(update={"cooldown_batches": 3, "hysteresis_batches": 0})
        return bikeshare_cfg.model_copy(update={"name": name, "triggers": t})

    clean, faulty = cfg_named("clean"), cfg_named("faulty")
    drift = [0.0, 0.9, 0.9, 0.9, 0.9, 0.9]
    clean_runs = [_decide(clean, n, drift=d)["verdict"] for n, d in enumerate(drift, start=1)]

    real_set_tag = MlflowClient.set_experiment_tag
    failures = []

    def head_write_fails_once(
        self, experiment_id, key, value
    ):  # fault injection: the tracking store drops out
        if key == store.HEAD_TAG and not failures:
            failures.append(key)
            raise MlflowException("connection reset while writing the policy head")
        return real_set_tag(self, experiment_id, key, value)

    faulty_runs = [_decide(faulty, 1, drift=drift[0])["verdict"]]
    monkeypatch.setattr(MlflowClient, "set_experiment_tag", head_write_fails_once)
    with pytest.raises(MlflowException):
        _decide(faulty, 2, drift=drift[1])
    faulty_runs.append(_decide(faulty, 2, drift=drift[1])["verdict"])  # the retry Airflow makes
    faulty_runs += [_decide(faulty, n, drift=d)["verdict"] for n, d in enumerate(drift[2:], start=3)]

    assert failures, "the head write never failed: the test injected nothing"
    assert clean_runs == ["no_retrain", "retrain", "suppressed", "suppressed", "suppressed", "retrain"]
    assert faulty_runs == clean_runs
    strip = {"run_id", "prev"}
    head_clean, head_faulty = store.policy_head(clean.name), store.policy_head(faulty.name)
    assert {k: v for k, v in head_faulty.items() if k not in strip} == {
        k: v for k, v in head_clean.items() if k not in strip
    }
    assert head_faulty["decisions"] == 6 and head_faulty["retrain_requests"] == 2
    assert policy_state(faulty).to_dict() == policy_state(clean).to_dict()
