"""The contract every registered selector meets (SPEC §9), checked on tiny synthetic data.

Parametrised over ``available_methods()`` after importing the method modules that exist, so a new
method — built in, or installed through the entry-point group — is covered without editing this file.
The example plug-in of ``examples/plugin/`` joins them through the registry's entry-point path
(installed nowhere: its entry point is faked), so the README's package is checked like a built-in.
Each case takes seconds on 2 cores (3,000 rows, a one-layer backbone, at most 2 epochs); nothing here
asserts timings.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.utils.validation import check_is_fitted

from fmpbench.data.prepared import Split
from fmpbench.data.synthetic import make_synthetic
from fmpbench.protocol import ExperimentConfig, Task, run_task
from fmpbench.selectors import SearchContext, Selector, available_methods, get_selector_class, registry
from fmpbench.training import TrainConfig

EXAMPLE_PLUGIN = Path(__file__).resolve().parents[1] / "examples" / "plugin"
PLUGIN_ENTRY_POINT = metadata.EntryPoint("rategain", "fmpbench_rategain:RateGain", registry.ENTRY_POINT_GROUP)
METHODS = [*available_methods(), PLUGIN_ENTRY_POINT.name]
BACKBONE_PARAMS = {"embed_dim": 4, "hidden": (16,)}
TRAIN_CONFIG = TrainConfig(max_epochs=2, batch_size=256, patience=1)
K = 5


def tiny_context(seed: int = 0) -> SearchContext:
    return SearchContext(seed=seed, backbone="mlp", backbone_params=dict(BACKBONE_PARAMS), train_config=TRAIN_CONFIG)


def _with_plugin(entry_points: Callable[..., Any]) -> Callable[..., Any]:
    """``entry_points`` that also lists the example plug-in in fmpbench's group (other groups unchanged)."""

    def patched(**selection: Any) -> Any:
        if selection.get("group") == registry.ENTRY_POINT_GROUP:
            return [PLUGIN_ENTRY_POINT]
        return entry_points(**selection)

    return patched


@pytest.fixture(scope="module", autouse=True)
def example_plugin_installed():
    """The registry as it is once ``pip install examples/plugin`` has run, for this module only."""
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(EXAMPLE_PLUGIN))
        patch.setattr(registry.metadata, "entry_points", _with_plugin(registry.metadata.entry_points))
        patch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
        patch.setattr(registry, "_PLUGINS", [])
        patch.setattr(registry, "_entry_points_loaded", False)
        assert registry.plugin_methods() == [PLUGIN_ENTRY_POINT.name]
        yield
    sys.modules.pop("fmpbench_rategain", None)


@pytest.fixture(scope="module")
def data():
    return make_synthetic(n_rows=3000, seed=0)


@pytest.fixture(scope="module")
def fitted(data):
    """One direct fit per method (seed 0), shared by the checks that only read its result.

    Global RNGs are seeded with an unrelated value first: a selector's randomness must come from
    ``context.seed`` alone (the harness run below starts from other global states).
    """
    cache: dict[str, tuple[Selector, Selector]] = {}

    def get(method: str) -> tuple[Selector, Selector]:
        if method not in cache:
            np.random.seed(12345)
            torch.manual_seed(12345)
            selector = get_selector_class(method)()
            cache[method] = (selector, selector.fit(data, tiny_context()))
        return cache[method]

    return get


@pytest.fixture(scope="module")
def harness_records(data, tmp_path_factory):
    """One harness task per method (search, top-K retrain, test) on data whose *test* labels are
    flipped, so that comparing its scores with :func:`fitted`'s also shows the search never reads test.
    """
    flipped = dataclasses.replace(data, test=Split(data.test.X, 1.0 - data.test.y))
    config = ExperimentConfig(
        dataset="synthetic",
        backbone="mlp",
        backbone_params=dict(BACKBONE_PARAMS),
        train_config=TRAIN_CONFIG,
        save_predictions=False,
    )
    cache: dict[str, tuple[list[dict], Path]] = {}

    def get(method: str) -> tuple[list[dict], Path]:
        if method not in cache:
            results_dir = tmp_path_factory.mktemp(f"results_{method}")
            cache[method] = (run_task(Task(method, seed=0, ks=(K,)), config, flipped, results_dir), results_dir)
        return cache[method]

    return get


