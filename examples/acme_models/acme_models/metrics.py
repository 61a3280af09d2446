"""A business metric: ``validation.metric: acme_models.metrics:shortage_cost`` (``greater_is_better: false``)."""

from __future__ import annotations

from typing import Any

import numpy as np

SHORTAGE_WEIGHT = 3.0  # a bike short (demand above the forecast) costs three times a bike too many


def shortage_cost(y_true: Any, y_pred: Any) -> float:
    """Mean cost per row: under-forecasts weigh :data:`SHORTAGE_WEIGHT` times over-forecasts."""
    err = np.asarray(y_true, dtype=float) - np.asarray(y_pred, dtype=float)
    return float(np.mean(np.where(err > 0, SHORTAGE_WEIGHT * err, -err)))
