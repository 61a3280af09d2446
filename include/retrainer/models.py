"""Loading and logging scikit-learn models with MLflow (skops serialisation, explicit requirements)."""

from __future__ import annotations

import functools
import os
from typing import TYPE_CHECKING, Any

from retrainer.tracking import client

if TYPE_CHECKING:
    import pandas as pd

PIP_REQUIREMENTS_PACKAGES = ("scikit-learn", "pandas", "numpy", "scipy", "skops")


@functools.cache
def _pip_requirements() -> list[str]:
    """Exact versions of what the model needs: passing them skips MLflow's 12-15 s inference."""
    from importlib.metadata import version

    return [f"{p}=={version(p)}" for p in PIP_REQUIREMENTS_PACKAGES]


def log_model(model: Any, example: pd.DataFrame) -> str:
    """Log ``model`` to the active run as ``model``; returns the model URI."""
    import mlflow.sklearn
    import skops.io
    from mlflow.models import infer_signature

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    example = example.head(5)
    signature = infer_signature(example, model.predict(example))
    # We trained this object ourselves in this process, so the types skops flags are ours to trust.
    trusted = skops.io.get_untrusted_types(data=skops.io.dumps(model))
    info = mlflow.sklearn.log_model(
        model,
        name="model",
        signature=signature,
        input_example=example,
        pip_requirements=_pip_requirements(),
        skops_trusted_types=trusted,
    )
    return info.model_uri


@functools.lru_cache(maxsize=8)
def load_run_model(run_id: str) -> Any:
    """The scikit-learn model logged by a run (cached per process: runs are immutable)."""
    import mlflow.sklearn

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    client()  # configure the tracking URI
    return mlflow.sklearn.load_model(f"runs:/{run_id}/model")
