"""``pca``: a label-blind reference — fields scored by their weight in the main principal components."""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.decomposition import PCA

from fmpbench.data.prepared import PreparedData
from fmpbench.selectors.base import SearchContext, Selector
from fmpbench.selectors.encoding import frequency_encode, subsample
from fmpbench.selectors.registry import register


@register
class PCASelector(Selector):
    """Principal component analysis (Pearson 1901; scikit-learn ``PCA``) of the encoded fields.

    Deliberately **label-blind**: it never reads ``y``, so it measures how much of the fields' joint
    variation a field carries, not how much it tells about clicks. It is the reference that shows what
    a selection without labels achieves; supervised methods should beat it.

    Encoding: each field becomes one column, the log of its id's relative frequency among the
    training rows, standardised to zero mean and unit variance. Frequency needs no labels and does not
    depend on how ids are numbered; ERASE feeds label-encoded ids as numbers ✗, whose variance is
    just the vocabulary size. The log keeps the head of a Zipf-like field from dominating the variance.
    A field with one value has no variance and scores 0.

    Field score = Σ_c explained_variance_ratio_c · |loading_{c,f}| over the leading components that
    together explain ``variance_share`` (default 0.9) of the variance.

    Hyper-parameters (defaults): ``variance_share=0.9``; ``max_rows=200_000`` training rows at most
    (uniform subsample, recorded).
    """

    name = "pca"
    search_cost = 0.1

    def __init__(self, variance_share: float = 0.9, max_rows: int | None = 200_000) -> None:
        self.variance_share = variance_share
        self.max_rows = max_rows

    def fit(self, data: PreparedData, context: SearchContext | None = None) -> PCASelector:
        if not 0.0 < self.variance_share <= 1.0:
            raise ValueError(f"pca: variance_share must be in (0, 1], got {self.variance_share}")
        seed = (context or SearchContext()).seed
        X, _ = subsample(data.train, self.max_rows, seed)
        encoded = np.log(frequency_encode(X, X, data.field_dims).astype(np.float64))
        encoded -= encoded.mean(axis=0)
        std = encoded.std(axis=0)
        varying = std > 1e-12
        scores = np.zeros(data.num_fields)
        self.components_used_, self.variance_explained_ = 0, 0.0
        if varying.any():
            pca = PCA(svd_solver="full").fit(encoded[:, varying] / std[varying])
            ratios = pca.explained_variance_ratio_
            cumulative = np.cumsum(ratios)
            used = min(int(np.searchsorted(cumulative, self.variance_share)) + 1, len(ratios))
            scores[varying] = ratios[:used] @ np.abs(pca.components_[:used])
            self.components_used_, self.variance_explained_ = used, float(cumulative[used - 1])
        self.rows_used_ = len(X)
        self.set_scores(data, scores)
        return self

    def describe(self) -> dict[str, Any]:
        return {
            "encoding": "standardised log frequency (label-blind)",
            "components_used": self.components_used_,
            "variance_explained": self.variance_explained_,
            "rows_used": self.rows_used_,
        }
