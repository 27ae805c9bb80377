import dataclasses

import numpy as np
import pytest
from sklearn.metrics import log_loss, ndcg_score, roc_auc_score

from fmpbench.data.synthetic import make_synthetic
from fmpbench.training.metrics import auc, gauc, logloss, ndcg_at_k, user_grouped_metrics


@pytest.mark.parametrize("seed", range(5))
def test_auc_and_logloss_match_sklearn(seed):
    rng = np.random.default_rng(seed)
    y = (rng.random(5000) < 0.3).astype(np.float32)
    p = np.clip(rng.random(5000) * 0.5 + y * 0.3, 0, 1)
    p[:500] = np.round(p[:500], 1)  # heavy ties
    assert auc(y, p) == pytest.approx(roc_auc_score(y, p), abs=1e-6)
    assert logloss(y, p) == pytest.approx(log_loss(y, np.clip(p, 1e-7, 1 - 1e-7)), abs=1e-6)


def test_auc_of_tensors_and_strided_arrays_is_the_same_number_as_of_arrays(monkeypatch):
    """The trainer computes validation AUC where the scores are (a GPU's tensors); it must be the same
    float as the NumPy path's, or early stopping would depend on the device."""
    import torch
    from scipy.stats import rankdata

    rng = np.random.default_rng(3)
    y = (rng.random(20_000) < 0.2).astype(np.float32)
    p = np.round(rng.random(20_000) * 0.6 + y * 0.2, 3).astype(np.float32)  # many ties
    ranks = rankdata(p.astype(np.float64))
    n_pos = int(y.sum())
    by_hand = (ranks[y == 1].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * (len(y) - n_pos))
    assert auc(y, p) == by_hand  # bit for bit
    assert auc(torch.from_numpy(y), torch.from_numpy(p)) == by_hand
    assert auc(y, np.stack([p, p], axis=1)[:, 1]) == by_hand  # a strided column (predict_proba(...)[:, 1])
    assert auc(y[::-1], p[::-1]) == by_hand  # negative strides
    if torch.cuda.is_available():
        assert auc(torch.from_numpy(y).cuda(), torch.from_numpy(p).cuda()) == by_hand
    frozen_y, frozen_p = y.copy(), p.copy()
    frozen_y.setflags(write=False)
    frozen_p.setflags(write=False)  # as memory-mapped splits are: torch warns (once a process) on a view
    viewed = []
    real_from_numpy = torch.from_numpy

    def from_numpy(array):
        viewed.append(array.flags.writeable)
        return real_from_numpy(array)

    monkeypatch.setattr(torch, "from_numpy", from_numpy)
    assert auc(frozen_y, frozen_p) == by_hand
    assert viewed == [True, True]  # copies, not views of read-only memory


def test_auc_with_a_nan_score_is_nan():
    """A model whose validation outputs went NaN must not look like an improvement (SciPy gave NaN too)."""
    y = np.array([0, 1, 0, 1, 1], dtype=np.float32)
    assert np.isnan(auc(y, np.array([0.1, np.nan, 0.3, np.nan, 0.5])))
    assert np.isnan(auc(y, np.full(5, np.nan)))


def test_auc_of_one_class_is_nan():
    assert np.isnan(auc(np.ones(10), np.arange(10)))


def test_auc_all_ties_is_one_half():
    assert auc(np.array([0, 1, 0, 1]), np.zeros(4)) == 0.5


def user_impressions(seed: int, n: int = 3000, n_users: int = 200):
    rng = np.random.default_rng(seed)
    users = rng.integers(0, n_users, n)
    y = (rng.random(n) < 0.2 + 0.5 * (users % 3 == 0)).astype(np.float32)
    scores = rng.random(n) + 0.3 * y  # continuous: no ties, so sklearn's tie handling does not matter
    return users, y, scores


@pytest.mark.parametrize("seed", range(3))
def test_gauc_is_the_impression_weighted_mean_of_per_user_sklearn_aucs(seed):
    users, y, scores = user_impressions(seed)
    total, weight, skipped = 0.0, 0, 0
    for u in np.unique(users):
        rows = users == u
        if len(np.unique(y[rows])) < 2:
            skipped += 1
            continue
        total += roc_auc_score(y[rows], scores[rows]) * rows.sum()
        weight += rows.sum()
    result = gauc(users, y, scores)
    assert skipped > 0  # the data has single-class users, so skipping is exercised
    assert result.value == pytest.approx(total / weight, abs=1e-9)
    assert result.skipped == skipped and result.users + skipped == len(np.unique(users))


@pytest.mark.parametrize("seed", range(3))
def test_ndcg_at_10_is_the_mean_of_per_user_sklearn_ndcg_over_users_with_a_positive(seed):
    users, y, scores = user_impressions(seed)
    values, skipped = [], 0
    for u in np.unique(users):
        rows = users == u
        if y[rows].sum() == 0:
            skipped += 1
        elif rows.sum() == 1:
            values.append(1.0)  # one positive impression is a perfect ranking
        else:
            values.append(ndcg_score(y[rows][None], scores[rows][None], k=10))
    result = ndcg_at_k(users, y, scores, k=10)
    assert result.value == pytest.approx(np.mean(values), abs=1e-9)
    assert result.skipped == skipped and result.users == len(values)


def test_user_metrics_of_perfect_and_reversed_rankings():
    users = np.array([1, 1, 1, 2, 2, 2, 3])
    y = np.array([1, 0, 0, 0, 1, 1, 1])
    perfect = y.astype(float)
    assert gauc(users, y, perfect).value == 1.0 and gauc(users, y, perfect).skipped == 1
    assert gauc(users, y, -perfect).value == 0.0
    assert ndcg_at_k(users, y, perfect).value == 1.0
    assert ndcg_at_k(users, y, -perfect).value < 1.0
    with pytest.raises(ValueError, match="k must be"):
        ndcg_at_k(users, y, perfect, k=0)


def test_run_records_get_user_metrics_only_where_the_data_has_a_user_field():
    data = make_synthetic(n_rows=2000, seed=0)
    probs = np.random.default_rng(0).random(len(data.test))
    assert user_grouped_metrics(data, probs)["test_gauc"] is None
    with_users = dataclasses.replace(data, info={**data.info, "user_field": "hc_noise_0"})
    record = user_grouped_metrics(with_users, probs)
    users = data.test.X[:, data.field_names.index("hc_noise_0")]
    assert record["test_gauc"] == gauc(users, data.test.y, probs).value
    assert record["gauc_users"] + record["gauc_users_skipped"] == len(np.unique(users))
