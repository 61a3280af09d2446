"""Loading and logging models with MLflow: skops serialisation (no pickle), the types an artifact may name
computed from the config, explicit requirements."""

from __future__ import annotations

import functools
import os
from typing import TYPE_CHECKING, Any

from retrainer.config import BASE_TRUSTED, DataConfig, FeatureSpec
from retrainer.exceptions import ConfigError, RetrainerError
from retrainer.tracking.runs import client

if TYPE_CHECKING:
    from collections.abc import Iterable

    import pandas as pd

    from retrainer.config import ModelConfig

PIP_REQUIREMENTS_PACKAGES = ("scikit-learn", "pandas", "numpy", "scipy", "skops")
# the module a requirement installs, where it is not named like the package (skops, mlflow: the same)
REQUIREMENT_MODULES = {"scikit-learn": "sklearn", "pandas": "pandas", "numpy": "numpy", "scipy": "scipy"}
# distributions that may install a module named otherwise (tried in order); other modules: their own name
DISTRIBUTIONS = {"xgboost": ("xgboost", "xgboost-cpu"), "sklearn": ("scikit-learn",)}


@functools.cache
def _pip_requirements(modules: tuple[str, ...] = ()) -> list[str]:
    """Exact versions of what the model needs: passing them skips MLflow's 12-15 s inference. ``modules``
    adds the distributions installing those top-level modules (an estimator library, the team's package)
    where they are installed ones (a package only on the path has no version to pin)."""
    from importlib.metadata import PackageNotFoundError, version

    names = list(PIP_REQUIREMENTS_PACKAGES)
    for m in modules:
        for dist in DISTRIBUTIONS.get(m, (m,)):  # not packages_distributions(): it reads every RECORD (~10 s)
            try:
                version(dist)
            except PackageNotFoundError:
                continue
            if dist not in names and m not in REQUIREMENT_MODULES.values():
                names.append(dist)
            break
    return [f"{p}=={version(p)}" for p in names]


def _skip_environment_scan() -> None:
    """Spare MLflow's scan of every installed distribution when it checks our requirements.

    Before logging, MLflow checks the requirements it is given against the running environment (to warn
    of a mismatch) and first maps every installed distribution to its modules: about 1.5 s per process,
    paid by every retrain. Ours are read from this very environment (:func:`_pip_requirements`), so the
    check cannot fail; MLflow gets the map of just these packages. If MLflow's private map is gone or
    already built, nothing changes (the check then costs what it did).
    """
    from mlflow.utils import requirements_utils

    if getattr(requirements_utils, "_MODULES_TO_PACKAGES", "absent") is None:
        modules = {p: REQUIREMENT_MODULES.get(p, p) for p in (*PIP_REQUIREMENTS_PACKAGES, "mlflow")}
        requirements_utils._MODULES_TO_PACKAGES = {m: [p] for p, m in modules.items()}  # type: ignore[assignment]


def log_model(model: Any, example: pd.DataFrame, cfg: ModelConfig) -> str:
    """Log ``model`` to the active run as ``model``; returns the model URI.

    A model naming a type its config does not trust (:func:`untrusted`) is refused here, before it is
    registered: it could never be loaded again."""
    import mlflow.sklearn
    import skops.io
    from mlflow.models import infer_signature

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    example = example.head(5)
    signature = infer_signature(example, model.predict(example))
    # We trained this object ourselves in this process, so the types skops flags are ours to trust.
    trusted = skops.io.get_untrusted_types(data=skops.io.dumps(model))
    bad = untrusted(trusted, cfg.model.trusted)
    if bad:
        raise ConfigError(
            f"the fitted model of {cfg.name} contains types its config does not trust: {bad}; list their "
            "package in model.trusted_modules (it could not be loaded again otherwise)"
        )
    _skip_environment_scan()
    info = mlflow.sklearn.log_model(
        model,
        name="model",
        signature=signature,
        input_example=example,
        pip_requirements=_pip_requirements(tuple(sorted({t.split(".", 1)[0] for t in trusted}))),
        skops_trusted_types=trusted,
    )
    return info.model_uri


# Types a model artifact may contain beyond skops' built-in safe list: scikit-learn, NumPy and SciPy, and
# what the model's config adds (`ModelSpec.trusted`: the estimator's library, `model.trusted_modules`).
# MLflow reads the skops trust list from the artifact's own MLmodel file, so whoever can write the artifact
# store could extend it; this list comes from the local config and is checked first.
TRUSTED_MODULES = BASE_TRUSTED


