"""What is specific to the filter methods gbdt, rf and pca, and to their shared encodings.

The shared contract (fit returns self, determinism, top-k) is in ``test_selector_contract.py`` and the
planted-field recovery in ``test_ground_truth.py``; here: encodings without leaks, each method's
documented score definition, subsampling and parameter validation. Data is tiny (seconds per test).
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import pytest
import torch
from sklearn.decomposition import PCA

from fmpbench.data.prepared import PreparedData, Split
from fmpbench.data.synthetic import make_synthetic
from fmpbench.selectors import SearchContext
from fmpbench.selectors.encoding import frequency_encode, thread_budget, tree_encode
from fmpbench.selectors.gbdt import GBDTSelector
from fmpbench.selectors.pca import PCASelector
from fmpbench.selectors.rf import RandomForestSelector

CONTEXT = SearchContext(seed=0)


@pytest.fixture(scope="module")
def data() -> PreparedData:
    return make_synthetic(n_rows=4000, seed=0)


def with_constant_field(data: PreparedData, field: int) -> PreparedData:
    """``data`` with field ``field`` replaced by a single id in every split."""

    def flat(split: Split) -> Split:
        X = split.X.copy()
        X[:, field] = 1
        return Split(X, split.y)

    dims = list(data.field_dims)
    dims[field] = 2
    return dataclasses.replace(
        data, field_dims=dims, train=flat(data.train), valid=flat(data.valid), test=flat(data.test)
    )


def renumbered(data: PreparedData, seed: int) -> PreparedData:
    """``data`` with every field's non-OOV ids renumbered by a random permutation."""
    rng = np.random.default_rng(seed)
    maps = [np.concatenate([[0], 1 + rng.permutation(dim - 1)]).astype(np.int32) for dim in data.field_dims]

    def renumber(split: Split) -> Split:
        return Split(np.stack([m[split.X[:, f]] for f, m in enumerate(maps)], axis=1), split.y)

    return dataclasses.replace(data, train=renumber(data.train), valid=renumber(data.valid), test=renumber(data.test))


# --- encodings --------------------------------------------------------------------------------


def test_out_of_fold_target_encoding_never_sees_the_rows_own_label():
    # Every row has its own id, so any dependence of a row's encoding on its label would be a leak.
    n = 200
    X = np.arange(n, dtype=np.int32).reshape(-1, 1)
    y = (np.arange(n) % 3 == 0).astype(np.float32)
    encoded, _ = tree_encode(X, y, X, [n], folds=5, seed=0)
    flipped = y.copy()
    flipped[7] = 1 - flipped[7]
    encoded_flipped, _ = tree_encode(X, flipped, X, [n], folds=5, seed=0)
    assert encoded[7, 0] == encoded_flipped[7, 0]
    assert encoded[7, 1] == pytest.approx(1 / n)


def test_tree_encoding_of_evaluation_rows_uses_all_fitting_rows():
    X_fit = np.array([[0], [1], [1], [1]], dtype=np.int32)
    y_fit = np.array([0, 1, 1, 0], dtype=np.float32)
    X_eval = np.array([[1], [0]], dtype=np.int32)
    _, evaluation = tree_encode(X_fit, y_fit, X_eval, [2], folds=2, seed=0, smoothing=1.0)
    # smoothed towards the prior 0.5 with weight 1: id 1 → (2 + 0.5) / (3 + 1), id 0 → (0 + 0.5) / (1 + 1)
    np.testing.assert_allclose(evaluation, [[0.625, 0.75], [0.25, 0.25]])


def test_thread_budget_follows_torch_and_never_exceeds_the_cores():
    previous, cores = torch.get_num_threads(), len(os.sched_getaffinity(0))
    try:
        torch.set_num_threads(1)  # what a worker of --jobs N gets on N cores
        assert thread_budget() == 1
        torch.set_num_threads(cores + 1)
        assert thread_budget() == cores
    finally:
        torch.set_num_threads(previous)


# --- gbdt -------------------------------------------------------------------------------------


def test_gbdt_scores_are_total_gains_and_unused_fields_score_zero(data):
    constant = with_constant_field(data, 3)
    selector = GBDTSelector(max_depths=(3,)).fit(constant, CONTEXT)
    assert selector.scores_[3] == 0.0
    assert np.all(selector.scores_ >= 0) and selector.scores_.sum() > 0
    assert data.field_names[int(np.argmax(selector.scores_))].startswith(("strong", "redundant_0"))


