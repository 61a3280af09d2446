"""The monitor's decide task runs the shared policy step and persists its state between runs in MLflow."""

from __future__ import annotations

import pytest

from retrainer import monitor

pytestmark = pytest.mark.unit


def _decide(cfg, n, *, drift):
    claim = {"batch": f"2011-03-{n:02d}.parquet", "sha256": f"{n:064x}"}
    return monitor.decide(
        cfg,
        claim,
        {"rows": 168},
        {"champion_version": 1, "predictions": None},
        {"data_drift_share": 0.0, "drifted_columns": [], "prediction_drift": drift},
        {"metric": "rmse", "value": None, "reference": None, "labelled_rows": 0},
        {"flagged_rate": None},
        run_id=f"run-{n}",
    )


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
    stored = monitor.policy_state(cfg)
    assert stored.batches_since_request == 1 and stored.follow_up_due is False
