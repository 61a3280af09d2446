"""Model fits run on a capped number of BLAS/OpenMP threads: the backtest's fits and predictions
(``--threads``, default 1), also for an estimator whose OpenMP runtime loads only when Retrainer first
builds it (threadpoolctl caps loaded libraries only), and the tasks' fits (``RETRAINER_THREADS``,
default 1).

Each case runs in a fresh interpreter, as a task or a ``retrainer`` command does; a probe records the
OpenMP threads each fit or prediction was allowed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.unit

HERE = Path(__file__).parent
REPO = HERE.parents[1]
PROBE = "probes.threads_probe.ThreadsProbeRegressor"
MANY_CORES = pytest.mark.skipif(
    (os.cpu_count() or 1) < 2, reason="one core: the libraries' default is one thread as well"
)

PRELUDE = f"""
import json, sys
sys.path[:0] = [{str(HERE)!r}, {str(REPO / "include")!r}]
assert "sklearn" not in sys.modules
"""

BACKTEST = """
from retrainer import backtest
assert "sklearn" not in sys.modules, "the backtest module must not import scikit-learn itself"
from test_backtest import make_cfg, synthetic
cfg = make_cfg()
model = cfg.model.model_copy(update={"estimator": PROBE, "params": {"max_iter": 5}})
cfg = cfg.model_copy(update={"model": model})
backtest.backtest(cfg, synthetic(days=12), progress=False, oracle_bound=False, threads=THREADS)
"""

# Tasks load models through skops, which accepts scikit-learn's own types only: the recorder wraps the real
# HistGradientBoostingRegressor's methods (the model, the DLE estimator) instead of a probe subclass.
TASKS = """
from sklearn.ensemble import HistGradientBoostingRegressor as HGB
from probes import threads_probe
for step in ("fit", "predict"):
    def recorder(self, *args, _real=getattr(HGB, step), _step=step, **kw):
        threads_probe._record(_step)
        return _real(self, *args, **kw)
    setattr(HGB, step, recorder)
from retrainer import cli
from retrainer.ml.datasets import bikeshare, weekly_batches
from retrainer.storage import DataRoot
dr = DataRoot(DATA, "bikeshare").ensure()
weeks = weekly_batches(bikeshare(), "timestamp")
for start, week in weeks[:10]:
    dr.import_batch(week, f"{start}.parquet", stage="archive")
assert cli.main(["retrain", CONFIG, "--reason", "thread cap"]) == 0
start, week = weeks[10]
batch = dr.import_batch(week, f"{start}.parquet", stage="landing")
assert cli.main(["check", CONFIG, str(batch)]) == 0
from retrainer.stages import monitor, scoring
from retrainer.config import load_config
cfg = load_config(CONFIG)
claim = monitor.claim_batch(cfg, "thread-cap-run")
assert scoring.estimate(cfg, claim, monitor.score_batch(cfg, claim)).get("method") == "dle"
"""

EPILOGUE = """
from probes.threads_probe import SEEN
print("SEEN=" + json.dumps(SEEN))
"""


def _seen(body: str, env: dict[str, str], **names: object) -> list[tuple[str, int]]:
    """(step, OpenMP threads allowed) of every probe call in a fresh interpreter running ``body``."""
    values = "".join(f"{k} = {v!r}\n" for k, v in {"PROBE": PROBE, **names}.items())
    out = subprocess.run(
        [sys.executable, "-c", PRELUDE + values + body + EPILOGUE],
        capture_output=True,
        text=True,
        timeout=600,
        env={**{k: v for k, v in os.environ.items() if k != "RETRAINER_THREADS"}, **env},
    )
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-4000:]
    line = [x for x in out.stdout.splitlines() if x.startswith("SEEN=")][-1]
    return [tuple(x) for x in json.loads(line[len("SEEN=") :])]


def test_backtest_fits_and_predicts_on_one_thread_by_default():
    seen = _seen(BACKTEST, {}, THREADS=1)
    assert {step for step, _ in seen} == {"fit", "predict"}, seen
    assert {n for _, n in seen} == {1}, seen


@MANY_CORES
def test_backtest_threads_none_leaves_the_libraries_defaults():
    seen = _seen(BACKTEST, {}, THREADS=None)
    assert max(n for _, n in seen) > 1, seen


@pytest.fixture
def task_env(tmp_path):
    raw = yaml.safe_load((REPO / "include" / "models" / "bikeshare.yaml").read_text())
    config = tmp_path / "models" / "bikeshare.yaml"
    config.parent.mkdir()
    config.write_text(yaml.safe_dump(raw))
    env = {
        "RETRAINER_DATA_ROOT": str(tmp_path / "data"),
        "RETRAINER_CONFIG_DIR": str(config.parent),
        "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}",
        "RETRAINER_ARTIFACT_ROOT": str(tmp_path / "mlartifacts"),
        "MLFLOW_DISABLE_TELEMETRY": "true",
    }
    return env, {"DATA": str(tmp_path / "data"), "CONFIG": str(config)}


def test_retrain_and_estimate_fit_on_one_thread_by_default(task_env):
    """The model's fit (retrain) and the DLE estimator's fits (monitor) are capped; predicting a batch is
    left to the libraries (threads pay off there: docs/scale.md, "Threads")."""
    env, names = task_env
    seen = _seen(TASKS, env, **names)
    fits = [n for step, n in seen if step == "fit"]
    assert len(fits) >= 3, seen  # the model, then DLE's two error models
    assert set(fits) == {1}, seen


@MANY_CORES
def test_retrainer_threads_zero_leaves_the_libraries_defaults(task_env):
    env, names = task_env
    seen = _seen(TASKS, {**env, "RETRAINER_THREADS": "0"}, **names)
    assert max(n for step, n in seen if step == "fit") > 1, seen


@pytest.mark.parametrize(("raw", "expected"), [("1", 1), ("4", 4), ("0", None), (" 2 ", 2)])
def test_retrainer_threads_setting(monkeypatch, raw, expected):
    from retrainer import settings

    monkeypatch.setenv("RETRAINER_THREADS", raw)
    assert settings.threads() == expected


@pytest.mark.parametrize("raw", ["two", "-1", "1.5"])
def test_retrainer_threads_rejects_what_is_not_a_count(monkeypatch, raw):
    from retrainer import settings

    monkeypatch.setenv("RETRAINER_THREADS", raw)
    with pytest.raises(ValueError, match=f"RETRAINER_THREADS='{raw}'.*whole number"):
        settings.threads()
