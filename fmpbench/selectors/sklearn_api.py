"""Any fmpbench method as a scikit-learn feature selector on a pandas DataFrame of categorical columns.

``FieldSelector("gbdt", k=5).fit(X, y)`` encodes each column with a vocabulary fitted on the training
part only (values seen fewer than ``min_count`` times, and unseen values, share id 0 — the layout of
:class:`fmpbench.data.PreparedData`), holds out a seeded, stratified ``valid_size`` share of the rows as
the validation split that gate methods tune and stop on, and runs the method's search. There is no
test split: whatever the caller keeps for testing never reaches the search. ``transform`` keeps the k
top-scoring columns, so the selector sits in a ``Pipeline`` before an encoder and a model.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator
from sklearn.feature_selection import SelectorMixin
from sklearn.model_selection import train_test_split
from sklearn.utils.validation import check_is_fitted, validate_data

from fmpbench.data.prepared import PreparedData, Split
from fmpbench.selectors.base import SearchContext, Selector
from fmpbench.selectors.registry import get_selector_class

_OWN_PARAMS = ("method", "k", "valid_size", "min_count", "user_column", "random_state", "context")


class FieldSelector(SelectorMixin, BaseEstimator):
    """Keep the ``k`` columns that fmpbench method ``method`` scores highest.

    ``method``: a registered name (``python -m fmpbench list methods``); further keyword arguments are
    that method's hyper-parameters (``FieldSelector("lasso", k=5, max_rows=50_000)``). ``valid_size``: share of
    the rows held out for the search's validation split. ``min_count``: a value must occur this often
    in the training part to get its own id. ``user_column``: the column that identifies a user, for
    methods that use it. ``random_state``: seed of the split and of the search. ``context``: a
    :class:`SearchContext` for deep methods (backbone, trainer settings, device); its seed is replaced
    by ``random_state``.

    Fitted attributes: ``scores_`` (one per column, higher = keep), ``selector_`` (the fitted
    :class:`Selector`), ``vocabularies_`` (one ``pd.Index`` per column; position + 1 is the id),
    ``classes_`` (the two labels; the second is the positive class), ``n_features_in_`` and, for a
    DataFrame, ``feature_names_in_``. Changing ``k`` with ``set_params`` needs no refit.
    """

    def __init__(
        self,
        method: str = "gbdt",
        k: int = 5,
        *,
        valid_size: float = 0.2,
        min_count: int = 1,
        user_column: str | None = None,
        random_state: int = 0,
        context: SearchContext | None = None,
        **params: Any,
    ) -> None:
        self.method = method
        self.k = k
        self.valid_size = valid_size
        self.min_count = min_count
        self.user_column = user_column
        self.random_state = random_state
        self.context = context
        self.params = params

    # scikit-learn reads parameters from the signature; the method's own ones live in ``params``
    def get_params(self, deep: bool = True) -> dict[str, Any]:
        return {**{name: getattr(self, name) for name in _OWN_PARAMS}, **self.params}

    def set_params(self, **params: Any) -> FieldSelector:
        method_params = get_selector_class(params.get("method", self.method))().get_params()
        for name, value in params.items():
            if name in _OWN_PARAMS:
                setattr(self, name, value)
            elif name in method_params:
                self.params[name] = value
            else:
                raise ValueError(f"Invalid parameter {name!r} for FieldSelector({self.method!r})")
        return self

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True  # a missing value is one more category
        tags.input_tags.string = True
        tags.input_tags.categorical = True
        tags.target_tags.required = True
        return tags

    def fit(self, X: Any, y: Any) -> FieldSelector:
        columns, labels = validate_data(self, X, y, dtype=None, ensure_all_finite=False)
        self.classes_ = np.unique(labels)
        if len(self.classes_) != 2:
            raise ValueError(f"FieldSelector needs a binary label; y has {len(self.classes_)} classes")
        target = (labels == self.classes_[1]).astype(np.float32)
        rows = np.arange(len(target))
        train, valid = train_test_split(
            rows, test_size=self.valid_size, random_state=self.random_state, stratify=target
        )
        train, valid = np.sort(train), np.sort(valid)
        self.vocabularies_ = [self._vocabulary(pd.Series(columns[train, j])) for j in range(columns.shape[1])]
        encoded = np.column_stack(
            [vocab.get_indexer(pd.Series(columns[:, j])) + 1 for j, vocab in enumerate(self.vocabularies_)]
        ).astype(np.int32)
        data = self._prepared(encoded, target, train, valid)
        context = self.context or SearchContext()
        context = SearchContext(
            self.random_state, context.backbone, dict(context.backbone_params), context.train_config
        )
        self.selector_: Selector = get_selector_class(self.method)(**self.params).fit(data, context)
        self.scores_ = self.selector_.scores_
        return self

    def _vocabulary(self, values: pd.Series) -> pd.Index:
        counts = values.value_counts(dropna=False)
        return pd.Index(counts.index[counts.to_numpy() >= self.min_count])

    def _prepared(self, encoded: np.ndarray, target: np.ndarray, train: np.ndarray, valid: np.ndarray) -> PreparedData:
        names = [str(n) for n in getattr(self, "feature_names_in_", [f"x{j}" for j in range(encoded.shape[1])])]
        if self.user_column is not None and self.user_column not in names:
            raise ValueError(f"user_column {self.user_column!r} is not a column; columns: {', '.join(names)}")
        digest = hashlib.sha256(encoded.tobytes() + target.tobytes() + train.tobytes()).hexdigest()[:16]
        empty = Split(np.zeros((0, encoded.shape[1]), dtype=np.int32), np.zeros(0, dtype=np.float32))
        return PreparedData(
            name="dataframe",
            field_names=names,
            field_dims=[len(vocab) + 1 for vocab in self.vocabularies_],
            train=Split(np.ascontiguousarray(encoded[train]), target[train]),
            valid=Split(np.ascontiguousarray(encoded[valid]), target[valid]),
            test=empty,
            fingerprint=digest,
            data_source="dataframe",
            info={"user_field": self.user_column} if self.user_column else {},
        )

    def _get_support_mask(self) -> np.ndarray:
        check_is_fitted(self)
        mask = np.zeros(len(self.scores_), dtype=bool)
        mask[self.selector_.get_support(self.k)] = True
        return mask
