"""Raw readers: formats, transforms and one-line errors on malformed input."""

from __future__ import annotations

import gzip
import io
import json
import logging
import math
from pathlib import Path

import numpy as np
import pytest

from fmpbench.cli import _hide_preparation, _ReadBar, _show_preparation, main
from fmpbench.data import DATASETS, DEFAULT_MIN_COUNT, PREPARE_LOG, REAL_DATASETS, DataError, prepare, readers
from fmpbench.data.amazon import AmazonReader, log_bucket, price_bucket
from fmpbench.data.avazu import parse_avazu_hour
from fmpbench.data.criteo import CriteoReader
from fmpbench.data.fixtures import amazon_lines, avazu_lines, criteo_lines, write_lines, write_movielens
from fmpbench.data.movielens import MovieLensReader
from fmpbench.data.readers import BUCKET_OFFSET, MISSING_CODE, bucket_int_codes, int_token_repr, key_repr, pack_keys
from fmpbench.data.registry import SPECS, make_reader
from fmpbench.data.synthetic import make_standin

REPO = Path(__file__).resolve().parents[1]


def _one_line(exc: pytest.ExceptionInfo) -> str:
    msg = str(exc.value)
    assert "\n" not in msg
    return msg


# ---------------------------------------------------------------- transforms


def test_criteo_bucketing():
    v = np.array([-3, 0, 1, 2, 3, 7, 100, 0])
    missing = np.array([False] * 7 + [True])
    codes = bucket_int_codes(v, missing)
    assert codes[:4].tolist() == [-3, 0, 1, 2]  # v <= 2: the value itself
    assert codes[4] == BUCKET_OFFSET + 1  # floor(ln(3)^2) = 1, a token distinct from raw 1
    assert codes[5] == BUCKET_OFFSET + math.floor(math.log(7) ** 2)
    assert codes[6] == BUCKET_OFFSET + 21
    assert codes[7] == MISSING_CODE
    assert [int_token_repr(int(c)) for c in codes] == ["-3", "0", "1", "2", "b1", "b3", "b21", ""]


def test_criteo_bucketing_end_to_end(tmp_path):
    rows = [f"0\t{v}" + "\t" * 12 + "\t" * 26 for v in ["0", "1", "2", "3", "", "1", "3"] * 20]
    path = write_lines(tmp_path / "train.txt", rows)
    (batch,) = list(CriteoReader(path).batches(1000))
    i1 = batch.columns["I1"][:7].tolist()
    assert i1 == [0, 1, 2, BUCKET_OFFSET + 1, MISSING_CODE, 1, BUCKET_OFFSET + 1]
    d = prepare("criteo", path, tmp_path / "dd", min_count=1, split_seed=1)
    assert d.field_dims[0] == 6  # OOV + {0, 1, 2, b1, missing}


def test_packed_keys_are_exact_and_ordered():
    import pyarrow as pa

    vals = ["", "a", "ab", "68fd1e64", "80e26c9b", "ü", "abcdefgh", "a-much-longer-value", "68fd1e64"]
    keys = pack_keys(pa.chunked_array([pa.array(vals[:4]), pa.array(vals[4:])]))
    assert [key_repr(int(k)) for k in keys[:7]] == vals[:7]
    assert keys[0] == 0 and keys[3] == keys[8] and len(set(keys.tolist())) == 8
    assert key_repr(int(keys[7])).startswith("#")  # > 8 bytes: tagged hash
    short = [v for v in vals if len(v.encode()) <= 8]
    assert sorted(short) == [key_repr(int(k)) for k in np.sort(pack_keys(pa.array(short)))]  # string order


def test_avazu_hour():
    assert parse_avazu_hour("14102100") == (0, 1)  # 2014-10-21 was a Tuesday
    assert parse_avazu_hour("14102623") == (23, 6)
    for bad in ("1410210", "14102124", "14133100", "1410210a"):
        assert parse_avazu_hour(bad) is None


def test_vote_and_price_buckets():
    assert log_bucket(0) == "0" and log_bucket(2) == "2" and log_bucket(1234) == "b50"
    assert price_bucket("$12.99") == price_bucket("$13.50") != price_bucket("$120.00")
    assert price_bucket("$5.00 - $9.00") == price_bucket("$5.00")
    assert price_bucket(None) == "" and price_bucket("<span>") == ""


# ---------------------------------------------------------------- criteo errors


def _criteo(tmp_path, rows, name="train.txt", gz=False):
    return write_lines(tmp_path / name, rows, gz=gz)


