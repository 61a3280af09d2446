"""The benefit signal: would a retrain now pay? A paired test of a candidate's per-row losses against the
champion's on the latest labelled batch (rows neither model was trained on)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

    from retrainer.config import BenefitTrigger


@dataclass(frozen=True)
class Benefit:
    """The candidate against the champion on one labelled batch."""

    z: float  # mean paired loss difference (champion - candidate) in standard errors; > 0: the candidate wins
    gain: float  # the mean difference as a share of the champion's mean loss
    rows: int


def row_losses(task: str, metric: str, y: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """Per-row loss of predictions: squared error for ``rmse``, absolute error for other regression metrics,
    0/1 errors for classification."""
    import numpy as np

    y, pred = np.asarray(y), np.asarray(pred)
    if task == "classification":
        return (y != pred).astype(float)
    err = y.astype(float) - pred.astype(float)
    return err**2 if metric == "rmse" else np.abs(err)


def paired_benefit(champion_loss: np.ndarray, candidate_loss: np.ndarray) -> Benefit:
    """The paired test: the mean of ``champion_loss - candidate_loss`` over its standard error."""
    import numpy as np

    d = np.asarray(champion_loss, dtype=float) - np.asarray(candidate_loss, dtype=float)
    n = len(d)
    if n < 2:
        return Benefit(0.0, 0.0, n)
    mean, sd = float(np.mean(d)), float(np.std(d, ddof=1))
    base = float(np.mean(champion_loss))
    # identical losses on every row: no evidence either way unless the difference is the same non-zero number
    z = mean / (sd / np.sqrt(n)) if sd > 0 else (0.0 if mean == 0 else float(np.sign(mean)) * float("inf"))
    return Benefit(z, mean / base if base else 0.0, n)


def fired(b: Benefit | None, cfg: BenefitTrigger, details: dict[str, float]) -> dict[str, str]:
    """The benefit signal's vote on one batch (its numbers go to ``details``)."""
    if b is None or b.rows < cfg.min_labelled_rows:
        return {}
    details.update(benefit_z=b.z, benefit_gain=b.gain, benefit_rows=float(b.rows))
    if b.z > cfg.z and b.gain >= cfg.min_gain:
        return {
            "benefit": f"a candidate on the newest window beats the champion on the latest labels by "
            f"{b.gain:.1%} of its loss ({b.z:.1f} standard errors > {cfg.z:g}, {b.rows} rows)"
        }
    return {}
