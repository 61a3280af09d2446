"""An estimator that records how many OpenMP threads it may use when it is fitted (for the backtest's
thread-limit test). Imported by the backtest through ``model.estimator``, like any user estimator."""

from __future__ import annotations

from sklearn.ensemble import HistGradientBoostingRegressor
from threadpoolctl import threadpool_info

SEEN: list[int] = []


class ThreadsProbeRegressor(HistGradientBoostingRegressor):
    def fit(self, X, y, sample_weight=None):
        SEEN.append(max(i["num_threads"] for i in threadpool_info() if i["user_api"] == "openmp"))
        return super().fit(X, y, sample_weight=sample_weight)
