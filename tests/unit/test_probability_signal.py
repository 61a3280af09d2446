"""A probability metric (ROC AUC, log loss, ...) as the live performance signal's metric.

A real MLflow store and data root, the retrain and monitor stage functions (no Airflow): a logistic
regression becomes champion, a labelled batch is scored; the stored predictions carry the class
probabilities and the performance signal is the batch's ROC AUC / log loss, as computed directly.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from retrainer import settings
from retrainer.config import parse_config
from retrainer.ml import metrics
from retrainer.stages import feeds, monitor
from retrainer.storage import DataRoot
from tests.support.champion import train_first_champion

pytestmark = pytest.mark.unit


def stream(days: int, seed: int, flip: bool = False) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n = days * 48
    t = pd.Timestamp("2024-01-01") + pd.to_timedelta(np.arange(n) * 0.5, unit="h")
    a, b = rng.normal(size=n), rng.normal(size=n)
    logit = 2 * a - b if not flip else -2 * a - b
    y = np.where(rng.uniform(size=n) < 1 / (1 + np.exp(-logit)), "yes", "no")
    return pd.DataFrame({"ts": t, "a": a, "b": b, "y": y})


def test_probability_metric_is_the_live_performance_signal(state):
    metric = "roc_auc"
    cfg = parse_config(
        {
            "name": "clf",
            "task": "classification",
            "data": {"time_column": "ts", "target": "y", "features": ["a", "b"], "min_batch_rows": 10},
            "model": {"estimator": "sklearn.linear_model.LogisticRegression"},
            "training": {"window": "14D", "holdout": "2D", "min_rows": 100},
            "validation": {"metric": metric},
            "triggers": {
                "performance": {"mode": "relative", "max_degradation": 0.1, "min_labelled_rows": 20}
            },
        }
    )
    dr = DataRoot(settings.data_root(), cfg.name)
    dr.import_batch(stream(14, 0), "history.parquet", stage="archive")
    train_first_champion(cfg)

    batch = stream(1, 1, flip=True).assign(ts=lambda d: d["ts"] + pd.Timedelta(days=14))
    dr.import_batch(batch, "2024-01-15.parquet")
    claim = monitor.claim_batch(cfg, "scheduled__p1")
    val = monitor.validate_batch(cfg, claim, "scheduled__p1")
    scored = monitor.score_batch(cfg, claim)
    perf = monitor.performance(cfg, claim, scored)

    stored = pd.read_parquet(scored["predictions"])
    assert feeds.proba_columns(stored) == ["proba:no", "proba:yes"]
    assert np.allclose(stored[["proba:no", "proba:yes"]].sum(axis=1), 1.0)
    expected = metrics.probability_metrics(
        batch["y"].to_numpy(), stored[["proba:no", "proba:yes"]].to_numpy(), ["no", "yes"]
    )
    assert perf["metric"] == metric and perf["value"] == pytest.approx(expected[metric])
    assert perf["labelled_rows"] == len(batch)
    assert perf["value"] < 0.5  # the flipped concept: the champion ranks the classes the wrong way round
    for other in ("log_loss", "brier", "pr_auc"):  # every probability metric is in the signal's numbers
        assert perf["all"][other] == pytest.approx(expected[other])

    drift = monitor.measure_drift(cfg, claim, scored)
    flags = monitor.flagged_rate(cfg, claim, val)
    decision = monitor.decide(cfg, claim, val, scored, drift, perf, flags, "scheduled__p1")
    assert decision["retrain"] and "performance" in decision["fired"]
