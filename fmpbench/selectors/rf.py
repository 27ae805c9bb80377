"""``rf``: random forest on target + frequency encoded fields; field score = permutation AUC drop."""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.ensemble import RandomForestClassifier

from fmpbench.data.prepared import PreparedData
from fmpbench.selectors.base import SearchContext, Selector
from fmpbench.selectors.encoding import subsample, thread_budget, tree_encode
from fmpbench.selectors.registry import register
from fmpbench.training.metrics import auc

IMPORTANCES = ("permutation", "impurity")


@register
class RandomForestSelector(Selector):
    """scikit-learn ``RandomForestClassifier`` (Breiman, Machine Learning 2001) on encoded fields.

    Encoding: each field becomes two numeric columns — its smoothed target encoding (Micci-Barreca
    2001), computed *out of fold* on the training rows so a tree cannot memorise the label through it,
    and its frequency among the training rows. Validation rows are encoded with all training rows.
    ERASE feeds label-encoded ids as numbers ✗: splits then follow an arbitrary id order, and impurity
    importance rewards fields with many ids; here a split threshold means "rarer than" or "riskier
    than", whatever the cardinality.

    Field score (``importance``):

    * ``"permutation"`` (default; Breiman 2001, Fisher et al. JMLR 2019): mean drop of validation AUC
      over ``n_repeats`` row permutations of the field — both of its columns permuted together, so a
      field is never half-shuffled. Measured on held-out rows, it does not reward fields the forest
      merely overfits; it may be slightly negative for useless fields.
    * ``"impurity"``: mean decrease in impurity summed over the field's two columns — no validation
      predictions, so faster, but measured on the training rows, where even a constant field's
      out-of-fold encoding varies a little from fold to fold and earns a small spurious score.

    Other defaults: ``n_estimators=100``, ``max_depth=12``, ``min_samples_leaf=50``,
    ``max_features="sqrt"`` (small trees keep a search at seconds), ``folds=5`` and
    ``smoothing=20`` for the target encoding, ``n_repeats=3``, ``max_rows=100_000`` training rows and
    ``max_valid_rows=50_000`` validation rows (uniform subsamples, recorded), ``n_jobs=None`` = the
    process's thread budget (every core, or its share under ``--jobs``).
    """

    name = "rf"
    search_cost = 4.0

    def __init__(
        self,
        importance: str = "permutation",
        n_estimators: int = 100,
        max_depth: int | None = 12,
        min_samples_leaf: int = 50,
        max_features: str | float = "sqrt",
        folds: int = 5,
        smoothing: float = 20.0,
        n_repeats: int = 3,
        max_rows: int | None = 100_000,
        max_valid_rows: int | None = 50_000,
        n_jobs: int | None = None,
    ) -> None:
        self.importance = importance
        self.n_estimators = n_estimators
        self.max_depth = max_depth
        self.min_samples_leaf = min_samples_leaf
        self.max_features = max_features
        self.folds = folds
        self.smoothing = smoothing
        self.n_repeats = n_repeats
        self.max_rows = max_rows
        self.max_valid_rows = max_valid_rows
        self.n_jobs = n_jobs

    def fit(self, data: PreparedData, context: SearchContext | None = None) -> RandomForestSelector:
        if self.importance not in IMPORTANCES:
            raise ValueError(f"rf: unknown importance {self.importance!r}; choose from: {', '.join(IMPORTANCES)}")
        if self.importance == "permutation" and self.n_repeats < 1:
            raise ValueError(f"rf: n_repeats must be >= 1, got {self.n_repeats}")
        seed = (context or SearchContext()).seed
        X, y = subsample(data.train, self.max_rows, seed)
        Xv, yv = subsample(data.valid, self.max_valid_rows, seed + 1)
        train, valid = tree_encode(X, y, Xv, data.field_dims, self.folds, seed, self.smoothing)
        forest = RandomForestClassifier(
            n_estimators=self.n_estimators,
            max_depth=self.max_depth,
            min_samples_leaf=self.min_samples_leaf,
            max_features=self.max_features,
            n_jobs=self.n_jobs or thread_budget(),
            random_state=seed,
        ).fit(train, y)
        self.valid_auc_ = auc(yv, forest.predict_proba(valid)[:, 1])
        num_fields = data.num_fields
        if self.importance == "impurity":
            scores = forest.feature_importances_[:num_fields] + forest.feature_importances_[num_fields:]
        else:
            scores = self._permutation_drop(forest, valid, yv, num_fields, seed)
        self.rows_used_, self.valid_rows_used_ = len(X), len(Xv)
        self.set_scores(data, scores)
        return self

    def _permutation_drop(
        self, forest: RandomForestClassifier, valid: np.ndarray, y: np.ndarray, num_fields: int, seed: int
    ) -> np.ndarray:
        """Mean validation-AUC drop when field f's rows are shuffled (its two columns as one)."""
        rng = np.random.default_rng(seed)
        drops = np.zeros(num_fields)
        shuffled = valid.copy()
        for f in range(num_fields):
            columns = [f, num_fields + f]
            for _ in range(self.n_repeats):
                shuffled[:, columns] = valid[np.ix_(rng.permutation(len(valid)), columns)]
                drops[f] += self.valid_auc_ - auc(y, forest.predict_proba(shuffled)[:, 1])
            shuffled[:, columns] = valid[:, columns]
        return drops / self.n_repeats

    def describe(self) -> dict[str, Any]:
        return {
            "encoding": "out-of-fold target + frequency",
            "valid_auc": self.valid_auc_,
            "rows_used": self.rows_used_,
            "valid_rows_used": self.valid_rows_used_,
        }
