"""``dag.test()`` runs of the real DAGs, for the integration tests (``tests/integration/conftest.py`` sets up
Airflow once per session; each test module gets a store and models of its own from these helpers)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

if TYPE_CHECKING:
    import pandas as pd

    from retrainer.storage import DataRoot

REPO = Path(__file__).resolve().parents[2]
HISTORY_WEEKS = 6  # weeks of bikeshare the first champion trains on


def use_store(base: Path) -> None:
    """Point the data root, the MLflow store and the artifact root at ``base`` (for the rest of the module)."""
    os.environ["RETRAINER_DATA_ROOT"] = str(base / "data")
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{base / 'mlflow.db'}"
    os.environ["RETRAINER_ARTIFACT_ROOT"] = str(base / "mlartifacts")


def bikeshare_config(name: str) -> dict[str, Any]:
    """The shipped bikeshare config as a dict, renamed to ``name`` (tests then change what they test)."""
    raw = yaml.safe_load((REPO / "include" / "models" / "bikeshare.yaml").read_text())
    raw["name"] = name
    return raw


def write_config(folder: Path, raw: dict[str, Any]) -> Path:
    """Add (or replace) a model config in the session's config folder and re-parse the DAGs."""
    from devtools import harness

    path = folder / f"{raw['name']}.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    harness.reload_dags()
    return path


def seed_history(
    model: str,
    weeks: list[tuple[str, pd.DataFrame]],
    name: str = "2011-01-00-history.parquet",
    prepare: Any = None,
) -> DataRoot:
    """The model's data root with the first :data:`HISTORY_WEEKS` weeks archived as one batch (what the
    first retrain trains the champion on); ``prepare`` changes each week first (e.g. adds row ids)."""
    import pandas as pd

    from retrainer import settings
    from retrainer.storage import DataRoot

    dr = DataRoot(settings.data_root(), model).ensure()
    history = pd.concat([prepare(w) if prepare else w for _, w in weeks[:HISTORY_WEEKS]])
    dr.import_batch(history, name, stage="archive")
    return dr


def run(dag_id: str, conf: dict[str, Any] | None = None, logical_date: Any = None) -> dict[str, Any]:
    """One run of the DAG under ``dag.test()``: state, run id, task states."""
    from devtools import harness

    return harness.run_dag(dag_id, conf, logical_date=logical_date)


def xcom(res: dict[str, Any], task_id: str) -> Any:
    """What ``task_id`` returned in the run ``res``."""
    from devtools import harness

    return harness.xcom(res["dag_id"], res["run_id"], task_id)
