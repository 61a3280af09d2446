"""A tampered model artifact is refused, not executed.

A real model is trained and logged (skops, MLflow SQLite store, local artifacts); then its artifact is
replaced by someone who can write the artifact store: a skops file naming ``os.system``, even with the
MLmodel trust list extended to allow it, and a pickle-format model whose loading would write a file.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit


class _WritesAFile:
    """What a pickle payload does: run code while being loaded."""

    def __init__(self, target: str):
        self.target = target

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (Path(self.target).write_text, ("pwned",))


@pytest.fixture(scope="module")
def fitted(tmp_path_factory, point_state, bikeshare_cfg, bikeshare_weeks):
    """One fitted pipeline and one store for the module; each test logs its own copy to tamper with."""
    from retrainer.ml.train import build_pipeline

    folder = tmp_path_factory.mktemp("trust")
    with pytest.MonkeyPatch.context() as mp:
        point_state(mp, folder)
        df = bikeshare_weeks[0][1]
        X, y = df[bikeshare_cfg.data.feature_names], df[bikeshare_cfg.data.target]
        yield {"model": build_pipeline(bikeshare_cfg).fit(X, y), "X": X, "folder": folder}


@pytest.fixture
def logged(fitted, bikeshare_cfg) -> dict[str, str]:
    import mlflow

    from retrainer.tracking import runs as tracking
    from retrainer.tracking.artifacts import log_model

    tracking.client()
    with mlflow.start_run(experiment_id=tracking.experiment_id("bikeshare", "train")) as run:
        uri = log_model(fitted["model"], fitted["X"], bikeshare_cfg)
    model_id = uri.rsplit("/", 1)[-1]
    (skops_file,) = [p for p in (fitted["folder"] / "mlartifacts").rglob("model.skops") if model_id in str(p)]
    return {"run_id": run.info.run_id, "dir": str(skops_file.parent), "X": fitted["X"], "cfg": bikeshare_cfg}  # type: ignore[dict-item]


def test_untampered_model_loads(logged) -> None:
    from retrainer.tracking.artifacts import load_run_model

    model = load_run_model(logged["run_id"], logged["cfg"])

    assert len(model.predict(logged["X"].head(3))) == 3


def test_skops_file_naming_an_untrusted_type_is_refused_even_if_mlmodel_trusts_it(logged) -> None:
    import skops.io
    import yaml

    from retrainer.exceptions import RetrainerError
    from retrainer.tracking.artifacts import _load_run_model, load_run_model

    store = Path(logged["dir"])
    skops.io.dump({"hook": os.system, "cmd": "touch /tmp/should-not-exist"}, store / "model.skops")
    mlmodel = yaml.safe_load((store / "MLmodel").read_text())
    mlmodel["flavors"]["sklearn"]["skops_trusted_types"] = ["posix.system", "builtins.dict"]
    (store / "MLmodel").write_text(yaml.safe_dump(mlmodel))
    _load_run_model.cache_clear()

    with pytest.raises(
        RetrainerError, match=r"outside the trusted set.*posix\.system.*model\.trusted_modules"
    ):
        load_run_model(logged["run_id"], logged["cfg"])


def test_pickle_model_swapped_in_is_refused_without_running_it(logged, tmp_path: Path) -> None:
    import pickle

    import yaml

    from retrainer.exceptions import RetrainerError
    from retrainer.tracking.artifacts import _load_run_model, load_run_model

    store = Path(logged["dir"])
    marker = tmp_path / "pwned.txt"
    (store / "model.skops").unlink()
    (store / "model.pkl").write_bytes(pickle.dumps(_WritesAFile(str(marker))))
    mlmodel = yaml.safe_load((store / "MLmodel").read_text())
    mlmodel["flavors"]["sklearn"].update(serialization_format="cloudpickle", pickled_model="model.pkl")
    (store / "MLmodel").write_text(yaml.safe_dump(mlmodel))
    _load_run_model.cache_clear()

    with pytest.raises(RetrainerError, match="not in the skops format"):
        load_run_model(logged["run_id"], logged["cfg"])
    assert not marker.exists(), "the payload ran"


def test_logged_requirements_are_exact_pins_and_a_mismatch_is_still_reported(logged) -> None:
    """The model's requirements.txt pins what it needs; MLflow's mismatch check (given the map of just
    those packages instead of scanning the environment) still warns when a pin does not match."""
    import subprocess
    import sys
    from importlib.metadata import version

    from retrainer.tracking.artifacts import PIP_REQUIREMENTS_PACKAGES

    pins = set(Path(logged["dir"], "requirements.txt").read_text().split())
    assert {f"{p}=={version(p)}" for p in (*PIP_REQUIREMENTS_PACKAGES, "mlflow")} <= pins

    check = (
        "import logging, sys\n"
        "from retrainer.tracking import artifacts as models\n"
        "from mlflow.utils import requirements_utils as ru\n"
        "models._skip_environment_scan()\n"
        "assert ru._MODULES_TO_PACKAGES['sklearn'] == ['scikit-learn'], ru._MODULES_TO_PACKAGES\n"
        "seen = []\n"
        "ru._logger.warning = lambda msg, *a: seen.append(msg)\n"
        "ru.warn_dependency_requirement_mismatches(models._pip_requirements())\n"
        "assert seen == [], seen\n"
        "ru.warn_dependency_requirement_mismatches(['numpy==0.0.1', 'skops==0.0.1'])\n"
        "assert len(seen) == 1 and 'numpy' in seen[0] and 'skops' in seen[0], seen\n"
    )
    done = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
