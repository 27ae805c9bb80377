"""The real excerpts in ../shared/data parse as the owners distribute them (skipped when absent)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from shared_data import SHARED_DATA

from fmpbench.data import DataError, get_dataset, load_prepared, make_standin, prepare
from fmpbench.data.readers import AVAZU_FIELDS, CRITEO_FIELDS, MOVIELENS_FIELDS


def _need(rel: str) -> Path:
    p = SHARED_DATA / rel
    if not p.exists():
        pytest.skip(f"real excerpt not available: {p}")
    return p


def _n(d) -> int:
    return len(d.train) + len(d.valid) + len(d.test)


def _rate(d) -> float:
    return float((d.train.y.sum() + d.valid.y.sum() + d.test.y.sum()) / _n(d))


def _check_ids(d) -> None:
    dims = np.array(d.field_dims)
    for s in (d.train, d.valid, d.test):
        assert s.X.dtype == np.int32 and s.X.shape[1] == len(dims)
        assert s.X.min() >= 0 and (s.X.max(axis=0) < dims).all()
        assert set(np.unique(s.y)) <= {0.0, 1.0}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("prepared")


def test_criteo_kaggle_excerpt(data_dir):
    d = prepare("criteo", _need("criteo/criteo_kaggle_train_8000.txt.gz"), data_dir)
    assert _n(d) == 8000 and d.num_fields == 39 and d.field_names == CRITEO_FIELDS
    assert abs(_rate(d) - 0.216) <= 0.005
    assert d.info["split_sizes"] == {"train": 6400, "valid": 800, "test": 800}
    assert d.data_source == "real"
    assert d.info["raw"]["train"]["sha256"] == "6a8b8effe798d478da086fdf6668cc7d1e6aa95f2a4c82fd7a3a04d4e124c6f8"
    _check_ids(d)
    assert get_dataset("criteo", data_dir).fingerprint == d.fingerprint


def test_criteo_deepctr_csv_is_rejected_with_a_hint(data_dir):
    path = _need("criteo/criteo_sample_deepctr_200.csv")
    with pytest.raises(DataError, match=r"line 1: expected 40 tab-separated columns, got 1 \(this looks comma"):
        prepare("criteo", path, data_dir / "x")


def test_avazu_excerpt(data_dir):
    d = prepare("avazu", _need("avazu/avazu_train_head_8999.csv.gz"), data_dir)
    assert _n(d) == 8999 and d.field_names == AVAZU_FIELDS and d.num_fields == 23
    assert abs(_rate(d) - 0.174) <= 0.005
    assert d.info["distinct_train_values"]["hour_of_day"] == 1  # one hour: 14102100
    _check_ids(d)


def test_movielens_1m_sample(data_dir):
    d = prepare("movielens", _need("movielens/ml-1m/ratings_sample_100k.dat.gz"), data_dir)
    assert _n(d) == 100_000 and d.field_names == MOVIELENS_FIELDS
    assert 0.55 < _rate(d) < 0.60
    assert set(d.info["raw"]) == {"ratings", "users", "movies"}
    _check_ids(d)
    # the folder works too (finds ratings_sample_100k.dat.gz by pattern) and reuses the cache
    again = prepare("movielens", _need("movielens/ml-1m"), data_dir)
    assert again.fingerprint == d.fingerprint


def test_amazon_fashion(data_dir):
    d = prepare("amazon", _need("amazon/AMAZON_FASHION_5.json.gz"), data_dir)
    # 3,176 lines hold 448 distinct reviews, repeated under product variants: one copy of each is kept
    assert _n(d) == 448
    assert d.info["duplicates_dropped"] == 3176 - 448
    assert d.field_names == make_standin("amazon", n_rows=100).field_names
    assert 0.75 < _rate(d) < 0.9
    _check_ids(d)
    assert load_prepared("amazon", data_dir, mmap=True).fingerprint == d.fingerprint
    every_line = prepare("amazon", _need("amazon/AMAZON_FASHION_5.json.gz"), data_dir, drop_duplicates=False)
    assert _n(every_line) == 3176 and every_line.fingerprint != d.fingerprint
