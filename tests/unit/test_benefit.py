"""The benefit signal: a candidate on the newest window against the champion on the latest labels, paired."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from retrainer import backtest, policy
from retrainer.config import BenefitTrigger, parse_config
from retrainer.policy.benefit import paired_benefit, row_losses

pytestmark = pytest.mark.unit

CHANGE = 14  # the day the concept changes


def stream(days: int = 26, rows: int = 96, seed: int = 0) -> pd.DataFrame:
    """A stable linear stream whose concept changes on day CHANGE (the inputs do not change)."""
    rng = np.random.default_rng(seed)
    n = days * rows
    t = pd.Timestamp("2024-01-01") + pd.to_timedelta(np.arange(n) * (24 / rows), unit="h")
    a, b = rng.normal(size=n), rng.normal(size=n)
    y = np.where(np.arange(n) >= CHANGE * rows, -3 * a + b + 4, 3 * a + b) + rng.normal(scale=0.3, size=n)
    return pd.DataFrame({"ts": t, "a": a, "b": b, "y": y})


def config(**benefit):
    return parse_config(
        {
            "name": "change",
            "task": "regression",
            "data": {"time_column": "ts", "target": "y", "features": ["a", "b"]},
            "model": {"estimator": "sklearn.linear_model.LinearRegression"},
            "training": {"window": "4D", "holdout": "1D", "min_rows": 50},
            "triggers": {
                "prediction_drift": None,
                "performance": None,
                "flags": None,
                "benefit": benefit,
                "cooldown_batches": 1,
                "max_age_batches": None,
            },
            "validation": {"metric": "mae"},
            "backtest": {"batch_freq": "1D", "max_k": 4},
        }
    )


def test_paired_test_separates_a_better_candidate_from_noise():
    rng = np.random.default_rng(1)
    y = rng.normal(size=400)
    champion = y + rng.normal(scale=1.0, size=400)
    same = y + rng.normal(scale=1.0, size=400)
    better = y + rng.normal(scale=0.5, size=400)
    loss = lambda p: row_losses("regression", "mae", y, p)  # noqa: E731
    win = paired_benefit(loss(champion), loss(better))
    tie = paired_benefit(loss(champion), loss(same))
    assert win.z > 5 and win.gain > 0.3 and win.rows == 400
    assert abs(tie.z) < 2
    cfg = BenefitTrigger()
    assert "benefit" in policy.benefit.fired(win, cfg, {})
    assert policy.benefit.fired(tie, cfg, {}) == {}
    assert policy.benefit.fired(win, BenefitTrigger(min_gain=0.9), {}) == {}  # gain below the floor
    slight = paired_benefit(loss(champion), loss(champion * 0.99 + y * 0.01))  # consistent, but tiny
    assert slight.z > cfg.z and policy.benefit.fired(slight, cfg, {}) == {}


def _retrains(report):
    return report["policies"]["trigger"]["retrain_batches"]


def test_benefit_signal_fires_after_the_change_and_not_before():
    report = backtest.backtest(config(), stream(), progress=False, oracle_bound=False)
    retrains = _retrains(report)
    # quiet while the concept holds: a newer window's model is no better than the champion
    assert not [i for i in retrains if i < CHANGE]
    # the change is seen once a candidate's training part holds new labels: the window's newest batch is
    # its holdout, so two batches after the change
    assert retrains and CHANGE <= retrains[0] <= CHANGE + 2
    decisions = report["policies"]["trigger"]["fired"]
    assert decisions.get("benefit", 0) >= 1
    assert report["recovered_gain"]["trigger"] > 0.8
    assert report["retrain_share"]["trigger"] <= 0.5


def test_with_labels_two_batches_late_it_fires_two_batches_later():
    report = backtest.backtest(config(), stream(), label_delay=2, progress=False, oracle_bound=False)
    retrains = _retrains(report)
    assert not [i for i in retrains if i < CHANGE + 2]
    assert retrains and CHANGE + 2 <= retrains[0] <= CHANGE + 4
