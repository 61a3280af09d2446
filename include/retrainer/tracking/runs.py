"""MLflow tracking: configured on first use (never at import), experiments per model and purpose.

Experiments: ``retrainer/<model>/monitor`` (one run per batch check, fired or not) and
``retrainer/<model>/train`` (one run per retrain attempt, registered or rejected).
"""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING, Any

from retrainer import settings

if TYPE_CHECKING:
    from collections.abc import Callable

    from mlflow.entities import Run
    from mlflow.tracking import MlflowClient

TAG = "retrainer."  # prefix of every tag we write


def _configure(uri: str) -> None:
    import mlflow

    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    if mlflow.get_tracking_uri() != uri:  # cheap; re-checked on every call so a changed env var takes effect
        mlflow.set_tracking_uri(uri)


def unique_race_retried(call: Callable[[], Any]) -> Any:
    """Run an MLflow write, retried when a writer racing it inserted the same row first.

    The SQL tracking store looks for an existing row, then inserts; two processes writing the same row at
    the same moment (two retrains of one batch: the same model-version tag, the same snapshot dataset)
    can both miss it and collide on the table's unique key. The loser's transaction is rolled back; its
    retry finds the row and updates or links it instead."""
    import time

    from mlflow.exceptions import MlflowException

    for attempt in range(3):
        try:
            return call()
        except MlflowException as e:
            if attempt == 2 or "unique" not in str(e).lower():
                raise
            time.sleep(0.2 * (attempt + 1))
    return None  # not reached


def client() -> MlflowClient:
    """An MLflow client on the configured tracking URI (sets the URI for the fluent API too)."""
    from mlflow.tracking import MlflowClient

    uri = settings.tracking_uri()
    _configure(uri)
    return MlflowClient(tracking_uri=uri)


def experiment_id(model: str, purpose: str) -> str:
    """Id of ``retrainer/<model>/<purpose>``, created with an explicit artifact location if missing."""
    c = client()
    name = f"retrainer/{model}/{purpose}"
    exp = c.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    location = None
    if not settings.tracking_uri().startswith("http"):
        location = f"{settings.artifact_root()}/{model}/{purpose}"
    try:
        return c.create_experiment(name, artifact_location=location, tags={f"{TAG}model": model})
    except Exception:  # a concurrent task created it first
        exp = c.get_experiment_by_name(name)
        if exp is None:
            raise
        return exp.experiment_id


def find_runs(
    model: str,
    purpose: str,
    filter_string: str = "",
    max_results: int = 1000,
    order_by: list[str] | None = None,
) -> list[Run]:
    c = client()
    return list(
        c.search_runs(
            [experiment_id(model, purpose)],
            filter_string=filter_string,
            max_results=max_results,
            order_by=order_by or ["attributes.start_time ASC"],
        )
    )


HOLDOUT = "holdout_"  # prefix of the metrics a training run logs on its holdout


def holdout_metrics(run: Any) -> dict[str, float]:
    """A training run's metrics on its holdout (logged as ``holdout_<metric>``), keyed by metric name."""
    return {k.removeprefix(HOLDOUT): v for k, v in run.data.metrics.items() if k.startswith(HOLDOUT)}


def flat_tags(prefix_dict: dict[str, Any]) -> dict[str, str]:
    """Our tags with the ``retrainer.`` prefix, values as strings (MLflow tags are strings)."""
    out = {}
    for k, v in prefix_dict.items():
        if v is None:
            continue
        out[f"{TAG}{k}"] = v if isinstance(v, str) else json_value(v)
    return out


def json_value(v: Any) -> str:
    """``v`` as the JSON text a tag holds (values JSON cannot encode as their ``str``)."""
    return json.dumps(v, default=str)


SAMPLE_ROWS = 100  # rows of a training snapshot logged as a readable sample


def _colspec_type(dtype: str) -> str:
    """MLflow's name for a pandas dtype (as written in a snapshot manifest)."""
    if dtype.startswith("datetime64"):
        return "datetime"
    if dtype in ("bool", "boolean"):
        return "boolean"
    if dtype.startswith(("int", "uint", "Int", "UInt")):
        return "long"
    if dtype.startswith(("float", "Float")):
        return "double"
    return "string"


def log_snapshot_input(
    name: str, snap: dict[str, Any], schema: dict[str, str], target: str, sample: Any
) -> None:
    """Log a training snapshot to the active run as an MLflow dataset input, by reference.

    What MLflow records is the snapshot's location, its sha256 (the digest MLflow shows), its row count
    and its schema (column -> dtype, from the snapshot's manifest), plus ``snapshot_sample.csv`` with a few
    rows. Nothing scans the data: ``mlflow.data.from_pandas`` would infer a schema cell by cell and hash
    the frame, which on a million rows costs minutes (the content hash is already the snapshot's name).
    """
    import mlflow
    from mlflow.data.dataset_source_registry import resolve_dataset_source
    from mlflow.data.meta_dataset import MetaDataset
    from mlflow.types import ColSpec, DataType, Schema

    class SnapshotDataset(MetaDataset):
        @property
        def profile(self) -> dict[str, Any]:
            return {"num_rows": int(snap["rows"]), "sha256": snap["sha256"], "targets": target}

        def to_dict(self) -> dict[str, str]:
            return {**super().to_dict(), "profile": json_value(self.profile)}

    mlschema = Schema([ColSpec(type=DataType[_colspec_type(t)], name=c) for c, t in schema.items()])
    dataset = SnapshotDataset(
        source=resolve_dataset_source(str(snap["path"])),
        name=name,
        digest=snap["sha256"][:32],  # MLflow keeps at most 36 characters; the full hash is in the profile
        schema=mlschema,
    )
    unique_race_retried(
        lambda: mlflow.log_input(dataset, context="training", tags={"sha256": snap["sha256"]})
    )
    mlflow.log_text(sample.to_csv(index=False), "snapshot_sample.csv")
