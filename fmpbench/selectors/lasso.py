"""``lasso``: L1-regularised logistic regression on one-hot field values."""

from __future__ import annotations

import numpy as np
from sklearn.linear_model import LogisticRegression

from fmpbench.data.prepared import PreparedData
from fmpbench.selectors.base import SearchContext, Selector
from fmpbench.selectors.encoding import field_blocks, one_hot, subsample
from fmpbench.selectors.registry import register
from fmpbench.training.metrics import auc


@register
class LassoSelector(Selector):
    """L1 logistic regression (scikit-learn, ``liblinear``) on sparse one-hot encodings.

    Field score = standard deviation, over validation rows, of the field's contribution to the
    logit (``X_valid[:, block] @ coef[block]``). METHODS.md allows the L2 norm or L1 sum of the
    coefficient block; on one-hot data those grow with cardinality — a noise field with thousands of
    values fits thousands of small training-row coefficients — while its contribution on held-out
    rows stays small. The contribution's spread is the field's effect on predictions that generalise.

    The inverse regularisation ``C`` is chosen from ``Cs`` by AUC on a validation subsample —
    never on test. Fitting uses at most ``max_rows`` training rows (recorded).

    Deviation from ERASE: ERASE fits Lasso on label-encoded ids treated as numbers, which ranks
    fields by code range; one-hot encoding removes that artefact.
    """

    name = "lasso"
    search_cost = 5.0

    def __init__(self, Cs: tuple[float, ...] = (0.01, 0.03, 0.1, 0.3, 1.0), max_rows: int | None = 200_000) -> None:
        self.Cs = Cs
        self.max_rows = max_rows

    def fit(self, data: PreparedData, context: SearchContext | None = None) -> LassoSelector:
        seed = (context or SearchContext()).seed
        X, y = subsample(data.train, self.max_rows, seed)
        Xv, yv = subsample(data.valid, self.max_rows, seed + 1)
        train, valid = one_hot(X, data.field_dims), one_hot(Xv, data.field_dims)
        best: tuple[float, float, np.ndarray] | None = None
        blocks = field_blocks(data.field_dims)
        for C in self.Cs:
            model = LogisticRegression(l1_ratio=1.0, C=C, solver="liblinear", random_state=seed, max_iter=200)
            model.fit(train, y)
            valid_auc = auc(yv, model.decision_function(valid))
            if best is None or valid_auc > best[0]:
                best = (valid_auc, C, model.coef_.ravel())
        assert best is not None
        self.valid_auc_, self.C_, coef = best
        self.rows_used_ = len(X)
        self.set_scores(data, [np.std(valid[:, block] @ coef[block]) for block in blocks])
        return self

    def describe(self) -> dict:
        return {"chosen_C": self.C_, "valid_auc": self.valid_auc_, "rows_used": self.rows_used_}
