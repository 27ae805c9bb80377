"""``FieldSelector``: any fmpbench method as a scikit-learn selector on a DataFrame of categorical columns."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder

import fmpbench
from fmpbench import FieldSelector
from fmpbench.data.synthetic import make_synthetic
from fmpbench.selectors import Selector, registry


@pytest.fixture(scope="module")
def frames() -> tuple[pd.DataFrame, pd.Series, pd.DataFrame, pd.Series, list[str]]:
    """make_synthetic's rows as string categories: (train X, y, test X, y, the planted strong fields)."""
    data = make_synthetic(n_rows=6000, seed=0)

    def frame(X: np.ndarray, y: np.ndarray) -> tuple[pd.DataFrame, pd.Series]:
        values = {name: [f"{name}={v}" for v in X[:, j]] for j, name in enumerate(data.field_names)}
        return pd.DataFrame(values), pd.Series(np.where(y > 0.5, "click", "no"), name="label")

    X_train, y_train = frame(np.concatenate([data.train.X, data.valid.X]), np.concatenate([data.train.y, data.valid.y]))
    X_test, y_test = frame(data.test.X, data.test.y)
    return X_train, y_train, X_test, y_test, data.truth.strong


def test_pipeline_fits_and_predicts_on_a_dataframe(frames):
    X_train, y_train, X_test, y_test, strong = frames
    pipe = Pipeline(
        [
            ("select", FieldSelector("gbdt", k=5)),
            ("enc", OneHotEncoder(handle_unknown="ignore")),
            ("lr", LogisticRegression(max_iter=1000)),
        ]
    )
    pipe.fit(X_train, y_train)
    kept = pipe.named_steps["select"].get_feature_names_out().tolist()
    assert len(kept) == 5 and set(strong) <= set(kept)
    proba = pipe.predict_proba(X_test)[:, list(pipe.classes_).index("click")]
    assert roc_auc_score(y_test == "click", proba) > 0.7
    assert set(pipe.predict(X_test)) <= {"click", "no"}


def test_support_names_and_transform_agree(frames):
    X_train, y_train, *_ = frames
    selector = FieldSelector("lasso", k=4).fit(X_train, y_train)
    mask = selector.get_support()
    assert mask.dtype == bool and mask.sum() == 4
    assert selector.get_feature_names_out().tolist() == X_train.columns[mask].tolist()
    assert selector.get_support(indices=True).tolist() == selector.selector_.get_support(4).tolist()
    assert np.array_equal(selector.transform(X_train), X_train.loc[:, mask].to_numpy())
    frame = clone(selector).set_output(transform="pandas").fit(X_train, y_train).transform(X_train)
    assert frame.columns.tolist() == selector.get_feature_names_out().tolist()
    assert selector.set_params(k=2).get_support().sum() == 2  # one search serves every k


def test_clone_get_and_set_params_carry_the_methods_own_parameters():
    selector = FieldSelector("lasso", k=3, max_rows=500)
    assert selector.get_params()["max_rows"] == 500 and selector.get_params()["k"] == 3
    twin = clone(selector)
    assert twin.get_params() == selector.get_params() and twin is not selector
    assert twin.set_params(max_rows=900, k=2).get_params()["max_rows"] == 900
    assert selector.get_params()["max_rows"] == 500  # the clone's parameters are its own
    with pytest.raises(ValueError, match="Invalid parameter 'bogus'"):
        twin.set_params(bogus=1)
    with pytest.raises(NotFittedError):
        twin.get_support()


def test_the_search_sees_train_only_vocabularies_and_no_test(frames, monkeypatch):
    X_train, y_train, *_ = frames
    seen = {}

    class Spy(Selector):
        """Records what the search was given."""

        name = "spy-sklearn-api"

        def fit(self, data, context=None):
            seen["data"], seen["context"] = data, context
            self.set_scores(data, np.arange(data.num_fields, dtype=float))
            return self

    monkeypatch.setitem(registry._REGISTRY, Spy.name, Spy)
    fitted = FieldSelector(Spy.name, k=2, valid_size=0.25, random_state=7).fit(X_train.head(1000), y_train.head(1000))
    data = seen["data"]
    assert len(data.train) == 750 and len(data.valid) == 250 and len(data.test) == 0 and data.truth is None
    assert seen["context"].seed == 7
    assert data.field_names == X_train.columns.tolist()
    for j, vocabulary in enumerate(fitted.vocabularies_):
        assert data.field_dims[j] == len(vocabulary) + 1
        # every vocabulary entry comes from the training part; a value only the valid part has is id 0
        assert set(np.unique(data.train.X[:, j]).tolist()) == set(range(1, len(vocabulary) + 1))
    assert (data.valid.X[:, data.field_names.index("hc_noise_0")] == 0).any()


def test_fieldselector_is_exported_lazily():
    assert fmpbench.FieldSelector is FieldSelector
    with pytest.raises(AttributeError):
        fmpbench.no_such_name  # noqa: B018
