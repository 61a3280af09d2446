"""The first champion of a test model, trained through the retrain path's own stages as the DAG runs them."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

    from retrainer.config import ModelConfig
    from retrainer.storage import DataRoot


def archive_history(
    dr: DataRoot, weeks: list[tuple[str, pd.DataFrame]], name: str = "history.parquet"
) -> int:
    """Put ``weeks`` (``(name, frame)`` pairs) into the archive as one history batch; returns its rows."""
    import pandas as pd

    history = pd.concat([df for _, df in weeks], ignore_index=True)
    dr.import_batch(history, name, stage="archive")
    return len(history)


def retrain_path(cfg: ModelConfig, dag_run_id: str = "manual__first") -> dict[str, Any]:
    """Snapshot what is archived, gate, train, evaluate, register and promote it; every step's output,
    keyed ``trigger``, ``snap``, ``gate``, ``train``, ``evaluation``, ``registered``, ``promoted``."""
    from retrainer.stages import retrain

    out: dict[str, Any] = {"trigger": retrain.resolve_trigger("manual", [], {"reason": "first champion"})}
    out["snap"] = retrain.snapshot(cfg)
    out["gate"] = retrain.gate(cfg, out["snap"])
    out["train"] = retrain.train(cfg, out["snap"], out["trigger"], dag_run_id=dag_run_id)
    out["evaluation"] = retrain.evaluate(cfg, out["snap"], out["train"])
    out["registered"] = retrain.register(cfg, out["snap"], out["train"], out["evaluation"], out["trigger"])
    out["promoted"] = retrain.promote(cfg, out["registered"], out["evaluation"], out["trigger"], dag_run_id)
    return out


def train_first_champion(cfg: ModelConfig, dag_run_id: str = "manual__first") -> dict[str, Any]:
    """Snapshot what is archived, gate, train, evaluate, register and promote it; returns the registration."""
    registered: dict[str, Any] = retrain_path(cfg, dag_run_id)["registered"]
    return registered
