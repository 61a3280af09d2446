"""Decision records without data, for the tests of the policy state the monitor keeps in MLflow."""

from __future__ import annotations

from typing import Any

T0_MS = 1_300_000_000_000  # 2011: older than every real run


def old_decisions(cfg: Any, n: int) -> None:
    """``n`` decision runs older than anything real (what months of hourly batches leave behind): tags only,
    no state artifact."""
    from retrainer.tracking import runs as tracking

    c = tracking.client()
    exp = tracking.experiment_id(cfg.name, "monitor")
    for i in range(n):
        run = c.create_run(
            exp,
            start_time=T0_MS + i,
            tags={
                "retrainer.kind": "monitor",
                "retrainer.batch": f"old-{i:05d}.parquet",
                "retrainer.batch_sha256": f"f{i:063x}",
                "retrainer.verdict": "no_retrain",
                "retrainer.policy_state": "1",
            },
            run_name=f"old-{i:05d}.parquet",
        )
        c.set_terminated(run.info.run_id)


def decide(
    cfg: Any, batch: str, sha: str, drift: float, run_id: str, *, claimed: bool = False
) -> dict[str, Any]:
    """The monitor's decide task on a batch whose only signal is ``drift`` (prediction drift), with champion
    v1 and no labels; ``claimed`` records ``run_id`` in the claim too (as a real claim does)."""
    from retrainer.stages import monitor

    claim = {"batch": batch, "sha256": sha, **({"run_id": run_id} if claimed else {})}
    return monitor.decide(
        cfg,
        claim,
        {"rows": 168},
        {"champion_version": 1, "predictions": None},
        {"data_drift_share": 0.0, "drifted_columns": [], "prediction_drift": drift},
        {"metric": "rmse", "value": None, "reference": None, "labelled_rows": 0},
        {"flagged_rate": None},
        run_id,
    )