def untrusted(types: Iterable[str], trusted: Iterable[str]) -> list[str]:
    """The ``types`` (``module.Name``) that are neither an entry of ``trusted`` nor inside a package of it."""
    roots = tuple(trusted)
    return sorted(t for t in types if not any(t == r or t.startswith(r + ".") for r in roots))


def check_artifact(model_dir: str, trusted: tuple[str, ...] = TRUSTED_MODULES) -> list[str]:
    """Refuse a model directory that is not skops or whose skops file names a type outside ``trusted``
    (module prefixes or exact type names); returns the (trusted) non-default types it uses."""
    import skops.io
    import yaml

    mlmodel = yaml.safe_load(open(os.path.join(model_dir, "MLmodel")).read())  # noqa: SIM115
    fmt = ((mlmodel.get("flavors") or {}).get("sklearn") or {}).get("serialization_format")
    path = os.path.join(model_dir, "model.skops")
    if fmt != "skops" or not os.path.isfile(path):
        raise RetrainerError(
            f"model artifact {model_dir} is not in the skops format ({fmt!r}): refusing to load it"
        )
    try:
        types = list(skops.io.get_untrusted_types(file=path))
    except Exception as exc:  # a corrupt or crafted file
        raise RetrainerError(f"model artifact {path} is not a readable skops file: {exc}") from exc
    bad = untrusted(types, trusted)
    if bad:
        raise RetrainerError(
            f"model artifact {path} contains types outside the trusted set ({', '.join(trusted)}): {bad}; "
            "refusing to load it. If your model is built from them, list their package in "
            "model.trusted_modules (else: was the artifact store written by someone else?)"
        )
    return types


def load_run_model(run_id: str, cfg: ModelConfig) -> Any:
    """The model logged by a run, loaded with the types ``cfg`` trusts (:attr:`ModelSpec.trusted`).

    The artifact is checked (:func:`check_artifact`) before it is deserialised, and then loaded by skops
    with exactly the types the check accepted."""
    return _load_run_model(run_id, cfg.model.trusted)


@functools.lru_cache(maxsize=8)
def _load_run_model(run_id: str, trusted: tuple[str, ...]) -> Any:
    """:func:`load_run_model` (cached per process: runs are immutable)."""
    import mlflow.artifacts
    import skops.io

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    client()  # configure the tracking URI
    local = mlflow.artifacts.download_artifacts(f"runs:/{run_id}/model")
    accepted = check_artifact(local, trusted)
    return skops.io.load(os.path.join(local, "model.skops"), trusted=accepted)


# -- schema evolution: a model is scored with the features it was trained on ------------------------------
@functools.lru_cache(maxsize=32)
def _trained_features(run_id: str) -> tuple[str, ...] | None:
    """The ``data.features`` entries (JSON) of the config a training run logged (``config.json``), or
    None when the run has none that can be read (cached per process: runs are immutable)."""
    import json

    import mlflow.artifacts

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    client()
    try:
        logged = mlflow.artifacts.load_dict(f"runs:/{run_id}/config.json")
        features = logged["data"]["features"]
    except Exception:  # an older or foreign run: the model's own input names are used instead
        return None
    if not isinstance(features, list):
        return None
    return tuple(json.dumps(f, sort_keys=True) for f in features)


def model_config(cfg: ModelConfig, run_id: str) -> ModelConfig:
    """``cfg`` as the model of training run ``run_id`` sees it: ``data.features`` replaced by the feature
    list it was trained on (from the config the run logged, else the fitted pipeline's input names).

    Every prediction of a registered model (champion, previous champion, challenger) goes through this
    view, so a feature added to or removed from the config takes effect at the next retrain, not on the
    models already trained. Returns ``cfg`` itself when the lists are the same."""
    import json

    logged = _trained_features(run_id)
    specs: list[FeatureSpec] = []
    if logged is not None:
        try:
            specs = [FeatureSpec.model_validate(json.loads(f)) for f in logged]
        except ValueError:
            specs = []
    if not specs:
        names = [str(n) for n in getattr(load_run_model(run_id, cfg), "feature_names_in_", [])]
        if not names:
            return cfg
        current = {f.name: f for f in cfg.data.features}
        specs = [current.get(n) or FeatureSpec(name=n) for n in names]
    if specs == list(cfg.data.features):
        return cfg
    data = DataConfig.model_validate({**cfg.data.model_dump(), "features": [s.model_dump() for s in specs]})
    return cfg.model_copy(update={"data": data})


def missing_features(cfg: ModelConfig, run_id: str, columns: Iterable[str]) -> list[str]:
    """The features the model of ``run_id`` was trained on that are not among ``columns``."""
    have = set(columns)
    return [f for f in model_config(cfg, run_id).data.feature_names if f not in have]