def test_criteo_wrong_column_count_names_line(tmp_path):
    rows = criteo_lines(30, seed=1)
    rows[16] = rows[16].rsplit("\t", 1)[0]
    path = _criteo(tmp_path, rows, "bad.txt")
    with pytest.raises(DataError) as exc:
        prepare("criteo", path, tmp_path / "dd")
    assert _one_line(exc).startswith("criteo bad.txt line 17: expected 40 tab-separated columns, got 39")
    assert not (tmp_path / "dd" / "criteo" / "CURRENT").exists()
    assert not [p for p in (tmp_path / "dd" / "criteo").iterdir() if p.is_dir()]


def test_criteo_non_integer_and_bad_label(tmp_path):
    rows = criteo_lines(30, seed=2)
    parts = rows[4].split("\t")
    parts[3] = "abc"
    rows[4] = "\t".join(parts)
    with pytest.raises(DataError, match=r"^criteo t.txt line 5: I3 is not an integer: 'abc'$"):
        prepare("criteo", _criteo(tmp_path, rows, "t.txt"), tmp_path / "dd")
    rows = criteo_lines(30, seed=2)
    rows[9] = "2" + rows[9][1:]
    with pytest.raises(DataError, match=r"^criteo u.txt.gz line 10: label is not 0 or 1: '2'$"):
        prepare("criteo", _criteo(tmp_path, rows, "u.txt.gz", gz=True), tmp_path / "dd")


def test_criteo_skip_bad_rows(tmp_path):
    rows = criteo_lines(200, seed=3)
    rows[10] = rows[10].rsplit("\t", 1)[0]  # 39 columns
    rows[20] = "x" + rows[20][1:]  # bad label
    parts = rows[30].split("\t")
    parts[1] = "1.5"
    rows[30] = "\t".join(parts)  # bad int
    d = prepare("criteo", _criteo(tmp_path, rows), tmp_path / "dd", skip_bad_rows=True, min_count=1)
    assert d.info["skipped_rows"] == 3
    assert len(d.train) + len(d.valid) + len(d.test) == 197


def test_test_txt_gets_hint(tmp_path):
    rows = [r.split("\t", 1)[1] for r in criteo_lines(5)]
    with pytest.raises(DataError, match=r"line 1: expected 40 tab-separated columns, got 39 \(if this is Kaggle's"):
        prepare("criteo", _criteo(tmp_path, rows), tmp_path / "dd")


