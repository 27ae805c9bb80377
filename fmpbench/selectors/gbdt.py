"""``gbdt``: gradient-boosted trees (XGBoost) with native categorical splits; field score = total gain."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import xgboost as xgb

from fmpbench.data.prepared import PreparedData
from fmpbench.selectors.base import SearchContext, Selector
from fmpbench.selectors.encoding import subsample, thread_budget
from fmpbench.selectors.registry import register


def xgboost_device(device: torch.device) -> str:
    """XGBoost's device for a run on ``device``: the run's GPU (``cuda:N``) when it trains on one, else the CPU."""
    return f"cuda:{device.index or 0}" if device.type == "cuda" else "cpu"


@register
class GBDTSelector(Selector):
    """XGBoost (Chen & Guestrin, KDD 2016), ``tree_method="hist"``, on the fields as categories.

    Encoding: every field is a *categorical* feature (``feature_types="c"``), so a split partitions a
    field's ids into two sets ordered by their gradient statistics (XGBoost's one-hot splits up to 4
    ids, partitions above), and the numbering of ids matters only through tie-breaking. ERASE feeds
    label-encoded ids as numbers ✗, so its thresholds cut an arbitrary id order and high-cardinality
    fields win by offering more cut points. Native categories were preferred to target encoding
    because a tree can then combine interaction-only fields, whose target encoding is flat by
    construction. Ids must stay below 2^24 (exact in float32), far above any vocabulary here.

    Field score = total gain of the field's splits (``get_score(importance_type="total_gain")``) in the
    early-stopped model; fields never split on score 0.

    Hyper-parameters (defaults): ``max_depths=(4, 6)`` — one model per depth, the best by validation
    AUC is kept; ``learning_rate=0.1``; ``max_rounds=500`` with ``early_stopping_rounds=20`` on the
    validation split (never test); ``min_child_weight=5``; ``subsample=0.8`` and
    ``colsample_bytree=0.8`` (seeded by the run's seed); ``max_rows=200_000`` training rows and as many
    validation rows at most (uniform subsamples, recorded); ``n_jobs=None`` = the process's thread budget
    (every core, or its share under ``--jobs``).
    """

    name = "gbdt"

    def __init__(
        self,
        max_depths: tuple[int, ...] = (4, 6),
        learning_rate: float = 0.1,
        max_rounds: int = 500,
        early_stopping_rounds: int = 20,
        min_child_weight: float = 5.0,
        subsample: float = 0.8,
        colsample_bytree: float = 0.8,
        max_rows: int | None = 200_000,
        n_jobs: int | None = None,
    ) -> None:
        self.max_depths = max_depths
        self.learning_rate = learning_rate
        self.max_rounds = max_rounds
        self.early_stopping_rounds = early_stopping_rounds
        self.min_child_weight = min_child_weight
        self.subsample = subsample
        self.colsample_bytree = colsample_bytree
        self.max_rows = max_rows
        self.n_jobs = n_jobs

    def fit(self, data: PreparedData, context: SearchContext | None = None) -> GBDTSelector:
        if not self.max_depths:
            raise ValueError("gbdt: max_depths must name at least one depth")
        context = context or SearchContext()
        seed = context.seed
        threads = self.n_jobs or thread_budget()
        X, y = subsample(data.train, self.max_rows, seed)
        Xv, yv = subsample(data.valid, self.max_rows, seed + 1)
        categorical = ["c"] * data.num_fields
        train = xgb.QuantileDMatrix(
            X.astype(np.float32), y, feature_types=categorical, enable_categorical=True, nthread=threads
        )
        valid = xgb.QuantileDMatrix(
            Xv.astype(np.float32), yv, ref=train, feature_types=categorical, enable_categorical=True, nthread=threads
        )
        valid_auc_by_depth: dict[int, float] = {}
        best: tuple[int, xgb.Booster] | None = None
        for depth in self.max_depths:
            params = {
                "objective": "binary:logistic",
                "eval_metric": "auc",
                "tree_method": "hist",
                "max_depth": depth,
                "eta": self.learning_rate,
                "min_child_weight": self.min_child_weight,
                "subsample": self.subsample,
                "colsample_bytree": self.colsample_bytree,
                "seed": seed,
                "nthread": threads,
                "device": xgboost_device(context.device),
            }
            booster = xgb.train(
                params, train, self.max_rounds, evals=[(valid, "valid")],
                early_stopping_rounds=self.early_stopping_rounds, verbose_eval=False,
            )
            valid_auc_by_depth[depth] = float(booster.best_score)
            if best is None or booster.best_score > best[1].best_score:
                best = (depth, booster)
        assert best is not None
        self.max_depth_, booster = best
        # xgb.train returns every round it ran; the importance belongs to the early-stopped model.
        self.rounds_ = booster.best_iteration + 1
        gain = booster[: self.rounds_].get_score(importance_type="total_gain")
        self.valid_auc_by_depth_ = valid_auc_by_depth
        self.rows_used_, self.valid_rows_used_, self.threads_ = len(X), len(Xv), threads
        self.set_scores(data, [gain.get(f"f{f}", 0.0) for f in range(data.num_fields)])
        return self

    def describe(self) -> dict[str, Any]:
        return {
            "encoding": "native categorical",
            "chosen_max_depth": self.max_depth_,
            "valid_auc_by_depth": self.valid_auc_by_depth_,
            "valid_auc": self.valid_auc_by_depth_[self.max_depth_],
            "rounds": self.rounds_,
            "rows_used": self.rows_used_,
            "valid_rows_used": self.valid_rows_used_,
            "threads": self.threads_,
        }
