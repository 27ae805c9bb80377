"""MovieLens-100K: the complete real dataset, prepared from its raw files as GroupLens ships them."""

from __future__ import annotations

import gzip
import shutil

import numpy as np
import pytest
from shared_data import SHARED_DATA

from fmpbench.data import DataError, prepare
from fmpbench.data.movielens100k import AGE_GROUPS, age_group
from fmpbench.data.readers import MOVIELENS_FIELDS
from fmpbench.data.refs import load_ref, ref_of, with_split_seed

ML100K = SHARED_DATA / "movielens" / "ml-100k"
needs_data = pytest.mark.skipif(not ML100K.is_dir(), reason="../shared/data/movielens/ml-100k not present")


def test_age_groups_are_ml1m_codes():
    assert [age_group(a) for a in (7, 17, 18, 24, 25, 44, 45, 50, 55, 56, 73)] == [
        1, 1, 18, 18, 25, 35, 45, 50, 50, 56, 56]


@needs_data
def test_prepares_all_100k_ratings_with_ml1m_fields(tmp_path):
    data = prepare("movielens100k", ML100K, tmp_path)
    assert data.field_names == MOVIELENS_FIELDS
    assert (len(data.train), len(data.valid), len(data.test)) == (80_000, 10_000, 10_000)
    labels = np.concatenate([data.train.y, data.valid.y, data.test.y])
    assert int(labels.sum()) == 55_375  # rating > 3
    assert data.user_field == 0 and data.field_dims[0] == 944  # 943 users + OOV
    assert data.field_dims[MOVIELENS_FIELDS.index("age")] == len(AGE_GROUPS) + 1  # ML-1M's groups + OOV


@needs_data
def test_each_seed_draws_its_own_split_with_train_only_vocabularies(tmp_path):
    base = prepare("movielens100k", ML100K, tmp_path)
    other = with_split_seed(base, 2025, tmp_path)
    assert other.split_seed == 2025 and other.family == base.family and other.fingerprint != base.fingerprint
    assert not np.array_equal(other.test.y, base.test.y)
    assert load_ref(ref_of(other, tmp_path)).fingerprint == other.fingerprint
    # CURRENT still names the data the user prepared
    from fmpbench.data import load_prepared

    assert load_prepared("movielens100k", tmp_path).fingerprint == base.fingerprint


@needs_data
def test_a_bad_rating_names_the_file_and_line(tmp_path):
    folder = tmp_path / "ml-100k"
    shutil.copytree(ML100K, folder)
    with gzip.open(folder / "u.data.gz", "rt") as f:
        lines = f.read().splitlines()
    lines[41] = "196\t242\tseven\t881250949"
    lines[42] = "196\t242\t3\t88125094²"  # a digit to str.isdigit, not to int
    with gzip.open(folder / "u.data.gz", "wt") as f:
        f.write("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"movielens100k u.data.gz line 42: rating is not an integer: 'seven'"):
        prepare("movielens100k", folder, tmp_path / "data")
    skipped = prepare("movielens100k", folder, tmp_path / "data2", skip_bad_rows=True)
    assert len(skipped.train) + len(skipped.valid) + len(skipped.test) == 99_998
