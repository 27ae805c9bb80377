"""``permutation``: drop of validation AUC when one field's column is shuffled, on the trained backbone."""

from __future__ import annotations

from typing import Any

import numpy as np

from fmpbench.data.prepared import PreparedData, Split
from fmpbench.selectors.base import SearchContext, Selector
from fmpbench.selectors.encoding import subsample
from fmpbench.selectors.registry import register
from fmpbench.selectors.shark import train_full_backbone, training_info
from fmpbench.training import SplitTensors, auc, predict


@register
class PermutationSelector(Selector):
    """Permutation importance (Breiman, Machine Learning 2001; model-agnostic form of Fisher, Rudin,
    Dominici, JMLR 2019) of the deep backbone, as ERASE (Jia et al., KDD 2024) ships it.

    The run's backbone is trained on every field (its trainer, early stopping on validation AUC).
    Field f scores the mean drop of validation AUC when its column of ids is permuted across the
    validation rows, over ``n_repeats`` seeded permutations (from ``context.seed``); the other
    columns stay intact, so a field's score is what the trained model loses without it. Scores may be
    slightly negative for fields the model does not use.

    Defaults: ``n_repeats=3``, ``max_valid_rows=50_000`` (a seeded uniform subsample of validation,
    recorded; F × n_repeats inference passes over it make the scoring cost).

    Deviations, and why: ERASE permutes on the test split; here only validation rows are used, so
    the search never reads test.
    """

    name = "permutation"
    search_cost = 1.5

    def __init__(self, n_repeats: int = 3, max_valid_rows: int | None = 50_000) -> None:
        self.n_repeats = n_repeats
        self.max_valid_rows = max_valid_rows

    def fit(self, data: PreparedData, context: SearchContext | None = None) -> PermutationSelector:
        if self.n_repeats < 1:
            raise ValueError(f"permutation: n_repeats must be >= 1, got {self.n_repeats}")
        context = context or SearchContext()
        trained = train_full_backbone(data, context)
        X, y = subsample(data.valid, self.max_valid_rows, context.seed + 1)
        batch = context.train_config.eval_batch_size

        def valid_auc(columns: np.ndarray) -> float:
            return auc(y, predict(trained.model, SplitTensors(Split(columns, y), context.device), batch))

        base = valid_auc(X)
        rng = np.random.default_rng(context.seed)
        drops = np.zeros(data.num_fields)
        shuffled = X.copy()
        for f in range(data.num_fields):
            for _ in range(self.n_repeats):
                shuffled[:, f] = X[rng.permutation(len(X)), f]
                drops[f] += base - valid_auc(shuffled)
            shuffled[:, f] = X[:, f]
        self._set_scores(data, drops / self.n_repeats)
        self.search_info_ = training_info(trained.result) | {"valid_auc": base, "valid_rows_used": len(X)}
        return self

    def describe(self) -> dict[str, Any]:
        return dict(self.search_info_)
