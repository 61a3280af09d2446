"""The dashboard read model (retrainer.overview) against a real MLflow SQLite store and data root.

One champion is trained and one drifted batch goes through the monitor stage functions (no Airflow);
then the read model must report exactly what those stages recorded.
"""

from __future__ import annotations

import pandas as pd
import pytest

from retrainer import overview, settings
from retrainer.stages import monitor
from retrainer.storage import DataRoot
from retrainer.tracking import runs as tracking
from tests.support.champion import train_first_champion

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def env(tmp_path_factory, point_state):
    tmp = tmp_path_factory.mktemp("overview")
    with pytest.MonkeyPatch.context() as mp:
        yield point_state(mp, tmp)


def test_empty_store_reads_without_creating_anything(env, bikeshare_cfg):
    row = overview.summary(bikeshare_cfg)

    assert row["champion"] is None and row["last_check"] is None and row["last_retrain"] is None
    assert row["drift_level"] == "unknown" and row["checks"] == 0
    assert tracking.client().get_experiment_by_name("retrainer/bikeshare/monitor") is None


@pytest.fixture(scope="module")
def lived(env, bikeshare_cfg, bikeshare_weeks):
    """First champion from 6 weeks of history, then the drifted 7th week through the monitor stages."""
    cfg = bikeshare_cfg
    dr = DataRoot(settings.data_root(), cfg.name)
    dr.import_batch(pd.concat([df for _, df in bikeshare_weeks[:6]]), "history.parquet", stage="archive")
    reg = train_first_champion(cfg)

    week, df = bikeshare_weeks[6]
    dr.import_batch(df, f"{week}.parquet")
    claim = monitor.claim_batch(cfg, "scheduled__m1")
    val = monitor.validate_batch(cfg, claim, "scheduled__m1")
    scored = monitor.score_batch(cfg, claim)
    drift = monitor.measure_drift(cfg, claim, scored)
    perf = monitor.performance(cfg, claim, scored)
    flags = monitor.flagged_rate(cfg, claim, val)
    decision = monitor.decide(cfg, claim, val, scored, drift, perf, flags, "scheduled__m1")
    monitor.archive_batch(cfg, claim)
    return {"batch": f"{week}.parquet", "decision": decision, "drift": drift, "version": reg["version"]}


def test_summary_reports_what_the_stages_recorded(lived, bikeshare_cfg):
    row = overview.summary(bikeshare_cfg)

    assert row["champion"]["version"] == lived["version"]
    assert row["champion"]["metric"] is not None and row["champion"]["since"]
    check = row["last_check"]
    assert check["batch"] == lived["batch"]
    assert check["verdict"] == lived["decision"]["verdict"] == "retrain"
    assert check["reasons"] == lived["decision"]["reasons"]
    assert check["data_drift_share"] == pytest.approx(lived["drift"]["data_drift_share"])
    assert check["dag_run_id"] == "scheduled__m1" and check["champion_version"] == lived["version"]
    assert row["drift_level"] == "high"  # 0.4 >= the config's share 0.3
    assert row["last_retrain"]["trigger_source"] == "manual"
    assert row["last_retrain"]["outcome"] == "validated"
    assert row["last_retrain"]["reasons"] == ["first champion"]
    assert row["retrain_requests"] == 1 and row["pending_batches"] == 0


def test_model_detail_links_reports_and_history(lived, bikeshare_cfg):
    d = overview.model_detail(bikeshare_cfg.name)

    assert [c["batch"] for c in d["checks"]] == [lived["batch"]]
    rel = d["checks"][0]["evidently"]
    assert rel and overview.data_file(rel).read_text().lstrip().lower().startswith("<")
    assert d["checks"][0]["gx_docs"] and overview.data_file(d["checks"][0]["gx_docs"]).exists()
    assert [v["version"] for v in d["versions"]] == [lived["version"]]
    assert d["versions"][0]["aliases"] == ["champion"]
    assert [h["to_version"] for h in d["history"]] == [lived["version"]]
    dd = bikeshare_cfg.triggers.data_drift  # recorded but not voting in the shipped config: no threshold line
    assert d["thresholds"]["data_drift_share"] == (dd.share if dd else None)
    assert d["thresholds"]["prediction_drift"] == bikeshare_cfg.triggers.prediction_drift.threshold


@pytest.mark.parametrize(
    "path", ["../mlflow.db", "archive/bikeshare/history.parquet", "reports/../../x", "reports"]
)
def test_data_file_serves_only_report_files(lived, path):
    with pytest.raises(FileNotFoundError):
        overview.data_file(path)


def test_overview_lists_every_configured_model(lived):
    names = [r["name"] for r in overview.overview()]
    assert names == sorted(p.stem for p in settings.config_dir().glob("*.yaml"))


def test_decision_log_pairs_the_estimate_with_the_realised_metric(lived, bikeshare_cfg):
    """Prompt labels: the batch's own step scored it, so its realised metric is the step's metric."""
    check = overview.model_detail(bikeshare_cfg.name)["checks"][0]
    run = tracking.client().get_run(check["mlflow_run_id"])

    assert check["estimate"] == run.data.metrics[f"estimated_{bikeshare_cfg.trigger_metric}"] > 0  # DLE
    assert check["scored_batches"] == [lived["batch"]]
    assert check["realised"] == check["metric"] == run.data.metrics[f"batch_{bikeshare_cfg.metric}"]


@pytest.mark.parametrize("raw", ["{not json", '["a", "list"]', '"a string"'])
def test_one_malformed_history_tag_is_skipped_not_fatal(lived, bikeshare_cfg, raw, caplog):
    c, name = tracking.client(), bikeshare_cfg.name
    key = f"{tracking.TAG}event.0000000000000000001-hand"  # sorts first: a hand-written or damaged tag
    c.set_registered_model_tag(name, key, raw)
    try:
        detail = overview.model_detail(name)
        row = next(r for r in overview.overview() if r["name"] == name)
    finally:
        c.delete_registered_model_tag(name, key)

    assert [h["to_version"] for h in detail["history"]] == [lived["version"]]
    assert row["champion"]["version"] == lived["version"]
    assert key in caplog.text and "skipped" in caplog.text
