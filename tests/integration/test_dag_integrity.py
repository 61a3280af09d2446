"""DAG integrity: every DAG file imports cleanly and quickly, with nothing heavy imported at parse time."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
HEAVY = ["pandas", "sklearn", "mlflow", "evidently", "great_expectations", "numpy", "scipy"]


def test_dagbag_has_both_dags_per_model_with_tags_and_retries(airflow_env: Path) -> None:
    from devtools import harness

    bag = harness.dagbag()

    assert bag.import_errors == {}
    assert {"bikeshare__monitor", "bikeshare__retrain"} <= set(bag.dag_ids)
    for dag in bag.dags.values():
        assert "retrainer" in dag.tags
        assert dag.doc_md, dag.dag_id
        assert dag.catchup is False
        for t in dag.tasks:
            assert t.retries >= 1, (dag.dag_id, t.task_id)
    retrain = bag.dags["bikeshare__retrain"]
    assert retrain.max_active_runs == 1
    assert set(retrain.params.keys()) >= {"force", "reason", "window"}
    assert "AssetOrTime" in type(retrain.timetable).__name__


@pytest.mark.parametrize("dag_file", sorted(p.name for p in (REPO / "dags").glob("*.py")))
def test_dag_file_parses_fast_without_heavy_imports(airflow_env: Path, dag_file: str) -> None:
    code = (
        "import sys, time, json, importlib.util\n"
        "import airflow.sdk\n"  # airflow itself is allowed; what the DAG file adds is what we measure
        "before = set(sys.modules)\n"
        "t = time.perf_counter()\n"
        f"spec = importlib.util.spec_from_file_location('dag_file', {str(REPO / 'dags' / dag_file)!r})\n"
        "mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)\n"
        "elapsed = time.perf_counter() - t\n"
        f"heavy = sorted(m for m in {HEAVY!r} if m in sys.modules and m not in before)\n"
        "print(json.dumps({'elapsed': elapsed, 'heavy': heavy}))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=os.environ.copy(), check=True
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])

    assert result["heavy"] == [], f"heavy modules imported at parse time: {result['heavy']}"
    # generous: 0.5-0.9 s on a busy 2-core machine; Airflow's limit is 30 s
    assert result["elapsed"] < 5.0, result


def test_bad_config_surfaces_in_its_own_invalid_config_dag(
    airflow_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bad = tmp_path / "models"
    bad.mkdir()
    (bad / "broken.yaml").write_text(
        (REPO / "include/models/bikeshare.yaml")
        .read_text()
        .replace("name: bikeshare", "name: broken")
        .replace("cooldown_batches", "cooldown_batchez")
    )
    monkeypatch.setenv("RETRAINER_CONFIG_DIR", str(bad))
    from devtools import harness

    bag = harness.dagbag()

    assert bag.import_errors == {}  # one bad file no longer takes every model's DAGs down
    message = bag.dags["broken__invalid_config"].doc_md
    assert "cooldown_batchez" in message and "broken.yaml" in message


def test_promotion_settings_add_the_watch_and_shadow_tasks(
    airflow_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import yaml

    from devtools import harness

    folder = tmp_path / "models"
    folder.mkdir()
    variants = {  # name: promotion settings
        "plain": {"mode": "immediate"},
        "guarded": {"mode": "immediate", "rollback_batches": 2},
        "shadowed": {"mode": "shadow"},
        "both": {"mode": "shadow", "rollback_batches": 2},
    }
    for name, promotion in variants.items():
        raw = yaml.safe_load((REPO / "include/models/bikeshare.yaml").read_text())
        raw["name"], raw["promotion"] = name, promotion
        (folder / f"{name}.yaml").write_text(yaml.safe_dump(raw))
    monkeypatch.setenv("RETRAINER_CONFIG_DIR", str(folder))

    bag = harness.dagbag()
    tasks = {name: set(bag.dags[f"{name}__monitor"].task_ids) for name in variants}

    assert not {"watch_champion", "shadow_score"} & tasks["plain"]
    assert "watch_champion" in tasks["guarded"] and "shadow_score" not in tasks["guarded"]
    assert "shadow_score" in tasks["shadowed"] and "watch_champion" not in tasks["shadowed"]
    both = bag.dags["both__monitor"]
    assert {"watch_champion", "shadow_score"} <= tasks["both"]
    # the challenger is compared with the champion the rollback watch left in place
    assert "watch_champion" in both.get_task("shadow_score").upstream_task_ids
    assert "decide" in both.get_task("watch_champion").upstream_task_ids


def test_a_task_process_builds_only_its_own_dag(airflow_env: Path, tmp_path: Path) -> None:
    """With many models, each task process builds one DAG, not every model's (Airflow's parsing context)."""
    models = tmp_path / "models"
    models.mkdir()
    text = (REPO / "include/models/bikeshare.yaml").read_text()
    for name in ("alpha", "beta", "gamma"):
        (models / f"{name}.yaml").write_text(text.replace("name: bikeshare", f"name: {name}"))
    code = (
        "import json, sys\n"
        "from airflow.dag_processing.dagbag import DagBag\n"
        "bag = DagBag(dag_folder=sys.argv[1], include_examples=False)\n"
        "print(json.dumps(sorted(bag.dag_ids)))\n"
    )

    def built(dag_id: str | None) -> list[str]:
        env = {**os.environ, "RETRAINER_CONFIG_DIR": str(models)}
        env.pop("_AIRFLOW_PARSING_CONTEXT_DAG_ID", None)
        if dag_id:
            env["_AIRFLOW_PARSING_CONTEXT_DAG_ID"] = dag_id
            env["_AIRFLOW_PARSING_CONTEXT_TASK_ID"] = "decide"
        out = subprocess.run(
            [sys.executable, "-c", code, str(REPO / "dags")],
            capture_output=True,
            text=True,
            env=env,
            check=True,
        )
        return json.loads(out.stdout.strip().splitlines()[-1])

    everything = built(None)
    assert {"alpha__monitor", "beta__retrain", "gamma__rollback"} <= set(everything)
    assert built("beta__monitor") == ["beta__monitor"]
