"""`retrainer retrain`, `retrainer check` and `retrainer gc` through the command line, on real MLflow and
GX; gc is followed by `retrainer reproduce` of every registered version."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from retrainer import cli
from retrainer.storage import DataRoot
from retrainer.tracking import runs as tracking

pytestmark = pytest.mark.unit
REPO = Path(__file__).resolve().parents[2]


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    capsys.readouterr()
    code = cli.main(list(argv))
    return code, capsys.readouterr().out


@pytest.fixture(scope="module")
def env(tmp_path_factory, point_state):
    mp = pytest.MonkeyPatch()
    folder = tmp_path_factory.mktemp("cli")
    point_state(mp, folder)
    # the shipped config with a tight retention: archive kept only for the training window (8W)
    raw = yaml.safe_load((REPO / "include" / "models" / "bikeshare.yaml").read_text())
    raw["retention"] = {
        "archive": "1W",
        "label_wait": "20W",
        "snapshots": "1H",
        "reports": "1H",
        "predictions": "1H",
    }
    configs = folder / "models"
    configs.mkdir()
    (configs / "bikeshare.yaml").write_text(yaml.safe_dump(raw))
    mp.setenv("RETRAINER_CONFIG_DIR", str(configs))
    yield folder, configs / "bikeshare.yaml"
    mp.undo()


@pytest.fixture(scope="module")
def retrained(env, bikeshare_weeks):
    """Fourteen archived weeks (the third still waits for half its labels); `retrainer retrain` twice
    (the second after two more weeks)."""
    folder, config = env
    dr = DataRoot(folder / "data", "bikeshare").ensure()
    for i, (start, week) in enumerate(bikeshare_weeks[:12]):
        if i == 2:
            week = week.assign(bikers=week["bikers"].where(week.index % 2 == 0))
        dr.import_batch(week, f"{start}.parquet", stage="archive")
    first = cli.main(["retrain", str(config), "--json", "--reason", "first"])
    for start, week in bikeshare_weeks[12:14]:
        dr.import_batch(week, f"{start}.parquet", stage="archive")
    second = cli.main(["retrain", str(config), "--json", "--force", "--reason", "two more weeks"])
    return dr, config, first, second


def test_retrain_registers_and_logs_the_snapshot_by_reference(retrained, capsys):
    dr, config, first, second = retrained

    assert (first, second) == (0, 0)
    c = tracking.client()
    versions = sorted(int(v.version) for v in c.search_model_versions("name = 'bikeshare'"))
    assert versions == [1, 2]
    mv = c.get_model_version("bikeshare", "2")
    run = c.get_run(mv.run_id)
    (inp,) = run.inputs.dataset_inputs
    sha = mv.tags["retrainer.snapshot_sha256"]
    assert inp.dataset.digest == sha[:32]
    profile = json.loads(inp.dataset.profile)
    manifest = json.loads((dr.snapshots / sha / "manifest.json").read_text())
    assert profile["num_rows"] == manifest["rows"] and profile["sha256"] == sha
    schema = json.loads(inp.dataset.schema)["mlflow_colspec"]
    assert [c["name"] for c in schema] == list(manifest["schema"])
    assert "snapshot_sample.csv" in [a.path for a in c.list_artifacts(mv.run_id)]

    # a re-run of the same retrain (same snapshot, same config) reuses the run and registers nothing
    code, out = run_cli(capsys, "retrain", str(config), "--json", "--force")
    again = json.loads(out)
    assert code == 1 and again["train"]["reused"] is True and again["registered"] is None
    assert len(c.search_model_versions("name = 'bikeshare'")) == 2


def test_check_reports_without_moving_or_recording(retrained, bikeshare_weeks, tmp_path, capsys):
    dr, config, *_ = retrained
    _, week = bikeshare_weeks[20]
    good = tmp_path / "week.parquet"
    week.to_parquet(good, index=False)
    bad = tmp_path / "broken.csv"
    week.assign(hum="n/a").to_csv(bad, index=False)

    code, out = run_cli(capsys, "check", str(config), str(good), "--json")

    result = json.loads(out)
    assert code == 0 and result["gate"]["passed"] is True
    assert result["champion_version"] == 2 and result["rows"] == len(week)
    assert result["verdict"] in {"retrain", "no_retrain", "suppressed"} or result["verdict"]
    assert result["drift"]["prediction_drift"] is not None
    assert result["performance"]["labelled_rows"] == len(week)
    assert good.exists() and not list(dr.landing.iterdir()) and not list(dr.quarantine.iterdir())
    assert tracking.find_runs("bikeshare", "monitor") == []  # the decision log is untouched

    code, out = run_cli(capsys, "check", str(config), str(bad))

    assert code == 1
    assert "quality gate: FAILED" in out and "column 'hum'" in out
    assert bad.exists() and not list(dr.quarantine.iterdir())


def test_gc_keeps_what_reproduce_needs(retrained, bikeshare_weeks, capsys):
    from retrainer.config import load_config
    from retrainer.stages import retrain

    dr, config, *_ = retrained
    c = tracking.client()
    versions = c.search_model_versions("name = 'bikeshare'")
    registered = {v.tags["retrainer.snapshot_sha256"] for v in versions}
    stray = retrain.snapshot(load_config(config), "3W")["sha256"]  # a snapshot no version was trained on
    assert stray not in registered
    in_flight = dr.import_batch(bikeshare_weeks[30][1], "2011-08-06.parquet", stage="processing")
    old = time.time() - 2 * 3600
    for p in [*dr.snapshots.iterdir(), *dr.reports.rglob("*"), *dr.predictions.iterdir()]:
        os.utime(p, (old, old))  # everything looks two hours old: past every age limit in the config
    newest_row = {p.name: pd.read_parquet(p)["timestamp"].max() for p in dr.archived()}
    # measured from the second-newest batch's newest row (one row or batch stamped far ahead cannot move
    # it); training.window 8W > retention 1W
    anchor = sorted(newest_row.values())[-2]
    window_start = anchor - pd.Timedelta("56D")

    code, out = run_cli(capsys, "gc", "bikeshare", "--dry-run", "--json")

    plan = json.loads(out)
    assert code == 0 and plan["dry_run"] is True
    assert stray in {p.name for p in dr.snapshots.iterdir()}  # a dry run removes nothing

    code, out = run_cli(capsys, "gc", "bikeshare", "--json")

    done = json.loads(out)
    assert code == 0 and done["remove"] == plan["remove"]  # the dry run listed exactly what gc removed
    assert {p.name for p in dr.snapshots.iterdir()} == registered  # registered kept, the stray one gone
    kept = {p.name for p in dr.archived()}
    pending = f"{bikeshare_weeks[2][0]}.parquet"  # outside the window, but its labels may still come
    assert kept == {n for n, t in newest_row.items() if t > window_start} | {pending}
    assert 0 < len(kept) < len(newest_row)
    assert in_flight.exists()  # processing is never touched

    for v in versions:  # every registered version still reproduces bit for bit
        code, out = run_cli(capsys, "reproduce", "bikeshare", str(v.version), "--json")
        assert code == 0 and json.loads(out)["match"] is True, out

    # the next snapshot of the same window is still the registered one: gc kept every row it needs
    code, out = run_cli(capsys, "retrain", str(config), "--json", "--force")
    assert (
        json.loads(out)["snapshot"]["sha256"]
        == c.get_model_version("bikeshare", "2").tags["retrainer.snapshot_sha256"]
    )
