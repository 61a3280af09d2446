"""An estimator that records how many OpenMP threads it may use whenever it fits or predicts (for the
thread-cap tests). Retrainer imports it through ``model.estimator``, like any user's estimator."""

from __future__ import annotations

from sklearn.ensemble import HistGradientBoostingRegressor
from threadpoolctl import threadpool_info

SEEN: list[tuple[str, int]] = []


def _record(step: str) -> None:
    SEEN.append((step, max(i["num_threads"] for i in threadpool_info() if i["user_api"] == "openmp")))


class ThreadsProbeRegressor(HistGradientBoostingRegressor):
    def fit(self, X, y, sample_weight=None):
        _record("fit")
        return super().fit(X, y, sample_weight=sample_weight)

    def predict(self, X):
        _record("predict")
        return super().predict(X)
