"""Late labels through the real monitor and retrain DAGs (``dag.test()``, real MLflow, GX, Evidently).

A copy of bikeshare with a row id (``bikefeeds``): a batch arrives without labels (no performance signal),
its labels arrive later as a file in ``landing/bikefeeds/labels/`` (and flags in ``.../flags/``), the next
monitor run scores that batch's stored predictions with them and records how late they came (the flags
count towards that batch), and the next retrain trains on those rows (a new snapshot hash). ``windspeed``
is nullable and entirely empty in the second batch (a sensor outage): the model imputes it, and the drift
step reports it as "no data". The retrain is started as the scheduler would start it on the asset
(``dag.test()`` does not run asset-triggered runs itself).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.support import dags
from tests.support.dags import run, xcom

if TYPE_CHECKING:
    import pandas as pd

pytestmark = pytest.mark.integration

NAME = "bikefeeds"


def with_ids(week: pd.DataFrame) -> pd.DataFrame:
    return week.assign(row_id=week["timestamp"].dt.strftime("h%Y%m%d%H"))


@pytest.fixture(scope="module")
def world(airflow_env: Path, bikeshare_weeks: list[tuple[str, pd.DataFrame]]) -> Any:
    from devtools import harness

    dags.use_store(airflow_env / "feeds")
    raw = dags.bikeshare_config(NAME)
    raw["data"]["id_column"] = "row_id"
    for f in raw["data"]["features"]:  # a sensor that may fail: nullable, so the model imputes it
        if f["name"] == "windspeed":
            f["nullable"] = True
    path = dags.write_config(airflow_env / "models", raw)
    dr = dags.seed_history(NAME, bikeshare_weeks, prepare=with_ids)
    yield {"dr": dr, "weeks": bikeshare_weeks, "state": {}}
    path.unlink()
    harness.reload_dags()


def test_01_champion_and_an_unlabelled_batch(world: dict[str, Any]) -> None:
    first = run(f"{NAME}__retrain", {"reason": "initial champion"})
    assert first["state"] == "success", first
    world["state"]["snapshot"] = xcom(first, "snapshot")

    name, week = world["weeks"][6]
    world["dr"].import_batch(with_ids(week).drop(columns=["bikers"]), f"{name}.parquet")
    res = run(f"{NAME}__monitor")

    assert res["state"] == "success", res
    assert res["tasks"]["ingest_feeds"]["state"] == "success"
    perf = xcom(res, "performance")
    assert perf["labelled_rows"] == 0 and perf["value"] is None  # no labels yet: no performance signal
    assert "performance" not in " ".join(xcom(res, "decide")["reasons"])
    world["state"]["late_batch"] = (f"{name}.parquet", week)


def test_02_late_labels_score_the_earlier_batch(world: dict[str, Any]) -> None:
    from retrainer.tracking import runs as tracking

    dr = world["dr"]
    batch, week = world["state"]["late_batch"]
    labels = with_ids(week)[["row_id", "bikers"]]
    (dr.landing / "labels").mkdir(parents=True, exist_ok=True)
    tmp = dr.landing / "labels" / ".labels-week7.csv.tmp"
    labels.to_csv(tmp, index=False)
    tmp.rename(dr.landing / "labels" / "labels-week7.csv")  # the delivery contract: rename in
    (dr.landing / "flags").mkdir(parents=True, exist_ok=True)
    flagged = with_ids(week)[["row_id"]].iloc[:20].assign(reason="far too low")
    flagged.to_csv(dr.landing / "flags" / ".flags-week7.csv.part", index=False)
    (dr.landing / "flags" / ".flags-week7.csv.part").rename(dr.landing / "flags" / "flags-week7.csv")
    name, nxt = world["weeks"][7]
    outage = with_ids(nxt).drop(columns=["bikers"]).assign(windspeed=float("nan"))  # sensor down all week
    dr.import_batch(outage, f"{name}.parquet")

    res = run(f"{NAME}__monitor")

    assert res["state"] == "success", res
    drift = xcom(res, "drift_report")  # the empty column is "no data", not a crash and not drift
    assert drift["no_data_columns"] == ["windspeed"] and "windspeed" not in drift["drifted_columns"]
    assert drift["column_drift"]["windspeed"] is None
    fed = xcom(res, "ingest_feeds")
    assert [d["file"] for d in fed["labels"]["ingested"]] == ["labels-week7.csv"]
    perf = xcom(res, "performance")
    assert perf["labelled_rows"] == len(week) and perf["value"] is not None
    assert perf["late_labelled_rows"] == len(week)
    [late] = perf["late_labels"]
    assert late["batch"] == batch and late["rows"] == len(week)
    assert late["batches_late"] == 1 and late["hours_late"] >= 0 and late["predicted_by"] == "v1"
    assert (dr.archive / "labels" / "labels-week7.csv").exists()
    flags = xcom(res, "flagged_rate")  # late flags count towards the batch they refer to
    assert flags["flagged_batches"] == [
        {
            "batch": batch,
            "new_flags": 20,
            "flagged": 20,
            "rows": len(week),
            "rate": 20 / len(week),
            "batches_late": 1,
        }
    ]
    assert flags["flagged_rate"] == 20 / len(week)
    # recorded in the decision log
    run_id = xcom(res, "decide")["mlflow_run_id"]
    record = tracking.client().get_run(run_id)
    assert record.data.metrics["late_labelled_rows"] == len(week)
    assert json.loads(record.data.tags["retrainer.no_data_columns"]) == ["windspeed"]
    import mlflow

    decision = mlflow.artifacts.load_dict(f"{record.info.artifact_uri}/decision.json")
    assert decision["performance"]["late_labels"][0]["batch"] == batch


def test_03_retrain_trains_on_the_late_labelled_rows(world: dict[str, Any]) -> None:
    batch, week = world["state"]["late_batch"]
    before = world["state"]["snapshot"]

    res = run(f"{NAME}__retrain", {"trigger_source": "asset", "reason": "late labels"})

    assert res["state"] == "success", res
    snap = xcom(res, "snapshot")
    assert snap["sha256"] != before["sha256"] and snap["created"] is True
    assert snap["rows"] == before["rows"] + len(week)
    manifest = json.loads((Path(snap["path"]) / "manifest.json").read_text())
    assert batch in manifest["source_batches"]
