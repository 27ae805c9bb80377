"""Your own data: `prepare tabular` on a parquet with a schema and on pre-split CSVs, then `run` and `report`."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from shared_data import SHARED_DATA

from fmpbench.cli import main
from fmpbench.data import DataError, custom_datasets, get_dataset, load_prepared, prepare_tabular
from fmpbench.data.readers import BUCKET_OFFSET
from fmpbench.data.refs import with_split_seed
from fmpbench.data.tabular import SchemaError, load_schema

AVAZU = SHARED_DATA / "avazu" / "avazu_train_head_8999.csv.gz"
SCHEMA = """\
integer = ["C14"]
numeric = ["hour"]
numeric_buckets = 4
ignore = ["id"]
user = "device_ip"
missing = ["", "NA"]
"""
TINY_GRID = ["--methods", "none,lasso", "--k", "3", "--seeds", "1", "--epochs", "1", "--jobs", "2", "-q"]


def _one_line(exc: pytest.ExceptionInfo) -> str:
    msg = str(exc.value)
    assert "\n" not in msg
    return msg


def _cli_error(capsys: pytest.CaptureFixture[str], argv: list[str]) -> tuple[int, str]:
    code = main(argv)
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    return code, lines[0]


def _split_csvs(folder: Path, n: int = 1200, seed: int = 0) -> tuple[Path, Path, Path]:
    """Three pre-split CSVs (train 1000, valid 100, test 100) whose label depends on `ad` and `slot`."""
    rng = np.random.default_rng(seed)
    ad = rng.integers(0, 30, n)
    slot = rng.integers(0, 4, n)
    logit = (ad % 3 - 1) * 1.5 + (slot == 0) - 0.5
    frame = pd.DataFrame({
        "ad": [f"a{v}" for v in ad],
        "slot": slot,
        "noise": rng.integers(0, 50, n),
        "clicked": (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int),
    })
    frame.loc[n - 1, "ad"] = "only_in_test"
    paths = []
    for name, part in (("train", frame[:1000]), ("valid", frame[1000:1100]), ("test", frame[1100:])):
        paths.append(folder / f"{name}.csv")
        part.to_csv(paths[-1], index=False)
    return paths[0], paths[1], paths[2]


def _report(results: Path, out: Path, capsys: pytest.CaptureFixture[str]) -> str:
    assert main(["report", "--results", str(results), "--out", str(out), "--no-figures"]) == 0
    capsys.readouterr()
    return (out / "main_results.md").read_text(encoding="utf-8")


# ---------------------------------------------------------------- the two "done when" workflows


@pytest.mark.skipif(not AVAZU.is_file(), reason="real Avazu excerpt not available")
def test_parquet_with_schema_prepares_runs_with_two_jobs_and_is_reported(tmp_path, capsys):
    frame = pd.read_csv(AVAZU, dtype=str, nrows=1500)
    frame["click"] = frame["click"].astype(int)
    frame["C14"] = frame["C14"].astype(int)  # an integer column stays one in the parquet
    frame.loc[3, "hour"] = "NA"
    frame.to_parquet(tmp_path / "t.parquet", index=False)
    (tmp_path / "schema.toml").write_text(SCHEMA, encoding="utf-8")
    dd = tmp_path / "dd"
    assert main(["prepare", "tabular", "--name", "mydata", "--train", str(tmp_path / "t.parquet"), "--label", "click",
                 "--schema", str(tmp_path / "schema.toml"), "--data-dir", str(dd)]) == 0
    assert "prepared mydata: 22 fields, train 1,200, valid 150, test 150 rows" in capsys.readouterr().out

    data = load_prepared("mydata", dd)
    assert "id" not in data.field_names and "click" not in data.field_names
    assert data.field_names[data.user_field] == "device_ip"
    info = data.info
    assert info["field_kinds"]["C14"] == "integer" and info["field_kinds"]["hour"] == "numeric"
    assert 1 <= len(info["numeric_bounds"]["hour"]) <= 3  # quantile cuts of train, ties merged
    hour = data.field_names.index("hour")
    assert data.field_dims[hour] <= 1 + 4 + 1  # OOV + at most 4 buckets + missing ("NA")
    assert custom_datasets(dd) == ["mydata"]

    results = tmp_path / "res"
    assert main(["run", "--dataset", "mydata", "--data-dir", str(dd), "--results", str(results), *TINY_GRID]) == 0
    err = capsys.readouterr().err
    assert "fmpbench: mydata (real), 22 fields" in err and "STAND-IN" not in err
    table = _report(results, tmp_path / "report", capsys)
    assert "mydata" in table and "lasso" in table


def test_three_presplit_csvs_are_used_as_given_and_run_with_two_jobs(tmp_path, capsys):
    train, valid, test = _split_csvs(tmp_path)
    dd = tmp_path / "dd"
    argv = ["prepare", "tabular", "--name", "bars", "--train", str(train), "--valid", str(valid), "--test", str(test),
            "--label", "clicked", "--data-dir", str(dd), "--min-count", "1"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "prepared bars: 3 fields, train 1,000, valid 100, test 100 rows (the split of the given files)" in out
    data = load_prepared("bars", dd)
    assert data.info["params"]["split"] == "given"
    expected = pd.read_csv(test)["clicked"].to_numpy(np.float32)
    np.testing.assert_array_equal(np.asarray(data.test.y), expected)  # the test file's rows, in order
    ad = data.field_names.index("ad")
    assert data.test.X[-1, ad] == 0  # a value seen only in test is out of vocabulary: fitted on train only

    main(argv)  # the same files again: the same cache
    assert capsys.readouterr().out.count(data.fingerprint) == 1
    assert with_split_seed(data, 7, dd) is data  # --vary-split keeps a given split

    results = tmp_path / "res"
    assert main(["run", "--dataset", "bars", "--data-dir", str(dd), "--results", str(results), "--vary-split",
                 *TINY_GRID]) == 0
    err = capsys.readouterr().err
    assert "--vary-split keeps that split for every seed" in err
    table = _report(results, tmp_path / "report", capsys)
    assert "bars" in table and "lasso" in table


def test_a_study_names_a_prepared_table_as_a_dataset_and_refuses_keys_it_cannot_use(tmp_path, capsys):
    train, valid, test = _split_csvs(tmp_path)
    dd = tmp_path / "dd"
    prepare_tabular("bars", train, dd, valid=valid, test=test, label="clicked")
    study = tmp_path / "study.toml"
    grid = (f'[grid]\nresults = "{tmp_path / "res"}"\ndata_dir = "{dd}"\n'
            'methods = ["none", "lasso"]\nk = [2]\nseeds = 2\n')
    study.write_text(grid + "[datasets.bars]\n", encoding="utf-8")
    assert main(["study", str(study), "--dry-run"]) == 0
    captured = capsys.readouterr()
    assert "== bars: real, 3 fields, 1,000 train rows, 2 seeds (all on the split of its given" in captured.err
    assert "4 runs: 0 finished, 4 to run" in captured.out
    study.write_text(grid + '[datasets.bars]\nraw = "x.csv"\n', encoding="utf-8")
    code, line = _cli_error(capsys, ["study", str(study), "--dry-run"])
    assert code == 2 and "[datasets.bars]" in line and "'raw'" in line


# ---------------------------------------------------------------- reading


def test_no_schema_makes_every_other_column_categorical_and_gzip_csv_works(tmp_path):
    train, _, _ = _split_csvs(tmp_path)
    gz = tmp_path / "whole.csv.gz"
    gz.write_bytes(gzip.compress(train.read_bytes()))
    data = prepare_tabular("plain", gz, tmp_path / "dd", label="clicked", split_seed=3)
    assert data.field_names == ["ad", "slot", "noise"]
    assert set(data.info["field_kinds"].values()) == {"categorical"}
    assert (len(data.train), len(data.valid), len(data.test)) == (800, 100, 100)  # the usual 8:1:1
    assert get_dataset("plain", tmp_path / "dd").fingerprint == data.fingerprint
    again = with_split_seed(data, 4, tmp_path / "dd")  # --vary-split: another split of the same rows
    assert again.fingerprint != data.fingerprint and len(again.train) == 800


def test_integer_fields_are_bucketed_like_criteo_and_missing_tokens_share_one_id(tmp_path):
    rows = ["y,n,c"] + [f"{i % 2},{v},x" for i, v in enumerate(["1", "3", "NA", "100", "", "3"] * 20)]
    path = tmp_path / "t.csv"
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    from fmpbench.data.tabular import TabularReader, schema_from_dict

    reader = TabularReader({"train": path}, "y", schema_from_dict({"integer": ["n"], "missing": ["", "NA"]}))
    (batch,) = list(reader.batches(1000))
    tokens = batch.columns["n"][:6].tolist()
    assert tokens[0] == 1 and tokens[1] == tokens[5] == BUCKET_OFFSET + 1 and tokens[3] == BUCKET_OFFSET + 21
    assert tokens[2] == tokens[4]  # "NA" and "" are both the missing token
    np.testing.assert_array_equal(batch.labels[:4], [0, 1, 0, 1])


def test_numeric_cuts_come_from_train_rows_only(tmp_path):
    def write(name: str, values: np.ndarray) -> Path:
        path = tmp_path / f"{name}.csv"
        pd.DataFrame({"price": values, "y": np.arange(len(values)) % 2}).to_csv(path, index=False)
        return path

    train = write("train", np.arange(100, dtype=float))
    valid, test = write("valid", np.full(20, 1e6)), write("test", np.full(20, -1e6))
    data = prepare_tabular("prices", train, tmp_path / "dd", valid=valid, test=test, label="y",
                           schema={"numeric": ["price"], "numeric_buckets": 4}, min_count=1)
    np.testing.assert_allclose(data.info["numeric_bounds"]["price"], [24.75, 49.5, 74.25])
    assert data.field_dims == [5]  # OOV + four buckets
    assert len(set(np.asarray(data.valid.X[:, 0]))) == 1 and len(set(np.asarray(data.test.X[:, 0]))) == 1


def test_skip_bad_rows_counts_bad_labels_instead_of_failing(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("y,a\n" + "".join(f"{i % 2},v{i % 5}\n" for i in range(50)) + "2,v1\nyes,v2\n", encoding="utf-8")
    data = prepare_tabular("skipping", path, tmp_path / "dd", label="y", skip_bad_rows=True)
    assert data.info["skipped_rows"] == 2 and data.info["n_rows"] == 50


# ---------------------------------------------------------------- mistakes: one line, the right exit code


def test_a_label_that_is_not_0_or_1_names_file_row_and_value(tmp_path, capsys):
    path = tmp_path / "t.csv"
    path.write_text("y,a\n0,x\n1,y\n2,z\n", encoding="utf-8")
    with pytest.raises(DataError) as exc:
        prepare_tabular("bad", path, tmp_path / "dd", label="y")
    assert _one_line(exc) == f"tabular train file {path} row 3: label 'y' must be 0 or 1, got '2'"
    code, line = _cli_error(capsys, ["prepare", "tabular", "--name", "bad", "--train", str(path), "--label", "y",
                                     "--data-dir", str(tmp_path / "dd")])
    assert code == 1 and line.endswith("row 3: label 'y' must be 0 or 1, got '2'")
    assert not (tmp_path / "dd" / "bad").exists() or not any((tmp_path / "dd" / "bad").glob("*/meta.json"))


@pytest.mark.parametrize("gzipped", [False, True])
def test_a_row_with_too_few_fields_names_its_line(tmp_path, gzipped):
    # pyarrow's parse error quotes the row, not where it is; blank lines and quoted commas still count right
    text = 'y,a,b\n0,x,y\n\n1,"p,q",z\n0,x\n1,y,y\n'
    path = tmp_path / ("t.csv.gz" if gzipped else "t.csv")
    path.write_bytes(gzip.compress(text.encode()) if gzipped else text.encode())
    with pytest.raises(DataError) as exc:
        prepare_tabular("bad", path, tmp_path / "dd", label="y")
    assert _one_line(exc) == f"tabular train file {path} line 5: CSV parse error: Expected 3 columns, got 2: 0,x"


def test_a_bad_integer_value_names_its_field(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("y,n\n0,1\n1,2.5\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"row 2: integer field 'n' must be an integer, got '2.5'$"):
        prepare_tabular("bad", path, tmp_path / "dd", label="y", schema={"integer": ["n"]})


@pytest.mark.parametrize(
    ("schema", "expected"),
    [
        ('integr = ["a"]\n', "unknown key 'integr'; the keys are: label, categorical, integer, numeric,"),
        ('integer = ["nope"]\n', "integer column 'nope' is not a column of "),
        ('integer = ["a"]\nignore = ["a"]\n', "column 'a' is declared both integer and ignore"),
        ('numeric_buckets = 1\n', "'numeric_buckets' must be an integer of at least 2, got 1"),
        ('integer = "a"\n', "'integer' must be a list of column names (strings), got 'a'"),
        ("label = [\n", "not valid TOML"),
    ],
)
def test_schema_mistakes_exit_2_naming_the_file_and_key(tmp_path, capsys, schema, expected):
    train, _, _ = _split_csvs(tmp_path)
    (tmp_path / "schema.toml").write_text(schema.replace('"a"', '"ad"'), encoding="utf-8")
    code, line = _cli_error(capsys, ["prepare", "tabular", "--name", "x", "--train", str(train), "--label", "clicked",
                                     "--schema", str(tmp_path / "schema.toml"), "--data-dir", str(tmp_path / "dd")])
    assert code == 2
    assert line.startswith("fmpbench: error: ") and expected.replace("'a'", "'ad'") in line
    assert "schema.toml" in line
    assert not (tmp_path / "dd").exists() or custom_datasets(tmp_path / "dd") == []


def test_command_line_mistakes_exit_2_in_one_line(tmp_path, capsys):
    train, valid, test = _split_csvs(tmp_path)
    empty = tmp_path / "empty.csv"
    empty.write_text("", encoding="utf-8")
    header_only = tmp_path / "header.csv"
    header_only.write_text("ad,clicked\n", encoding="utf-8")
    pd.read_csv(valid).drop(columns=["noise"]).to_csv(tmp_path / "short.csv", index=False)
    base = ["prepare", "tabular", "--data-dir", str(tmp_path / "dd")]
    cases = [
        (["--name", "x", "--train", str(train), "--label", "click"], f"{train}: no label column 'click'"),
        (["--name", "x", "--train", str(train)], "name the label column"),
        (["--name", "x", "--train", str(empty), "--label", "clicked"], f"{empty}: file is empty"),
        (["--name", "x", "--train", str(header_only), "--label", "clicked"], f"{header_only}: no data rows"),
        (["--name", "x", "--train", str(train), "--valid", str(valid), "--label", "clicked"],
         "give --valid and --test together"),
        (["--name", "x", "--train", str(train), "--valid", str(tmp_path / "short.csv"), "--test", str(test),
          "--label", "clicked"], "short.csv: no column 'noise' (the train file has it)"),
        (["--name", "criteo", "--train", str(train), "--label", "clicked"], "'criteo' is a built-in dataset"),
        (["--name", "../up", "--train", str(train), "--label", "clicked"], "dataset name '../up': use letters"),
        (["--train", str(train), "--label", "clicked"], "prepare tabular needs --name NAME and --train FILE"),
    ]
    for extra, expected in cases:
        code, line = _cli_error(capsys, [*base, *extra])
        assert code == 2 and expected in line, (extra, line)
    code, line = _cli_error(capsys, ["prepare", "criteo", "--raw", str(train), "--label", "y"])
    assert code == 2 and "--label is for `prepare tabular`" in line
    code, line = _cli_error(capsys, ["run", "--dataset", "mine", "--data-dir", str(tmp_path)])
    assert code == 2 and "unknown dataset 'mine'" in line


def test_schema_file_round_trip_and_missing_file(tmp_path):
    (tmp_path / "s.toml").write_text(SCHEMA, encoding="utf-8")
    schema = load_schema(tmp_path / "s.toml")
    assert schema.integer == ("C14",) and schema.user == "device_ip" and schema.missing == ("", "NA")
    with pytest.raises(SchemaError, match=r"schema .*nope.toml: file not found$"):
        load_schema(tmp_path / "nope.toml")


def test_prepare_warns_at_once_when_a_split_is_unusable(tmp_path, capsys):
    # 2 rows split 8:1:1 leave one row to train on: cached as asked, but `run` would refuse it later
    path = tmp_path / "t.csv"
    path.write_text("y,a\n1,x\n0,y\n", encoding="utf-8")
    assert main(["prepare", "tabular", "--name", "tiny", "--train", str(path), "--label", "y",
                 "--data-dir", str(tmp_path / "dd")]) == 0
    warning = capsys.readouterr().err.strip().splitlines()[-1]
    assert warning == ("fmpbench: warning: dataset tiny: the train split has a single class (all 1 labels are 1); "
                       "training and AUC need both clicks and non-clicks; `run` refuses such data")
    assert main(["run", "--dataset", "tiny", "--data-dir", str(tmp_path / "dd"), "--methods", "none",
                 "--results", str(tmp_path / "r"), "-q"]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith("fmpbench: error: dataset tiny: the ")