def test_missing_empty_and_truncated_files(tmp_path):
    with pytest.raises(DataError, match=r"nope.txt: file not found$"):
        prepare("criteo", tmp_path / "nope.txt", tmp_path / "dd")
    (tmp_path / "empty.txt").write_bytes(b"")
    with pytest.raises(DataError, match=r"empty.txt: file is empty$"):
        prepare("criteo", tmp_path / "empty.txt", tmp_path / "dd")
    (tmp_path / "empty.gz").write_bytes(gzip.compress(b""))
    with pytest.raises(DataError, match=r"no data rows"):
        prepare("criteo", tmp_path / "empty.gz", tmp_path / "dd")
    blob = gzip.compress("\n".join(criteo_lines(3000)).encode())
    (tmp_path / "trunc.gz").write_bytes(blob[: len(blob) // 2])
    with pytest.raises(DataError, match=r"trunc.gz: corrupt or truncated gzip stream") as exc:
        prepare("criteo", tmp_path / "trunc.gz", tmp_path / "dd")
    _one_line(exc)


def test_gzip_detected_by_magic_not_extension(tmp_path):
    rows = criteo_lines(50, seed=4)
    plain = _criteo(tmp_path, rows, "a.gz")  # plain text named .gz
    packed = _criteo(tmp_path, rows, "b.txt", gz=True)  # gzip named .txt
    a = prepare("criteo", plain, tmp_path / "d1", min_count=1)
    b = prepare("criteo", packed, tmp_path / "d2", min_count=1)
    np.testing.assert_array_equal(a.train.X, b.train.X)


# ---------------------------------------------------------------- avazu errors


def test_avazu_errors(tmp_path):
    lines = avazu_lines(20)
    hdr = write_lines(tmp_path / "hdr.csv", lines[:1])
    with pytest.raises(DataError, match=r"avazu .*hdr.csv: no data rows$"):
        prepare("avazu", hdr, tmp_path / "dd")
    bad = list(lines)
    bad[5] = bad[5].replace(",1410", ",1413", 1)  # month 13 -> invalid date
    with pytest.raises(DataError, match=r"^avazu b.csv line 6: hour is not a valid YYMMDDHH value"):
        prepare("avazu", write_lines(tmp_path / "b.csv", bad), tmp_path / "dd")
    short = list(lines)
    short[3] = short[3].rsplit(",", 2)[0]
    with pytest.raises(DataError, match=r"^avazu c.csv line 4: expected 24 comma-separated columns, got 22$"):
        prepare("avazu", write_lines(tmp_path / "c.csv", short, gz=True), tmp_path / "dd")
    with pytest.raises(DataError, match=r"line 1: unexpected header .*test.csv has no click"):
        prepare("avazu", write_lines(tmp_path / "t.csv", ["id,hour,C1", "1,14102100,5"]), tmp_path / "dd")


def test_avazu_ids_beyond_int64(tmp_path):
    lines = avazu_lines(40)
    assert int(lines[1].split(",")[0]) > 2**63
    d = prepare("avazu", write_lines(tmp_path / "train.gz", lines, gz=True), tmp_path / "dd", min_count=1)
    assert len(d.train) + len(d.valid) + len(d.test) == 40 and d.num_fields == 23


# ---------------------------------------------------------------- movielens


def test_movielens_latin1_and_layouts(tmp_path):
    folder = write_movielens(tmp_path / "ml", 300, gz=True)
    assert b"\xe9" in (folder / "movies.dat").read_bytes()  # "Amélie" in Latin-1
    reader = MovieLensReader(folder)
    (batch,) = list(reader.batches(10_000))
    years = set(batch.columns["year"].to_pylist())
    assert {"2001", "1995", "1948", "1935", ""} >= years and "2001" in years
    genres = set(batch.columns["genres"].to_pylist())
    assert "Animation|Children's|Comedy" in genres
    d1 = prepare("movielens", folder, tmp_path / "d1")
    d2 = prepare("movielens", folder / "ratings.dat.gz", tmp_path / "d2")
    assert d1.fingerprint == d2.fingerprint and len(d1.train) == 240


def test_movielens_errors(tmp_path):
    folder = write_movielens(tmp_path / "ml", 20)
    lines = (folder / "ratings.dat").read_text().splitlines()
    lines[7] = "1::2::x::978300760"
    write_lines(folder / "ratings.dat", lines)
    with pytest.raises(DataError, match=r"^movielens ratings.dat line 8: Rating is not an integer: 'x'$"):
        prepare("movielens", folder, tmp_path / "dd")
    lines[7] = "99999::2::3::978300760"
    write_lines(folder / "ratings.dat", lines)
    with pytest.raises(DataError, match=r"line 8: UserID 99999 not in users.dat"):
        prepare("movielens", folder, tmp_path / "dd")
    (folder / "users.dat").unlink()
    with pytest.raises(DataError, match=r"users.dat not found beside the ratings file"):
        prepare("movielens", folder, tmp_path / "dd")


# ---------------------------------------------------------------- amazon


def test_amazon_fields_and_meta(tmp_path):
    reviews = write_lines(tmp_path / "Foo_5.json.gz", amazon_lines(200), gz=True)
    asins = sorted({json.loads(x)["asin"] for x in amazon_lines(200)})
    meta = write_lines(
        tmp_path / "meta_Foo.json.gz",
        [
            json.dumps({"asin": a, "brand": f"br{i % 3}", "main_cat": "Fashion", "price": f"${i * 3}.99"})
            for i, a in enumerate(asins)
        ],
        gz=True,
    )
    d = prepare("amazon", reviews, tmp_path / "d1")
    assert d.field_names == [
        "user",
        "item",
        "verified",
        "vote",
        "style_Color",
        "style_Size",
        "year",
        "month",
        "weekday",
    ]
    dm = prepare("amazon", [reviews, meta], tmp_path / "d2")
    assert dm.field_names[-3:] == ["brand", "main_cat", "price"] and dm.field_dims[-3] == 4
    assert prepare("amazon", tmp_path, tmp_path / "d3").fingerprint == dm.fingerprint  # folder form


def test_amazon_style_share_and_vote(tmp_path):
    lines = amazon_lines(100)
    rare = json.loads(lines[0])
    rare["style"] = {"Metal Type:": " Gold"}
    rare["vote"] = "1,234"
    lines[0] = json.dumps(rare)
    path = write_lines(tmp_path / "x_5.json", lines)
    reader = AmazonReader(path)
    batch = next(reader.batches(10))
    assert batch.columns["vote"][0].as_py() == "b50"
    assert batch.columns["style_Metal_Type"][0].as_py() == "Gold"
    d = prepare("amazon", path, tmp_path / "dd")
    assert "style_Metal_Type" not in d.field_names  # in 1 % of rows < 5 % share
    d = prepare("amazon", path, tmp_path / "dd", style_min_share=0.0)
    assert "style_Metal_Type" in d.field_names


def test_amazon_errors(tmp_path):
    lines = amazon_lines(10)
    lines[2] = lines[2][:-5]
    with pytest.raises(DataError, match=r"^amazon a_5.json line 3: bad JSON \("):
        prepare("amazon", write_lines(tmp_path / "a_5.json", lines), tmp_path / "dd")
    lines = amazon_lines(10)
    rec = json.loads(lines[1])
    rec["overall"] = None
    lines[1] = json.dumps(rec)
    with pytest.raises(DataError, match=r"^amazon b_5.json line 2: 'overall' must be a rating 1-5, got None$"):
        prepare("amazon", write_lines(tmp_path / "b_5.json", lines), tmp_path / "dd")
    d = prepare("amazon", write_lines(tmp_path / "c_5.json", lines), tmp_path / "dd", skip_bad_rows=True)
    assert d.info["skipped_rows"] == 1
    (tmp_path / "d_5.json").write_bytes(b'{"overall": 5.0, "reviewerID": "\xff"}\n')
    with pytest.raises(DataError, match=r"d_5.json line 1: not valid utf-8"):
        prepare("amazon", tmp_path / "d_5.json", tmp_path / "dd")


# ---------------------------------------------------------------- the registry of dataset specs


def test_every_list_of_datasets_is_derived_from_the_spec_modules():
    assert REAL_DATASETS == tuple(SPECS) == ("criteo", "avazu", "movielens", "movielens100k", "amazon")
    assert DATASETS == (*REAL_DATASETS, "synthetic")
    assert DEFAULT_MIN_COUNT == {name: spec.min_count for name, spec in SPECS.items()}
    assert DEFAULT_MIN_COUNT["criteo"] == 10  # BARS' criteo_x4


@pytest.mark.parametrize("name", list(SPECS))
def test_each_spec_has_its_card_and_a_standin_with_its_label_rate(name):
    spec = SPECS[name]
    assert (REPO / spec.card).is_file(), spec.card
    standin = make_standin(name, n_rows=4000, seed=0)
    assert standin.field_names == [f.name for f in spec.standin_fields()]
    assert abs(float(np.mean(standin.train.y)) - spec.standin_label_rate) < 0.05


def test_spec_options_reach_only_the_readers_that_take_them(tmp_path):
    path = write_lines(tmp_path / "reviews.json", amazon_lines(40, seed=0))
    assert make_reader("amazon", path, style_min_share=0.3).params() == {"style_min_share": 0.3,
                                                                         "drop_duplicates": True}
    criteo = make_reader("criteo", write_lines(tmp_path / "train.txt", criteo_lines(20)), style_min_share=0.3)
    assert criteo.params() == {}
    with pytest.raises(ValueError, match="no built-in dataset 'mine'; choose from: criteo, avazu"):
        make_reader("mine", path)


def test_names_that_moved_to_the_dataset_modules_are_still_importable_from_readers():
    assert readers.CriteoReader is CriteoReader and readers.AVAZU_FIELDS[0] == "hour_of_day"
    with pytest.raises(AttributeError):
        readers.NoSuchName  # noqa: B018 - the attribute access is the test


# ---------------------------------------------------------------- prepare's progress


def test_preparation_reports_each_chunk_with_the_raw_bytes_read(tmp_path, caplog):
    path = write_lines(tmp_path / "train.txt.gz", criteo_lines(1000, seed=3), gz=True)
    with caplog.at_level(logging.INFO, logger=PREPARE_LOG):
        prepare("criteo", path, tmp_path / "dd", min_count=1, chunk_rows=300)
    records = [r for r in caplog.records if r.name == PREPARE_LOG]
    rows = [r.rows for r in records]
    assert rows[0] == 0 and rows[-1] == 1000 and rows == sorted(rows) and len(rows) >= 4
    assert all(r.bytes_total == path.stat().st_size for r in records)  # the gzip file as stored
    assert records[-1].done and records[-1].bytes_read == path.stat().st_size
    assert 0 < records[1].bytes_read <= path.stat().st_size


def test_prepare_shows_a_bar_in_a_terminal_lines_with_v_and_nothing_with_q_or_off_a_terminal(tmp_path, capsys):
    path = write_lines(tmp_path / "train.txt", criteo_lines(300, seed=3))
    argv = ["prepare", "criteo", "--raw", str(path), "--min-count", "1"]
    assert main([*argv, "--data-dir", str(tmp_path / "dd"), "-v"]) == 0
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[-1].startswith("fmpbench: prepare criteo: 300 rows read, ") and lines[-1].endswith(
        "(100%); encoding them")
    assert main([*argv, "--data-dir", str(tmp_path / "d2")]) == 0  # stderr is no terminal here
    assert capsys.readouterr().err == ""

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    shown = _show_preparation(0, Terminal())
    try:
        assert isinstance(shown, _ReadBar)
    finally:
        _hide_preparation(shown)
    assert _show_preparation(-1, Terminal()) is None
    assert _show_preparation(0, io.StringIO()) is None
