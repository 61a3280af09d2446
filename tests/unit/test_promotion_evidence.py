"""Automatic rollback and shadow decisions on late labels, with a minimum number of labelled rows.

Two real champions (LinearRegression, real MLflow SQLite store) of a stream whose relation flips: v1 learnt
``y = 2a + b``, v2 learnt ``y = -2a - b`` and was promoted (or staged as challenger). The batches that
follow go back to the first relation, so v2 trails v1 by far: what matters is *when* the comparison is
made. Monitor runs are real MLflow runs tagged as the decide task tags them.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from retrainer import settings
from retrainer.config import parse_config
from retrainer.stages import feeds, promotion
from retrainer.storage import DataRoot
from retrainer.tracking import registry
from retrainer.tracking import runs as tracking
from tests.support.champion import train_first_champion

pytestmark = pytest.mark.unit

ROWS = 48


def make_cfg(name: str, mode: str) -> Any:
    return parse_config(
        {
            "name": name,
            "task": "regression",
            "data": {"time_column": "ts", "target": "y", "features": ["a", "b"], "id_column": "rid"},
            "model": {"estimator": "sklearn.linear_model.LinearRegression"},
            "training": {"window": "3D", "holdout": "1D", "min_rows": 50},
            "validation": {"metric": "mae"},
            "promotion": {"mode": mode, "rollback_batches": 2, "shadow_batches": 1, "margin": 0.1},
        }
    )


def day(i: int, sign: float = 1.0) -> pd.DataFrame:
    rng = np.random.default_rng(i)
    t = pd.Timestamp("2024-01-01") + pd.Timedelta(days=i) + pd.to_timedelta(np.arange(ROWS) * 0.5, unit="h")
    a, b = rng.normal(size=ROWS), rng.normal(size=ROWS)
    return pd.DataFrame(
        {"rid": [f"d{i}-{n}" for n in range(ROWS)], "ts": t, "a": a, "b": b, "y": sign * (2 * a + b)}
    )


def name(i: int) -> str:
    return f"2024-01-{i + 1:02d}.parquet"


@pytest.fixture
def world(state, request) -> dict[str, Any]:
    """v1 on the first relation, v2 on the flipped one, promoted (immediate) or staged (shadow)."""
    mode = request.param
    cfg = make_cfg(f"evid{mode[:3]}", mode)
    dr = DataRoot(settings.data_root(), cfg.name).ensure()
    for i in range(4):
        dr.import_batch(day(i), name(i), stage="archive")
    train_first_champion(cfg, "manual__v1")
    for i in range(4, 8):
        dr.import_batch(day(i, sign=-1.0), name(i), stage="archive")
    train_first_champion(cfg, "manual__v2")
    champ, chal = registry.champion(cfg.name), registry.challenger(cfg.name)
    if mode == "immediate":
        assert champ is not None and champ.version == 2
    else:
        assert champ is not None and champ.version == 1 and chal is not None and chal.version == 2
    return {"cfg": cfg, "dr": dr}


def monitor_batch(dr: DataRoot, i: int, own_labels: int = 0) -> tuple[dict[str, Any], dict[str, Any]]:
    """Day ``i`` (first relation) delivered with ``own_labels`` labelled rows, claimed, with the monitor
    run the decide task would have written for it."""
    df = day(i)
    df["y"] = df["y"].where(df.index < own_labels)
    dr.import_batch(df, name(i))
    got = dr.claim(f"run-{i}")
    assert got is not None
    c = got.to_dict()
    run = tracking.client().create_run(
        tracking.experiment_id(dr.model, "monitor"),
        tags={"retrainer.batch": c["batch"], "retrainer.batch_sha256": c["sha256"]},
    )
    return c, {"mlflow_run_id": run.info.run_id}


def deliver_labels(cfg: Any, dr: DataRoot, i: int, fname: str) -> None:
    folder = dr.landing / "labels"
    folder.mkdir(parents=True, exist_ok=True)
    day(i)[["rid", "y"]].to_csv(folder / f".{fname}.tmp", index=False)
    (folder / f".{fname}.tmp").rename(folder / fname)
    feeds.ingest(cfg, by="test")  # what the monitor's ingest_feeds task does before the decision


@pytest.mark.parametrize("world", ["immediate"], indirect=True)
def test_rollback_waits_for_enough_labels_then_counts_late_ones(world):
    cfg, dr = world["cfg"], world["dr"]

    c8, d8 = monitor_batch(dr, 8, own_labels=1)  # one labelled row: no evidence for a rollback
    first = promotion.watch_champion(cfg, c8, d8, "run-8")
    again = promotion.watch_champion(cfg, c8, d8, "run-8")  # a retry: the same answer, nothing moved
    dr.archive_claim(c8)

    assert first["action"] == "waiting_for_labels" and first["labelled_rows"] == 1
    assert first["min_labelled_rows"] == 30 and again == first
    assert registry.champion(cfg.name).version == 2

    c9, d9 = monitor_batch(dr, 9)  # unlabelled; day 8's labels arrive late through the feed
    deliver_labels(cfg, dr, 8, "labels-day8.csv")
    out = promotion.watch_champion(cfg, c9, d9, "run-9")

    assert out["action"] == "rolled_back" and out["labelled_rows"] == ROWS
    assert out["batch_of_watch"] == 1 and out["worse_by"] > cfg.promotion.margin
    assert registry.champion(cfg.name).version == 1
    assert f"{ROWS} labelled rows" in out["rollback"]["event"]["reason"]


@pytest.mark.parametrize("world", ["shadow"], indirect=True)
def test_shadow_waits_for_enough_labels_then_counts_late_ones(world):
    cfg, dr = world["cfg"], world["dr"]

    c8, d8 = monitor_batch(dr, 8, own_labels=1)
    first = promotion.shadow_score(cfg, c8, d8, "run-8")
    dr.archive_claim(c8)

    assert first["verdict"] == "waiting_for_labels" and first["action"] == "waiting"
    assert registry.challenger(cfg.name).version == 2  # one row never retires a challenger

    c9, d9 = monitor_batch(dr, 9)
    deliver_labels(cfg, dr, 8, "labels-day8.csv")
    out = promotion.shadow_score(cfg, c9, d9, "run-9")

    assert out["labelled_rows"] == ROWS and out["verdict"] == "inferior" and out["action"] == "retired"
    assert registry.challenger(cfg.name) is None and registry.champion(cfg.name).version == 1