@pytest.mark.parametrize("method", METHODS)
def test_fit_returns_self_with_one_finite_score_per_field(method, fitted, data):
    selector, returned = fitted(method)
    assert returned is selector
    scores = selector.scores_
    assert isinstance(scores, np.ndarray) and scores.dtype == np.float64
    assert scores.shape == (data.num_fields,)
    assert np.all(np.isfinite(scores))
    assert selector.n_features_in_ == data.num_fields
    assert selector.feature_names_in_ == data.field_names
    assert isinstance(selector.describe(), dict)


@pytest.mark.parametrize("method", METHODS)
def test_same_seed_gives_identical_scores_without_reading_test(method, fitted, harness_records):
    first, _ = fitted(method)
    records, _ = harness_records(method)
    for record in records:
        assert record["status"] == "ok", record.get("error")
        assert list(record["field_scores"].values()) == first.scores_.tolist()


@pytest.mark.parametrize("method", METHODS)
def test_get_support_keeps_exactly_k_top_fields(method, fitted, data):
    selector, _ = fitted(method)
    order = sorted(range(data.num_fields), key=lambda f: (-selector.scores_[f], f))
    previous: set[int] = set()
    for k in range(1, data.num_fields + 1):
        support = selector.get_support(k)
        assert support.tolist() == sorted(order[:k])
        assert previous < set(support.tolist())
        previous = set(support.tolist())


@pytest.mark.parametrize("method", METHODS)
def test_get_support_rejects_impossible_k(method, fitted, data):
    selector, _ = fitted(method)
    for k in (0, -1, data.num_fields + 1):
        with pytest.raises(ValueError, match=f"between 1 and {data.num_fields}"):
            selector.get_support(k)


@pytest.mark.parametrize("method", METHODS)
def test_get_support_before_fit_is_an_error(method):
    with pytest.raises(NotFittedError, match="fit"):
        get_selector_class(method)().get_support(1)


@pytest.mark.parametrize("method", METHODS)
def test_hyper_parameters_round_trip(method):
    cls = get_selector_class(method)
    params = cls().get_params()
    rebuilt = cls(**params)
    assert rebuilt.get_params() == params
    assert repr(rebuilt).startswith(cls.__name__)


@pytest.mark.parametrize("method", METHODS)
def test_top_k_retrain_has_fewer_embedding_parameters(method, harness_records, data):
    """The harness path: search, top-k, retrain from scratch (and a native pipeline where one exists)."""
    records, results_dir = harness_records(method)
    assert records and len(list(results_dir.glob("*.json"))) == len(records)
    for record in records:
        assert record["status"] == "ok", record.get("error")
        if get_selector_class(method).keeps_all_fields:
            assert record["k"] == data.num_fields
            assert record["embedding_params"] == record["embedding_params_full"]
        else:
            assert record["k"] == K and len(record["selected_fields"]) == K
            assert record["embedding_params"] < record["embedding_params_full"]


def test_random_scores_depend_on_the_seed(data):
    cls = get_selector_class("random")
    a, b = cls().fit(data, tiny_context(0)), cls().fit(data, tiny_context(1))
    assert not np.array_equal(a.scores_, b.scores_)


def test_ties_go_to_the_lower_field_index(data):
    selector = get_selector_class("none")().fit(data, tiny_context())
    assert selector.get_support(3).tolist() == [0, 1, 2]
    scores = np.zeros(data.num_fields)
    scores[[2, 5, 9, 11]] = 1.0
    selector.set_scores(data, scores)
    assert selector.get_support(2).tolist() == [2, 5]
    assert selector.get_support(5).tolist() == [0, 2, 5, 9, 11]


@pytest.mark.parametrize("method", METHODS)
def test_selectors_are_scikit_learn_estimators(method, fitted):
    cls = get_selector_class(method)
    selector = cls()
    params = selector.get_params(deep=True)
    assert params == selector.get_params(deep=False) == cls().get_params()
    twin = clone(selector)
    assert type(twin) is cls and twin is not selector and twin.get_params() == params
    with pytest.raises(NotFittedError):
        check_is_fitted(selector)
    check_is_fitted(fitted(method)[0])
    assert not hasattr(clone(fitted(method)[0]), "scores_")  # a clone is unfitted
    if params:
        name, value = next(iter(params.items()))
        assert selector.set_params(**{name: value}) is selector
        with pytest.raises(ValueError, match="Invalid parameter"):
            selector.set_params(no_such_parameter=1)
