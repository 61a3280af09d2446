"""A team's own model through the real DAGs (``dag.test()``, real MLflow, GX and Evidently): a LightGBM
classifier, an XGBoost regressor and the example package's pipeline with its own metric, each from the
first champion to a promoted retrain, scored by the monitor with a performance estimate (CBPE / DLE)
recorded, and reproduced bit for bit."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from tests.support import dags, own_models
from tests.support.dags import run, xcom

if TYPE_CHECKING:
    from pathlib import Path

    import pandas as pd

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def store(airflow_env: Path) -> Path:
    own_models.use_example_package()  # a worker with the team's package installed
    dags.use_store(airflow_env / "own_models")
    return airflow_env


def _decision_json(run_id: str) -> dict[str, Any]:
    import mlflow.artifacts

    from retrainer.tracking.runs import client

    client()
    return mlflow.artifacts.load_dict(f"runs:/{run_id}/decision.json")


@pytest.mark.parametrize(
    ("kind", "method", "metric"),
    [("lightgbm", "cbpe", "f1"), ("xgboost", "dle", "rmse"), ("pipeline", "dle", "shortage_cost")],
)
def test_first_champion_to_promoted_retrain_and_reproduce(
    kind: str,
    method: str,
    metric: str,
    store: Path,
    bikeshare_weeks: list[tuple[str, pd.DataFrame]],
) -> None:
    from retrainer.stages.reproduce import reproduce
    from retrainer.tracking import registry

    raw = own_models.config(kind)
    name = raw["name"]
    dags.write_config(store / "models", raw)
    dr = dags.seed_history(name, bikeshare_weeks, prepare=own_models.with_busy)

    first = run(f"{name}__retrain", {"reason": "initial champion"})

    assert first["state"] == "success", first
    assert xcom(first, "evaluate")["passed"] is True
    champ = registry.champion(name)
    assert champ is not None and champ.version == 1

    week_name, week = bikeshare_weeks[dags.HISTORY_WEEKS]
    dr.import_batch(own_models.with_busy(week), f"{week_name}.parquet")
    monitor = run(f"{name}__monitor")

    assert monitor["state"] == "success", monitor
    assert xcom(monitor, "score_batch")["champion_version"] == 1
    decision = _decision_json(xcom(monitor, "decide")["mlflow_run_id"])
    assert decision["performance"]["metric"] == metric
    assert decision["performance"]["value"] is not None  # the batch carried its labels
    estimate = decision["estimate"]
    assert estimate["method"] == method, estimate
    estimated = "f1" if kind == "lightgbm" else "rmse"  # a metric of your own is not estimated
    assert estimate[estimated] > 0

    retrain = run(f"{name}__retrain", {"reason": "new data"})

    assert retrain["state"] == "success", retrain
    ev = xcom(retrain, "evaluate")
    assert ev["passed"] is True, ev
    assert metric in ev["candidate"]
    assert registry.champion(name).version == 2  # type: ignore[union-attr]

    again = reproduce(name, 2)

    assert again["predictions_match"] is True, again
    assert again["match"] is True, again["metrics"]
