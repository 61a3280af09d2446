"""The Retraining view's pages escape every stored string by construction (Jinja2 autoescaping).

Hostile text is written where the view reads it from: the model config (description), MLflow run tags of
monitor and training runs (batch, verdict, reasons, suppression, trigger source, failed checks, run ids),
the registry's history tags (reason, who), and quarantine reason files (messages with category values).
The pages are rendered by the plugin's own functions and must show the text, escaped, with no live markup.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "plugins"))  # retrainer_view: rendering only, no Airflow imports
X = "<script>alert(1)</script>"
ESC = "&lt;script&gt;alert(1)&lt;/script&gt;"


@pytest.fixture
def hostile(state: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    from retrainer import settings
    from retrainer.storage import DataRoot
    from retrainer.tracking import registry
    from retrainer.tracking import runs as tracking

    raw = yaml.safe_load((REPO / "include" / "models" / "bikeshare.yaml").read_text())
    raw["description"] = f"Bikes {X}"
    cfg_dir = state / "models"
    cfg_dir.mkdir()
    (cfg_dir / "bikeshare.yaml").write_text(yaml.safe_dump(raw))
    monkeypatch.setenv("RETRAINER_CONFIG_DIR", str(cfg_dir))
    name = "bikeshare"
    c = tracking.client()
    t = tracking.TAG

    mon = c.create_experiment(f"retrainer/{name}/monitor")
    for verdict in ("retrain", "suppressed", X):
        run = c.create_run(mon, run_name=X)
        for k, v in {
            "kind": "monitor",
            "batch": f"2011-03-05{X}.parquet",
            "verdict": verdict,
            "reasons": json.dumps([f"season drifted: new category {X}", "rmse 34.01840569434635 > 30"]),
            "suppressed_by": f"cooldown {X}",
            "dag_run_id": f"manual__{X}",
            "champion_version": "1",
        }.items():
            c.set_tag(run.info.run_id, f"{t}{k}", v)
        c.log_metric(run.info.run_id, "data_drift_share", 0.4)
        c.set_terminated(run.info.run_id)
    trn = c.create_experiment(f"retrainer/{name}/train")
    run = c.create_run(trn, run_name=X)
    for k, v in {
        "trigger_source": X,
        "trigger_reasons": json.dumps([f"manual reason {X}"]),
        "outcome": "rejected",
        "validation": json.dumps({"failed_checks": [f"slice season={X} worse"]}),
        "dag_run_id": f"manual__2026-11-29T05:51:13.243611+00:00{X}",
    }.items():
        c.set_tag(run.info.run_id, f"{t}{k}", v)
    c.set_terminated(run.info.run_id)
    c.create_registered_model(name)
    registry.record_event(name, "promote", f"champion{X}", None, 1, f"approval: {X}", f"dag_run:{X}")
    dr = DataRoot(settings.data_root(), name).ensure()
    (dr.quarantine / "bad<script>alert(1)<.csv.reason.json").write_text(  # no "/" in a file name
        json.dumps({"message": f"column 'season' has unexpected values ['{X}']"})
    )
    return name


def _assert_escaped(page: str, min_count: int) -> None:
    assert "<script" not in page.lower(), "a stored string reached the page as markup"
    assert page.count(ESC) >= min_count, page.count(ESC)


def test_model_page_escapes_every_stored_string(hostile: str) -> None:
    import retrainer_view as plugin

    page = plugin.model_page(hostile)

    _assert_escaped(page, 10)
    for shown in (
        "Bikes ",  # config description
        "new category ",  # monitor reasons (category values)
        "cooldown ",  # suppression
        "manual reason ",  # retrain trigger reasons
        "slice season=",  # failed checks
        "approval: ",  # history reason
        "dag_run:",  # history: who
        "unexpected values [&#39;",  # quarantine message
    ):
        assert f"{shown}{ESC}" in page, shown
    assert "05:51:13.243611" in page  # a run id keeps its microseconds
    assert "34.02" in page  # long floats in reasons are shortened for reading


def test_stuck_batches_are_shown_escaped_when_the_read_model_has_them(hostile: str) -> None:
    import retrainer_view as plugin

    from retrainer import overview

    d = overview.model_detail(hostile)
    d["stuck"] = [{"batch": f"w{X}.csv", "since": "2026-11-29T05:00:00+00:00", "claimed_by": f"run{X}"}]
    d["summary"]["stuck"] = 1

    page = plugin.model_page(hostile, d)
    row = plugin.overview_page([d["summary"]])

    assert "Stuck batches" in page and f"w{ESC}.csv" in page and f"run{ESC}" in page
    assert "<script" not in page.lower() and "1 stuck in processing" in row


def test_overview_escapes_every_stored_string(hostile: str) -> None:
    import retrainer_view as plugin

    from retrainer import overview

    page = plugin.overview_page(overview.overview())

    _assert_escaped(page, 3)  # description, trigger source, reasons
    assert f"Bikes {ESC}" in page


def test_run_ids_are_not_shortened_like_numbers() -> None:
    import retrainer_view as plugin

    assert plugin.readable("by dag_run:manual__2026-11-29T05:51:13.243611+00:00") == (
        "by dag_run:manual__2026-11-29T05:51:13.243611+00:00"
    )
    assert plugin.readable("rmse 34.01840569434635 > 30.5") == "rmse 34.02 > 30.5"
    assert re.search(r"1\.235", plugin.readable("x 1.23456 y"))


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("mae 34.01840569434635 > 30", "mae 34.02 > 30"),
        ("mae +18.23456% > +10%", "mae +18.23% > +10%"),
        ("drift -0.123456, share 0.987654.", "drift -0.1235, share 0.9877."),
        ("p 1.234567e-05", "p 1.235e-05"),
        # identifiers are never numbers: run ids (the seconds of their time), hashes, versions
        (
            "dag_run:manual__2026-11-29T05:51:13.243611+00:00",
            "dag_run:manual__2026-11-29T05:51:13.243611+00:00",
        ),
        ("scheduled__2026-11-29 05:51:13.243611", "scheduled__2026-11-29 05:51:13.243611"),
        ("run ab12.345678cd of v1.2.34567", "run ab12.345678cd of v1.2.34567"),
        ("batch_2011.123456.parquet", "batch_2011.123456.parquet"),
    ],
)
def test_readable_shortens_only_real_numbers(text: str, shown: str) -> None:
    from retrainer_view import readable

    assert readable(text) == shown


def test_model_page_pairs_each_estimate_with_the_realised_metric_once_labels_arrive(
    state: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Labels two batches late: a batch's estimate is shown at once, its realised metric when its labels
    are scored (by a later step, whose ``scored_batches`` tag names it); stored text stays escaped."""
    import retrainer_view as plugin

    from retrainer import overview
    from retrainer.config import load_config
    from retrainer.tracking import runs as tracking

    cfg_dir = state / "models"
    cfg_dir.mkdir()
    (cfg_dir / "bikeshare.yaml").write_text((REPO / "include" / "models" / "bikeshare.yaml").read_text())
    monkeypatch.setenv("RETRAINER_CONFIG_DIR", str(cfg_dir))
    cfg = load_config(cfg_dir / "bikeshare.yaml")
    c, t = tracking.client(), tracking.TAG
    mon = c.create_experiment("retrainer/bikeshare/monitor")
    steps = [  # batch, estimate, realised metric of this step, batches whose labels it scored
        (f"w1{X}.parquet", 41.5, None, []),
        ("w2.parquet", 43.25, None, []),
        ("w3.parquet", 47.75, 52.125, [f"w1{X}.parquet"]),
    ]
    for batch, est, realised, scored in steps:
        run = c.create_run(mon, run_name=batch)
        tags = {
            "kind": "monitor",
            "batch": batch,
            "verdict": "no_retrain",
            "scored_batches": json.dumps(scored),
        }
        for k, v in tags.items():
            c.set_tag(run.info.run_id, f"{t}{k}", v)
        c.log_metric(run.info.run_id, f"estimated_{cfg.trigger_metric}", est)
        if realised is not None:
            c.log_metric(run.info.run_id, f"batch_{cfg.metric}", realised)
        c.set_terminated(run.info.run_id)

    checks = {ch["batch"]: ch for ch in overview.checks(cfg)}
    page = plugin.model_page("bikeshare")

    assert checks[f"w1{X}.parquet"]["estimate"] == 41.5 and checks[f"w1{X}.parquet"]["realised"] == 52.125
    assert checks["w2.parquet"]["realised"] is None and checks["w3.parquet"]["realised"] is None
    assert "Estimated · realised" in page
    assert "41.5 · 52.1" in page and "43.2 · labels pending" in page and "47.8 · labels pending" in page
    assert f"w1{ESC}.parquet" in page and "<script" not in page.lower()
