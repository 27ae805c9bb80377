"""Property: any rows within a format's grammar prepare to ids in ``[0, field_dims[f])``."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fmpbench.data import prepare
from fmpbench.data.fixtures import write_lines
from fmpbench.data.readers import AVAZU_COLUMNS

_SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])

_int_cell = st.one_of(st.just(""), st.integers(-(2**40), 2**62).map(str))
_hex_cell = st.one_of(
    st.just(""),
    st.integers(0, 2**32 - 1).map(lambda v: f"{v:08x}"),
    st.sampled_from(["68fd1e64", "80e26c9b", "fb936136"]),
)
_criteo_row = st.tuples(
    st.sampled_from("01"), st.lists(_int_cell, min_size=13, max_size=13), st.lists(_hex_cell, min_size=26, max_size=26)
).map(lambda t: "\t".join([t[0], *t[1], *t[2]]))


def _check(d, n_rows: int, n_pos: int) -> None:
    dims = np.array(d.field_dims)
    assert len(d.train) + len(d.valid) + len(d.test) == n_rows
    assert int(d.train.y.sum() + d.valid.y.sum() + d.test.y.sum()) == n_pos
    for s in (d.train, d.valid, d.test):
        if len(s):
            assert s.X.min() >= 0 and (s.X.max(axis=0) < dims).all()


@_SETTINGS
@given(
    rows=st.lists(_criteo_row, min_size=1, max_size=60),
    min_count=st.integers(1, 3),
    split=st.sampled_from(["random", "sequential"]),
    gz=st.booleans(),
)
def test_criteo_rows_give_valid_ids(rows, min_count, split, gz):
    with tempfile.TemporaryDirectory() as tmp:
        path = write_lines(Path(tmp) / "train.txt", rows, gz=gz)
        d = prepare("criteo", path, Path(tmp) / "dd", min_count=min_count, split=split)
        _check(d, len(rows), sum(r[0] == "1" for r in rows))
        assert d.num_fields == 39


_token = st.text(alphabet="0123456789abcdef", min_size=0, max_size=8)
_avazu_row = st.tuples(
    st.integers(0, 2**64 - 1),
    st.sampled_from("01"),
    st.tuples(st.integers(14, 15), st.integers(1, 12), st.integers(1, 28), st.integers(0, 23)),
    st.lists(_token, min_size=21, max_size=21),
).map(lambda t: ",".join([str(t[0]), t[1], "".join(f"{v:02d}" for v in t[2]), *t[3]]))


@_SETTINGS
@given(rows=st.lists(_avazu_row, min_size=1, max_size=60), min_count=st.integers(1, 3))
def test_avazu_rows_give_valid_ids(rows, min_count):
    with tempfile.TemporaryDirectory() as tmp:
        path = write_lines(Path(tmp) / "train.csv", [",".join(AVAZU_COLUMNS), *rows])
        d = prepare("avazu", path, Path(tmp) / "dd", min_count=min_count)
        _check(d, len(rows), sum(r.split(",")[1] == "1" for r in rows))
        assert d.num_fields == 23


_style = st.dictionaries(
    st.sampled_from(["Size:", "Color:", "Size Name:", "Metal Type:"]), st.text(max_size=6), max_size=3
)
_review = st.fixed_dictionaries(
    {
        "overall": st.sampled_from([1.0, 2.0, 3.0, 4.0, 5.0]),
        "reviewerID": st.text(min_size=1, max_size=5),
        "asin": st.text(min_size=1, max_size=4),
        "unixReviewTime": st.integers(0, 2**31 - 1),
    },
    optional={"verified": st.booleans(), "style": _style, "vote": st.integers(0, 10**6).map(lambda v: f"{v:,}")},
)


@_SETTINGS
@given(rows=st.lists(_review, min_size=1, max_size=40))
def test_amazon_rows_give_valid_ids(rows):
    with tempfile.TemporaryDirectory() as tmp:
        path = write_lines(Path(tmp) / "X_5.json", [json.dumps(r) for r in rows])
        d = prepare("amazon", path, Path(tmp) / "dd", min_count=1)
        # one copy of each review: the first line with that (reviewer, time, summary, text)
        distinct = {}
        for r in rows:
            distinct.setdefault((r["reviewerID"], r["unixReviewTime"], r.get("summary"), r.get("reviewText")), r)
        _check(d, len(distinct), sum(r["overall"] >= 4 for r in distinct.values()))
