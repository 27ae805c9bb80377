"""Streaming preparation: splits, train-only vocabularies, the cache and its fingerprint."""

from __future__ import annotations

import hashlib
import json
import os
import warnings

import numpy as np
import pytest

from fmpbench.data import DataError, load_prepared, prepare
from fmpbench.data import preprocess as pp
from fmpbench.data.fixtures import criteo_lines, write_lines, write_movielens
from fmpbench.data.splits import random_split, sequential_split, splitmix64


def _criteo_with_c1(tmp_path, c1_values, name="train.txt"):
    """Criteo rows whose C1 column is given (everything else fixed)."""
    rows = [f"{i % 2}\t1" + "\t" * 12 + f"\t{v}" + "\t" * 25 for i, v in enumerate(c1_values)]
    return write_lines(tmp_path / name, rows)


C1 = 13  # column of C1 in X


# ---------------------------------------------------------------- splits


def test_random_split_is_811_deterministic_and_chunk_independent():
    codes = random_split(0, 10_000, 2024)
    assert np.bincount(codes).tolist() == [8000, 1000, 1000]
    np.testing.assert_array_equal(codes, random_split(0, 10_000, 2024))
    assert not np.array_equal(codes, random_split(0, 10_000, 7))
    parts = np.concatenate([random_split(s, 337, 2024) for s in range(0, 10_000, 337)])[:10_000]
    np.testing.assert_array_equal(codes, parts)
    for n in (1, 9, 11, 1234):  # any length: each split within one row of 8:1:1
        c = np.bincount(random_split(0, n, 5), minlength=3)
        assert abs(c[1] - n / 10) <= 1 and abs(c[2] - n / 10) <= 1


