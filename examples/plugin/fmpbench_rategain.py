"""Rank fields by how much log-loss their per-value click rates save on validation rows."""

from __future__ import annotations

import numpy as np

from fmpbench.selectors import SearchContext, Selector


class RateGain(Selector):
    """Validation log-loss saved by each field's smoothed per-value click rate (fitted on train)."""

    name = "rategain"

    def __init__(self, smoothing: float = 20.0):
        self.smoothing = smoothing  # pseudo-rows at the base rate: rare values stay near it

    def fit(self, data, context: SearchContext | None = None) -> RateGain:
        base = float(np.mean(data.train.y))
        valid_y = np.asarray(data.valid.y, dtype=np.float64)
        scores = []
        for f, dim in enumerate(data.field_dims):
            rows = np.bincount(data.train.X[:, f], minlength=dim)
            clicks = np.bincount(data.train.X[:, f], weights=data.train.y, minlength=dim)
            rate = (clicks + self.smoothing * base) / (rows + self.smoothing)
            scores.append(_logloss(valid_y, np.full(len(valid_y), base)) - _logloss(valid_y, rate[data.valid.X[:, f]]))
        self.set_scores(data, scores)
        return self


def _logloss(y: np.ndarray, p: np.ndarray) -> float:
    p = np.clip(p, 1e-7, 1 - 1e-7)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))