def test_gbdt_chooses_depth_on_validation_and_records_it(data):
    selector = GBDTSelector(max_depths=(2, 4), max_rows=1500).fit(data, CONTEXT)
    info = selector.describe()
    assert info["chosen_max_depth"] in (2, 4)
    assert info["valid_auc"] == max(info["valid_auc_by_depth"].values())
    assert info["rows_used"] == 1500 and info["valid_rows_used"] == len(data.valid)
    assert 1 <= info["rounds"] <= selector.max_rounds
    assert info["threads"] == thread_budget()


def test_gbdt_stops_early_on_validation(data):
    selector = GBDTSelector(max_depths=(6,), learning_rate=0.5, max_rounds=300, early_stopping_rounds=5)
    selector.fit(data, CONTEXT)
    assert selector.describe()["rounds"] < 300


def test_gbdt_rejects_empty_depth_grid(data):
    with pytest.raises(ValueError, match="max_depths"):
        GBDTSelector(max_depths=()).fit(data, CONTEXT)


# --- rf ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("importance", ["permutation", "impurity"])
def test_rf_constant_field_scores_about_zero_and_signal_ranks_first(data, importance):
    constant = with_constant_field(data, 3)
    selector = RandomForestSelector(importance=importance, n_estimators=30).fit(constant, CONTEXT)
    if importance == "permutation":
        assert selector.scores_[3] == 0.0  # one value on validation rows: shuffling changes nothing
    else:
        # out-of-fold encoding of a constant field still varies by fold, so training-row splits find a
        # little spurious impurity decrease — the reason permutation is the default
        assert 0.0 <= selector.scores_[3] < 0.1 * selector.scores_.max()
    top = {data.field_names[f] for f in selector.ranking()[:4]}
    assert len(top & {"strong_0", "strong_1", "strong_2", "redundant_0", "redundant_1"}) >= 3


def test_rf_scores_are_exactly_invariant_to_id_numbering(data):
    """Target and frequency encodings depend on counts and labels only — unlike ERASE's label codes."""
    original = RandomForestSelector(n_estimators=20).fit(data, CONTEXT)
    relabelled = RandomForestSelector(n_estimators=20).fit(renumbered(data, 2), CONTEXT)
    np.testing.assert_array_equal(original.scores_, relabelled.scores_)


def test_rf_permutation_scores_are_validation_auc_drops(data):
    selector = RandomForestSelector(n_estimators=20, max_valid_rows=300).fit(data, CONTEXT)
    info = selector.describe()
    assert info["valid_rows_used"] == 300 and info["rows_used"] == len(data.train)
    noise = [f for f, name in enumerate(data.field_names) if name.startswith("noise")]
    assert np.all(np.abs(selector.scores_[noise]) < 0.02)
    assert 0.01 < selector.scores_.max() < info["valid_auc"] - 0.5


def test_rf_rejects_unknown_importance(data):
    with pytest.raises(ValueError, match="permutation, impurity"):
        RandomForestSelector(importance="gain").fit(data, CONTEXT)


# --- pca --------------------------------------------------------------------------------------


def test_pca_is_label_blind(data):
    flipped = dataclasses.replace(data, train=Split(data.train.X, 1 - data.train.y))
    np.testing.assert_array_equal(PCASelector().fit(data, CONTEXT).scores_, PCASelector().fit(flipped, CONTEXT).scores_)


def test_pca_score_matches_its_definition(data):
    selector = PCASelector(variance_share=0.5).fit(data, CONTEXT)
    X = data.train.X
    encoded = np.log(frequency_encode(X, X, data.field_dims).astype(np.float64))
    encoded = (encoded - encoded.mean(axis=0)) / encoded.std(axis=0)
    pca = PCA().fit(encoded)
    used = int(np.argmax(np.cumsum(pca.explained_variance_ratio_) >= 0.5)) + 1
    expected = pca.explained_variance_ratio_[:used] @ np.abs(pca.components_[:used])
    np.testing.assert_allclose(selector.scores_, expected, rtol=1e-6)
    assert selector.describe()["components_used"] == used
    assert selector.describe()["variance_explained"] >= 0.5


def test_pca_constant_field_scores_zero(data):
    selector = PCASelector().fit(with_constant_field(data, 3), CONTEXT)
    assert selector.scores_[3] == 0.0 and np.all(selector.scores_[np.arange(data.num_fields) != 3] > 0)


def test_pca_subsample_is_recorded(data):
    assert PCASelector(max_rows=1000).fit(data, CONTEXT).describe()["rows_used"] == 1000


@pytest.mark.parametrize("share", [0.0, 1.5])
def test_pca_rejects_impossible_variance_share(data, share):
    with pytest.raises(ValueError, match="variance_share"):
        PCASelector(variance_share=share).fit(data, CONTEXT)
