"""Synthetic ground-truth data, stand-ins and ``get_dataset`` dispatch."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from fmpbench.data import DATASETS, get_dataset, make_standin, make_synthetic
from fmpbench.data.readers import AVAZU_FIELDS, CRITEO_FIELDS, MOVIELENS_FIELDS


@pytest.fixture(scope="module")
def syn():
    return make_synthetic(n_rows=30_000, seed=0)


def _univariate_auc(d, f: int) -> float:
    """Test AUC of a smoothed per-value train click rate of field ``f`` (a one-field model)."""
    x_tr, y_tr = d.train.X[:, f], d.train.y
    dim = d.field_dims[f]
    s = np.bincount(x_tr, weights=y_tr, minlength=dim)
    c = np.bincount(x_tr, minlength=dim)
    rate = (s + 5 * y_tr.mean()) / (c + 5)
    return roc_auc_score(d.test.y, rate[d.test.X[:, f]])


def test_synthetic_contract(syn):
    roles = syn.truth.roles
    assert list(roles) == syn.field_names
    counts = {r: sum(v == r for v in roles.values()) for r in set(roles.values())}
    assert counts == {"strong": 3, "weak": 3, "interaction": 4, "redundant": 2, "high_card_noise": 3, "noise": 3}
    assert syn.truth.pairs == (("inter_a", "inter_b"), ("inter_c", "inter_d"))
    assert syn.truth.copies == {"redundant_0": "strong_0", "redundant_1": "strong_0"}
    assert syn.data_source == "synthetic" and syn.name == "synthetic"
    assert len(syn.train) + len(syn.valid) + len(syn.test) == 30_000
    assert len(syn.train) == 24_000 and len(syn.valid) == 3_000 and len(syn.test) == 3_000
    for split in (syn.train, syn.valid, syn.test):
        assert split.X.dtype == np.int32 and split.y.dtype == np.float32
        assert split.X.min() >= 0 and (split.X.max(axis=0) < np.array(syn.field_dims)).all()
    assert 0.18 < syn.train.y.mean() < 0.22
    hc = [syn.field_dims[syn.field_names.index(f)] for f, r in roles.items() if r == "high_card_noise"]
    assert min(hc) > 500


def test_synthetic_deterministic():
    a, b = make_synthetic(n_rows=5000, seed=3), make_synthetic(n_rows=5000, seed=3)
    c = make_synthetic(n_rows=5000, seed=4)
    assert a.fingerprint == b.fingerprint != c.fingerprint
    np.testing.assert_array_equal(a.train.X, b.train.X)
    np.testing.assert_array_equal(a.test.y, b.test.y)
    assert not np.array_equal(a.train.X, c.train.X)


def test_synthetic_truth_is_recoverable(syn):
    auc = {f: _univariate_auc(syn, j) for j, f in enumerate(syn.field_names)}
    roles = syn.truth.roles
    strong = [auc[f] for f in syn.truth.strong]
    noise = [auc[f] for f, r in roles.items() if r in ("noise", "high_card_noise")]
    assert min(strong) > max(noise) + 0.05, auc
    # Interaction fields carry no marginal signal on their own, although their margins are skewed ...
    for f, r in roles.items():
        if r == "interaction":
            assert abs(auc[f] - 0.5) < 0.03, (f, auc[f])
            counts = np.bincount(syn.train.X[:, syn.field_names.index(f)])
            assert counts.max() > 2 * counts[counts > 0].mean()  # Zipf, not uniform
    # ... but their pair does.
    a, b = (syn.field_names.index(f) for f in syn.truth.pairs[0])
    pair = syn.train.X[:, a].astype(np.int64) * syn.field_dims[b] + syn.train.X[:, b]
    dim = syn.field_dims[a] * syn.field_dims[b]
    s = np.bincount(pair, weights=syn.train.y, minlength=dim)
    c = np.bincount(pair, minlength=dim)
    rate = (s + 1) / (c + 5)
    pair_te = syn.test.X[:, a].astype(np.int64) * syn.field_dims[b] + syn.test.X[:, b]
    assert roc_auc_score(syn.test.y, rate[pair_te]) > 0.6


def test_synthetic_redundant_copy_is_a_function_of_its_source(syn):
    src = syn.field_names.index("strong_0")
    for name in ("redundant_0", "redundant_1"):
        j = syn.field_names.index(name)
        X = syn.train.X
        keep = (X[:, src] > 0) & (X[:, j] > 0)
        pairs = set(zip(X[keep, src].tolist(), X[keep, j].tolist()))
        assert len(pairs) == len({s for s, _ in pairs}), name  # each source value -> one copy value


def test_synthetic_logistic_regression_learns_it():
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import OneHotEncoder

    d = make_synthetic(n_rows=25_000, seed=1)
    enc = OneHotEncoder(handle_unknown="ignore").fit(d.train.X)
    lr = LogisticRegression(max_iter=300, C=0.5).fit(enc.transform(d.train.X), d.train.y)
    assert roc_auc_score(d.test.y, lr.predict_proba(enc.transform(d.test.X))[:, 1]) >= 0.75


@pytest.mark.parametrize(
    "name,fields,rate",
    [
        ("criteo", CRITEO_FIELDS, 0.25),
        ("avazu", AVAZU_FIELDS, 0.17),
        ("movielens", MOVIELENS_FIELDS, 0.57),
        ("amazon", None, 0.80),
    ],
)
def test_standins(name, fields, rate):
    d = make_standin(name, n_rows=50_000, seed=0)
    assert d.name == name and d.data_source == f"standin:{name}"
    if fields is not None:
        assert d.field_names == fields
    assert len(d.train) == 40_000
    assert abs(float(d.train.y.mean()) - rate) < 0.02
    assert d.truth is not None and d.truth.strong and set(d.truth.roles) == set(d.field_names)
    for split in (d.train, d.valid, d.test):
        assert (split.X < np.array(d.field_dims)).all() and split.X.min() >= 0
    again = make_standin(name, n_rows=50_000, seed=0)
    np.testing.assert_array_equal(d.valid.X, again.valid.X)
    assert again.fingerprint == d.fingerprint != make_standin(name, n_rows=50_000, seed=1).fingerprint


def test_criteo_standin_cardinalities_are_realistic():
    d = make_standin("criteo", seed=0)
    card = d.info["cardinalities"]
    assert card["C3"] >= 10_000 and 3 <= card["C9"] <= 30 and card["C20"] < 30


def test_get_dataset_dispatch(tmp_path):
    assert DATASETS == ("criteo", "avazu", "movielens", "movielens100k", "amazon", "synthetic")
    assert get_dataset("synthetic", n_rows=2000).data_source == "synthetic"
    d = get_dataset("avazu", tmp_path, n_rows=2000, seed=1)  # nothing prepared there
    assert d.data_source == "standin:avazu" and len(d.train) == 1600
    assert get_dataset("movielens").data_source == "standin:movielens"
    msg = r"unknown dataset 'x'; choose from: criteo, avazu, movielens, movielens100k, amazon, synthetic"
    with pytest.raises(ValueError, match=msg):
        get_dataset("x")


def test_interaction_fields_have_no_main_effect_under_their_own_margins(syn):
    """The planted value vectors are centred under each field's Zipf margin (E[s] = 0, E[s²] = 1)."""
    from fmpbench.data.synthetic import _centred_signs, _zipf_draw

    rng = np.random.default_rng(0)
    _, prob = _zipf_draw(rng, 30, 1.0, 10)
    s = _centred_signs(rng, prob)
    assert prob @ s == pytest.approx(0, abs=1e-12) and prob @ s**2 == pytest.approx(1)


def test_truth_scores_pairs_whole_and_counts_wasted_budget(syn):
    truth = syn.truth
    score = truth.score(["strong_0", "redundant_0", "redundant_1", "inter_a", "inter_b", "inter_c", "noise_0"])
    assert score["pair_recall"] == 0.5  # inter_c without inter_d counts for nothing
    assert score["wasted_on_copies"] == 2 and score["wasted_on_noise"] == 1
    assert score["budget_wasted"] == pytest.approx(3 / 7)
    assert score["recall_informative"] == pytest.approx(4 / 10) and score["recall_strong"] == pytest.approx(1 / 3)
    assert truth.score(["redundant_0", "weak_0"])["wasted_on_copies"] == 0  # a copy alone still carries signal