def test_random_split_sends_each_blocks_two_smallest_hashes_to_valid_and_test():
    """The documented rule, restated by ranking each block of 10 with a sort."""
    rng = np.random.default_rng(0)
    for _ in range(50):
        start, n, seed = int(rng.integers(0, 10**12)), int(rng.integers(1, 3000)), int(rng.integers(0, 2**63))
        b0 = start // 10
        slots = np.arange(b0 * 10, (b0 + (start + n - 1) // 10 - b0 + 1) * 10, dtype=np.uint64)
        keys = splitmix64(slots ^ splitmix64(np.array([seed], dtype=np.uint64))[0]).reshape(-1, 10)
        ranks = np.argsort(np.argsort(keys, axis=1), axis=1).reshape(-1)[start - b0 * 10 :][:n]
        expected = np.where(ranks == 0, 1, np.where(ranks == 1, 2, 0))
        np.testing.assert_array_equal(random_split(start, n, seed), expected)


def test_sequential_split_is_721_in_order():
    codes = sequential_split(0, 1000, 1000)
    assert np.bincount(codes).tolist() == [700, 200, 100]
    assert (np.diff(codes) >= 0).all()


def test_sequential_split_end_to_end(tmp_path):
    n = 1000
    path = _criteo_with_c1(tmp_path, [f"{i:08x}" for i in range(n)])
    d = prepare("criteo", path, tmp_path / "dd", split="sequential", min_count=1)
    assert (len(d.train), len(d.valid), len(d.test)) == (700, 200, 100)
    # every C1 value is unique and ids follow value order, so train holds exactly rows 0..699 in order
    np.testing.assert_array_equal(d.train.X[:, C1], np.arange(1, 701))
    assert (d.valid.X[:, C1] == 0).all() and (d.test.X[:, C1] == 0).all()  # unseen in train -> OOV


def test_prepare_split_seed_and_sizes(tmp_path):
    path = write_lines(tmp_path / "train.txt", criteo_lines(3000, seed=5))
    a = prepare("criteo", path, tmp_path / "a", min_count=1)
    b = prepare("criteo", path, tmp_path / "b", min_count=1)
    c = prepare("criteo", path, tmp_path / "c", min_count=1, split_seed=1)
    assert a.info["split_sizes"] == {"train": 2400, "valid": 300, "test": 300}
    np.testing.assert_array_equal(a.test.X, b.test.X)
    assert a.fingerprint == b.fingerprint != c.fingerprint
    assert not np.array_equal(a.test.y, c.test.y) or not np.array_equal(a.test.X, c.test.X)


# ---------------------------------------------------------------- vocabularies


def test_vocab_is_fitted_on_train_only(tmp_path):
    n = 2000
    codes = random_split(0, n, 2024)
    values = ["aaaaaaaa" if codes[i] == 0 else "bbbbbbbb" for i in range(n)]
    values = [("cccccccc" if codes[i] == 2 and i % 3 == 0 else v) for i, v in enumerate(values)]
    d = prepare("criteo", _criteo_with_c1(tmp_path, values), tmp_path / "dd", min_count=1)
    assert d.field_dims[C1] == 2  # only the train value got an id
    assert (d.train.X[:, C1] == 1).all()
    assert (d.valid.X[:, C1] == 0).all() and (d.test.X[:, C1] == 0).all()


def test_min_count(tmp_path):
    codes = random_split(0, 1000, 2024)
    train_rows = np.flatnonzero(codes == 0)
    values = ["aaaaaaaa"] * 1000
    for k, r in enumerate(train_rows[:30]):
        values[r] = f"{k:08x}"  # 30 train singletons
    path = _criteo_with_c1(tmp_path, values)
    d1 = prepare("criteo", path, tmp_path / "dd", min_count=1)
    d2 = prepare("criteo", path, tmp_path / "dd", min_count=2)
    assert d1.field_dims[C1] == 32 and d2.field_dims[C1] == 2
    assert (d2.train.X[:30, C1] == 0).all()  # the first 30 train rows are the singletons
    assert d1.fingerprint != d2.fingerprint
    # ids are assigned by decreasing train frequency: the common value is id 1
    assert (d1.train.X[:, C1] == 1).sum() == len(d1.train) - 30


def test_hashing_the_vocabulary_once_encodes_as_rebuilding_it_per_chunk(tmp_path, monkeypatch):
    """Integer vocabularies above ``INT_HASH_ONCE_ABOVE`` are probed through a pandas index: the
    same ids, OOV included, for Criteo's int64 tokens (missing = int64 min) and uint64 keys."""
    path = write_lines(tmp_path / "train.txt", criteo_lines(3000, seed=4))
    per_chunk = prepare("criteo", path, tmp_path / "a", min_count=2, chunk_rows=700)
    monkeypatch.setattr(pp.Encoder, "INT_HASH_ONCE_ABOVE", 0)
    once = prepare("criteo", path, tmp_path / "b", min_count=2, chunk_rows=700)
    assert (per_chunk.train.X == 0).any() and (per_chunk.test.X == 0).any()
    for s in ("train", "valid", "test"):
        np.testing.assert_array_equal(getattr(per_chunk, s).X, getattr(once, s).X)


def test_output_does_not_depend_on_chunk_size(tmp_path):
    path = write_lines(tmp_path / "train.txt", criteo_lines(3000, seed=6))
    big = prepare("criteo", path, tmp_path / "a", min_count=2, chunk_rows=1_000_000)
    small = prepare("criteo", path, tmp_path / "b", min_count=2, chunk_rows=50)
    assert big.fingerprint == small.fingerprint
    for s in ("train", "valid", "test"):
        np.testing.assert_array_equal(getattr(big, s).X, getattr(small, s).X)
        np.testing.assert_array_equal(getattr(big, s).y, getattr(small, s).y)
    folder = write_movielens(tmp_path / "ml", 500)
    m1 = prepare("movielens", folder, tmp_path / "m1", chunk_rows=7)
    m2 = prepare("movielens", folder, tmp_path / "m2", chunk_rows=10_000)
    np.testing.assert_array_equal(m1.train.X, m2.train.X)


# ---------------------------------------------------------------- cache


@pytest.fixture()
def prepared(tmp_path):
    path = write_lines(tmp_path / "raw" / "train.txt", criteo_lines(2000, seed=7))
    d = prepare("criteo", path, tmp_path / "dd", min_count=2, mmap=False)  # in RAM: tests corrupt the files
    return tmp_path / "dd", path, d


def test_cache_round_trip_and_reuse(prepared):
    data_dir, path, d = prepared
    folder = data_dir / "criteo" / d.fingerprint
    names = sorted(p.name for p in folder.iterdir())
    assert {"meta.json", "train_X.npy", "train_y.npy", "valid_X.npy", "valid_y.npy", "test_X.npy", "test_y.npy"} <= set(
        names
    )
    assert (data_dir / "criteo" / "CURRENT").read_text().strip() == d.fingerprint
    meta = json.loads((folder / "meta.json").read_text())
    for fname, rec in meta["arrays"].items():  # checksums computed while writing match the files
        assert rec["sha256"] == hashlib.sha256((folder / fname).read_bytes()).hexdigest(), fname
        assert rec["bytes"] == (folder / fname).stat().st_size
    loaded = load_prepared("criteo", data_dir)
    mm = load_prepared("criteo", data_dir, mmap=True)
    assert isinstance(mm.train.X, np.memmap) and not isinstance(loaded.train.X, np.memmap)
    for s in ("train", "valid", "test"):
        np.testing.assert_array_equal(getattr(d, s).X, getattr(loaded, s).X)
        np.testing.assert_array_equal(getattr(d, s).y, getattr(mm, s).y)
    assert loaded.field_names == d.field_names and loaded.field_dims == d.field_dims
    mtime = (folder / "train_X.npy").stat().st_mtime_ns
    again = prepare("criteo", path, data_dir, min_count=2)  # same params: cache reused, not rebuilt
    assert again.fingerprint == d.fingerprint and (folder / "train_X.npy").stat().st_mtime_ns == mtime
    assert load_prepared("avazu", data_dir) is None


def test_fingerprint_changes_with_every_parameter(prepared):
    data_dir, path, d = prepared
    fps = {d.fingerprint}
    for kw in ({"min_count": 3}, {"split": "sequential"}, {"split_seed": 1}, {"skip_bad_rows": True}):
        fps.add(prepare("criteo", path, data_dir, min_count=kw.pop("min_count", 2), **kw).fingerprint)
    assert len(fps) == 5
    # CURRENT follows the latest prepare
    assert load_prepared("criteo", data_dir).fingerprint == (data_dir / "criteo" / "CURRENT").read_text().strip()
    with open(path, "a") as f:  # a changed raw file is a new fingerprint too
        f.write(criteo_lines(1, seed=99)[0] + "\n")
    assert prepare("criteo", path, data_dir, min_count=2).fingerprint not in fps


def _corrupt(folder, how):
    p = folder / "train_X.npy"
    if how == "truncate":
        with open(p, "r+b") as f:
            f.truncate(p.stat().st_size - 100)
    else:
        b = bytearray(p.read_bytes())
        b[-5] ^= 0xFF
        p.write_bytes(bytes(b))
        os.utime(p, ns=(p.stat().st_atime_ns, p.stat().st_mtime_ns + 10**9))


@pytest.mark.parametrize("how", ["truncate", "edit"])
def test_corrupt_cache_is_detected_and_rebuilt(prepared, how):
    data_dir, path, d = prepared
    folder = data_dir / "criteo" / d.fingerprint
    _corrupt(folder, how)
    with pytest.warns(UserWarning, match=r"train_X.npy .*rebuilding"):
        again = load_prepared("criteo", data_dir)
    np.testing.assert_array_equal(again.train.X, d.train.X)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_prepared("criteo", data_dir)  # healthy again


def test_corrupt_cache_without_raw_raises(prepared):
    data_dir, path, d = prepared
    _corrupt(data_dir / "criteo" / d.fingerprint, "truncate")
    path.unlink()
    with pytest.raises(DataError, match=r"truncated or edited.*prepare criteo --raw"):
        load_prepared("criteo", data_dir)


def test_interrupted_prepare_leaves_nothing(tmp_path, monkeypatch):
    path = write_lines(tmp_path / "train.txt", criteo_lines(500, seed=8))

    def boom(self, col):
        raise KeyboardInterrupt

    monkeypatch.setattr(pp.Encoder, "encode", boom)
    with pytest.raises(KeyboardInterrupt):
        prepare("criteo", path, tmp_path / "dd")
    root = tmp_path / "dd" / "criteo"
    assert not [p for p in root.iterdir() if p.is_dir()]
    assert load_prepared("criteo", tmp_path / "dd") is None


@pytest.mark.parametrize("where", ["factorize", "write"])
def test_a_failure_behind_the_main_thread_stops_prepare_and_leaves_nothing(tmp_path, monkeypatch, where):
    """Chunks are factorised and written one step behind the main thread: their errors still surface."""
    path = write_lines(tmp_path / "train.txt", criteo_lines(500, seed=8))
    calls = []
    target = pp if where == "factorize" else pp.NpyWriter
    original = getattr(target, where)

    def fails_on_the_third_chunk(*args):
        calls.append(1)
        if len(calls) > 2 * (39 if where == "factorize" else 2):
            raise ValueError("boom")
        return original(*args)

    monkeypatch.setattr(target, where, fails_on_the_third_chunk)
    with pytest.raises(ValueError, match="boom"):
        prepare("criteo", path, tmp_path / "dd", chunk_rows=100)
    assert not [p for p in (tmp_path / "dd" / "criteo").iterdir() if p.is_dir()]


def test_stale_build_dirs_are_cleaned(tmp_path):
    root = tmp_path / "dd" / "criteo"
    stale = root / ".tmp-abc-999999999-xyz"  # no such process
    stale.mkdir(parents=True)
    (stale / "train_X.npy").write_bytes(b"partial")
    prepare("criteo", write_lines(tmp_path / "train.txt", criteo_lines(50)), tmp_path / "dd")
    assert not stale.exists()


def test_corrupt_movielens_cache_is_rebuilt_from_its_folder(tmp_path):
    folder = write_movielens(tmp_path / "ml", 300)
    d = prepare("movielens", folder, tmp_path / "dd", mmap=False)
    _corrupt(tmp_path / "dd" / "movielens" / d.fingerprint, "truncate")
    with pytest.warns(UserWarning, match="rebuilding"):
        again = load_prepared("movielens", tmp_path / "dd")
    np.testing.assert_array_equal(again.train.X, d.train.X)
