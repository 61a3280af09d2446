"""Model configs that bring their own model, for the tests: a LightGBM classifier, an XGBoost regressor
and the example package's pipeline (``examples/acme_models``) with its own metric, all on Bikeshare.

The example package is imported from its folder (``sys.path``), as a team's package on the workers' path
would be; :func:`use_example_package` puts it there."""

from __future__ import annotations

import copy
import sys
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
EXAMPLE_PACKAGE = REPO / "examples" / "acme_models"
BUSY = 100  # the classification target: more than this many bikers in the hour

# Seeded and single-threaded: what `retrainer reproduce` needs to refit bit for bit.
LIGHTGBM = {
    "estimator": "lightgbm.LGBMClassifier",
    "params": {
        "n_estimators": 60,
        "learning_rate": 0.1,
        "num_leaves": 15,
        "random_state": 0,
        "deterministic": True,
        "force_row_wise": True,
        "verbose": -1,
    },
    "scale_numeric": False,
}
XGBOOST = {
    "estimator": "xgboost.XGBRegressor",
    "params": {
        "n_estimators": 80,
        "max_depth": 6,
        "learning_rate": 0.1,
        "tree_method": "hist",
        "random_state": 0,
    },
    "scale_numeric": False,
}
PIPELINE = {
    "pipeline": "acme_models.factories:bikes",
    "params": {"max_iter": 100, "random_state": 0},
    "trusted_modules": ["acme_models"],
}
SHORTAGE_COST = {
    "metric": "acme_models.metrics:shortage_cost",
    "greater_is_better": False,
    "max_degradation": 0.0,
}


def use_example_package() -> None:
    """Make ``acme_models`` importable (what installing it on a worker does)."""
    if str(EXAMPLE_PACKAGE) not in sys.path:
        sys.path.insert(0, str(EXAMPLE_PACKAGE))


def with_busy(df: Any) -> Any:
    """Bikeshare rows with the classification target ``busy`` (0/1)."""
    return df.assign(busy=(df["bikers"] > BUSY).astype("int64"))


def config(kind: str, name: str | None = None) -> dict[str, Any]:
    """The shipped bikeshare config with the model of ``kind`` (``lightgbm``, ``xgboost``, ``pipeline``)."""
    raw = yaml.safe_load((REPO / "include" / "models" / "bikeshare.yaml").read_text())
    raw["name"] = name or f"own_{kind}"
    raw["model"] = copy.deepcopy({"lightgbm": LIGHTGBM, "xgboost": XGBOOST, "pipeline": PIPELINE}[kind])
    if kind == "lightgbm":
        raw["task"] = "classification"
        raw["data"]["target"] = "busy"
        raw["validation"] = {"metric": "f1", "max_degradation": 0.0}
    if kind == "pipeline":
        raw["validation"] = dict(SHORTAGE_COST)
    return raw
