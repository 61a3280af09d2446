"""The first champion of a test model, trained through the retrain path's own stages as the DAG runs them."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from retrainer.config import ModelConfig


def train_first_champion(cfg: ModelConfig, dag_run_id: str = "manual__first") -> dict[str, Any]:
    """Snapshot what is archived, gate, train, evaluate, register and promote it; returns the registration."""
    from retrainer.stages import retrain

    trig = retrain.resolve_trigger("manual", [], {"reason": "first champion"})
    snap = retrain.snapshot(cfg)
    retrain.gate(cfg, snap)
    trained = retrain.train(cfg, snap, trig, dag_run_id=dag_run_id)
    ev = retrain.evaluate(cfg, snap, trained)
    reg = retrain.register(cfg, snap, trained, ev, trig)
    retrain.promote(cfg, reg, ev, trig, dag_run_id)
    return reg
