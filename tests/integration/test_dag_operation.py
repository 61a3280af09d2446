"""DAG wiring that real operation relies on: archive before the retrain request, and one invalid model
config affecting only its own model (real DagBag parse of ``dags/``)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


def test_the_batch_is_archived_before_the_retrain_request(airflow_env: Path) -> None:
    from devtools import harness

    dag = harness.get_dag("bikeshare__monitor")
    request = dag.get_task("request_retrain")

    assert "archive_batch" in request.upstream_task_ids
    assert "request_retrain" not in dag.get_task("archive_batch").upstream_task_ids


def test_a_retrain_requested_by_a_batch_refuses_to_snapshot_without_it(
    tmp_path, monkeypatch, bikeshare_cfg, bikeshare_weeks
):
    import pandas as pd

    from retrainer.stages import retrain
    from retrainer.storage import DataRoot

    monkeypatch.setenv("RETRAINER_DATA_ROOT", str(tmp_path / "data"))
    dr = DataRoot(tmp_path / "data", "bikeshare").ensure()
    dr.import_batch(
        pd.concat([w for _, w in bikeshare_weeks[:6]]), "2011-01-history.parquet", stage="archive"
    )
    trigger = retrain.resolve_trigger(
        "asset_triggered",
        [{"extra": {"reasons": ["drift"], "batch": "2011-02-12.parquet"}}] * 2,  # a duplicate event too
        {},
    )

    with pytest.raises(LookupError, match=r"2011-02-12\.parquet"):
        retrain.snapshot(bikeshare_cfg, None, trigger["batches"])
    dr.import_batch(bikeshare_weeks[6][1], "2011-02-12.parquet", stage="archive")
    snap = retrain.snapshot(bikeshare_cfg, None, trigger["batches"])

    assert trigger["batches"] == ["2011-02-12.parquet"] and trigger["reasons"] == ["drift"]
    assert "2011-02-12.parquet" in snap["sources"]


def test_one_invalid_config_affects_only_its_own_model(airflow_env: Path, tmp_path: Path) -> None:
    from airflow.dag_processing.dagbag import DagBag

    from retrainer import overview

    configs = tmp_path / "models"
    configs.mkdir()
    shutil.copy(REPO / "include" / "models" / "bikeshare.yaml", configs / "bikeshare.yaml")
    (configs / "broken.yaml").write_text("name: broken\ntask: regression\nunknown_key: 1\n")
    old = os.environ["RETRAINER_CONFIG_DIR"]
    os.environ["RETRAINER_CONFIG_DIR"] = str(configs)
    try:
        bag = DagBag(dag_folder=str(REPO / "dags"), include_examples=False)
        rows = {r["name"]: r for r in overview.overview()}
    finally:
        os.environ["RETRAINER_CONFIG_DIR"] = old

    assert bag.import_errors == {}
    assert {"bikeshare__monitor", "bikeshare__retrain", "bikeshare__rollback"} <= set(bag.dag_ids)
    broken = bag.dags["broken__invalid_config"]
    assert "unknown key 'unknown_key'" in broken.doc_md and "broken.yaml" in broken.doc_md
    assert "INVALID CONFIG" in broken.description
    assert rows["bikeshare"]["config_error"] is None
    assert "unknown_key" in rows["broken"]["config_error"]
