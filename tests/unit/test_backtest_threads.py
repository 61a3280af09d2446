"""The backtest caps BLAS/OpenMP threads for its many small fits, also for an estimator whose OpenMP
runtime loads only when the replay first builds it (threadpoolctl limits loaded libraries only)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

HERE = Path(__file__).parent
SCRIPT = """
import json, sys
sys.path[:0] = [{unit!r}, {include!r}]
assert "sklearn" not in sys.modules
from retrainer import backtest
assert "sklearn" not in sys.modules, "the backtest module must not import scikit-learn itself"
from test_backtest import make_cfg, synthetic
cfg = make_cfg()
model = cfg.model.model_copy(update={{"estimator": "probes.threads_probe.ThreadsProbeRegressor", "params": {{"max_iter": 5}}}})
cfg = cfg.model_copy(update={{"model": model}})
threads = None if {threads!r} == 0 else {threads!r}
backtest.backtest(cfg, synthetic(days=12), progress=False, oracle_bound=False, threads=threads)
from probes.threads_probe import SEEN
print(json.dumps(SEEN))
"""


def _fitted_with(threads: int) -> list[int]:
    """OpenMP threads each fit of a fresh interpreter's backtest was allowed (scikit-learn not yet imported)."""
    code = SCRIPT.format(unit=str(HERE), include=str(HERE.parents[1] / "include"), threads=threads)
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=dict(os.environ)
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_replay_fits_run_on_one_thread_even_when_the_estimator_loads_openmp_late():
    seen = _fitted_with(1)
    assert seen and set(seen) == {1}, seen


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="one core: the libraries' default is one thread too")
def test_threads_zero_leaves_the_libraries_defaults():
    seen = _fitted_with(0)
    assert seen and max(seen) > 1, seen
