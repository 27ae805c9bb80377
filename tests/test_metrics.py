import numpy as np
import pytest
from sklearn.metrics import log_loss, roc_auc_score

from fmpbench.training.metrics import auc, logloss


@pytest.mark.parametrize("seed", range(5))
def test_auc_and_logloss_match_sklearn(seed):
    rng = np.random.default_rng(seed)
    y = (rng.random(5000) < 0.3).astype(np.float32)
    p = np.clip(rng.random(5000) * 0.5 + y * 0.3, 0, 1)
    p[:500] = np.round(p[:500], 1)  # heavy ties
    assert auc(y, p) == pytest.approx(roc_auc_score(y, p), abs=1e-6)
    assert logloss(y, p) == pytest.approx(log_loss(y, np.clip(p, 1e-7, 1 - 1e-7)), abs=1e-6)


def test_auc_of_one_class_is_nan():
    assert np.isnan(auc(np.ones(10), np.arange(10)))


def test_auc_all_ties_is_one_half():
    assert auc(np.array([0, 1, 0, 1]), np.zeros(4)) == 0.5
