"""The command line: bad input fails fast, in one line, with the right exit code and nothing on disk."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
from shared_data import SHARED_DATA

from fmpbench.cli import _resolve_methods, main
from fmpbench.data import DATASETS
from fmpbench.data.fixtures import amazon_lines, avazu_lines, criteo_lines, write_lines, write_movielens
from fmpbench.data.readers import MovieLensReader
from fmpbench.selectors import registry

TINY_RUN = ["run", "--dataset", "synthetic", "--rows", "2000", "--epochs", "1", "--methods", "none,random", "--k", "3"]


def _error_line(capsys: pytest.CaptureFixture[str]) -> str:
    """The single line a failed command printed on stderr (a traceback would fail here)."""
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("fmpbench: error: ")
    return lines[0]


# ---------------------------------------------------------------- run: usage errors


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (["--methods", "bogus"], "unknown method 'bogus'; choose from: none, random, "),
        (["--methods", ","], "--methods is empty; choose from: all, none"),
        (["--dataset", "bogus"], f"unknown dataset 'bogus'; choose from: {', '.join(DATASETS)}"),
        (["--backbone", "bogus"], "unknown backbone 'bogus'; choose from: mlp, deepfm, dcn, widedeep"),
        (["--executor", "spark"], "unknown executor 'spark'; choose from: local, ray"),
        (["--k", "0"], "impossible k=0: use a count ≥ 1 or a ratio in (0, 1)"),
        (["--k", "-1"], "impossible k=-1"),
        (["--k", "2.5"], "impossible k=2.5"),
        (["--k", "3,19"], "impossible k=19: use a count in 1..18 or a ratio in (0, 1)"),
        (["--k", "abc"], "--k expects numbers separated by commas, got 'abc'"),
        (["--seeds", "0"], "--seeds must be at least 1, got 0"),
        (["--jobs", "0"], "--jobs must be at least 1, got 0"),
        (["--rows", "0"], "--rows must be at least 1, got 0"),
        (["--epochs", "0"], "--epochs must be at least 1, got 0"),
        (["--batch-size", "0"], "--batch-size must be at least 1, got 0"),
        (["--embed-dim", "0"], "--embed-dim must be at least 1, got 0"),
        (["--lr", "-1"], "--lr must be positive, got -1"),
        (["--device", "gpu0"], "unknown device 'gpu0'"),
        (["--device", "cuda:99"], "device 'cuda:99' is not available here"),
    ],
)
def test_run_usage_errors_exit_2_and_write_nothing(tmp_path, capsys, extra, expected):
    results = tmp_path / "results"
    assert main([*TINY_RUN, "--results", str(results), *extra]) == 2
    assert expected in _error_line(capsys)
    assert not results.exists()


def test_usage_error_leaves_an_existing_results_dir_untouched(tmp_path, capsys):
    results = tmp_path / "results"
    results.mkdir()
    (results / "keep.txt").write_text("x")
    assert main([*TINY_RUN, "--results", str(results), "--k", "40"]) == 2
    _error_line(capsys)
    assert [p.name for p in results.iterdir()] == ["keep.txt"]


def test_results_dir_under_a_file_is_refused_before_training(tmp_path, capsys):
    blocker = tmp_path / "somefile"
    blocker.write_text("not a directory")
    assert main([*TINY_RUN, "--results", str(blocker / "results")]) == 2
    assert "not writable" in _error_line(capsys)
    assert blocker.read_text() == "not a directory"


def test_read_only_results_dir_is_refused_before_training(tmp_path, capsys):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if os.access(locked, os.W_OK):
            pytest.skip("running as root: a 0o500 directory is still writable")
        assert main([*TINY_RUN, "--results", str(locked / "runs")]) == 2
        assert "not writable" in _error_line(capsys)
        assert not list(locked.iterdir())
    finally:
        locked.chmod(0o700)


def test_repeated_method_names_run_once():
    assert _resolve_methods("none,random,none, random") == ["none", "random"]


# ---------------------------------------------------------------- prepare: bad raw files


def _prepare(dataset: str, raw: Path, data_dir: Path, *extra: str) -> int:
    return main(["prepare", dataset, "--raw", str(raw), "--data-dir", str(data_dir), *extra])


def _no_cache_left(data_dir: Path, dataset: str) -> None:
    root = data_dir / dataset
    assert not (root / "CURRENT").exists()
    assert not root.exists() or not [p for p in root.iterdir() if p.is_dir()]


def test_prepare_missing_empty_and_header_only_files(tmp_path, capsys):
    assert _prepare("criteo", tmp_path / "nope.txt", tmp_path / "dd") != 0
    assert "nope.txt: file not found" in _error_line(capsys)
    (tmp_path / "empty.txt").write_bytes(b"")
    assert _prepare("criteo", tmp_path / "empty.txt", tmp_path / "dd") != 0
    assert "empty.txt: file is empty" in _error_line(capsys)
    header = write_lines(tmp_path / "header.csv", avazu_lines(3)[:1])
    assert _prepare("avazu", header, tmp_path / "dd") != 0
    assert "header.csv: no data rows" in _error_line(capsys)
    _no_cache_left(tmp_path / "dd", "criteo")
    _no_cache_left(tmp_path / "dd", "avazu")


def test_prepare_bad_rows_name_file_and_line(tmp_path, capsys):
    rows = criteo_lines(40, seed=1)
    rows[16] = rows[16].rsplit("\t", 2)[0]
    assert _prepare("criteo", write_lines(tmp_path / "cols.txt", rows), tmp_path / "dd") == 1
    assert "cols.txt line 17: expected 40 tab-separated columns, got 38" in _error_line(capsys)

    rows = criteo_lines(40, seed=2)
    parts = rows[4].split("\t")
    parts[3] = "abc"
    rows[4] = "\t".join(parts)
    assert _prepare("criteo", write_lines(tmp_path / "ints.txt", rows), tmp_path / "dd") == 1
    assert "ints.txt line 5: I3 is not an integer: 'abc'" in _error_line(capsys)

    lines = amazon_lines(20)
    lines[2] = lines[2][:-5]
    assert _prepare("amazon", write_lines(tmp_path / "a_5.json", lines), tmp_path / "dd") == 1
    assert "a_5.json line 3: bad JSON" in _error_line(capsys)
    _no_cache_left(tmp_path / "dd", "criteo")
    _no_cache_left(tmp_path / "dd", "amazon")


def test_truncated_gzip_is_a_clear_error_and_leaves_no_cache(tmp_path, capsys):
    blob = gzip.compress("\n".join(criteo_lines(3000)).encode())
    (tmp_path / "train.txt.gz").write_bytes(blob[: len(blob) // 2])
    assert _prepare("criteo", tmp_path / "train.txt.gz", tmp_path / "dd") == 1
    assert "train.txt.gz: corrupt or truncated gzip stream" in _error_line(capsys)
    _no_cache_left(tmp_path / "dd", "criteo")


def test_skipped_rows_are_reported_and_reach_the_run_records(tmp_path, capsys):
    rows = criteo_lines(300, seed=3)
    parts = rows[7].split("\t")
    parts[2] = "1.5"
    rows[7] = "\t".join(parts)
    rows[20] = rows[20].rsplit("\t", 1)[0]
    raw = write_lines(tmp_path / "train.txt", rows)
    assert _prepare("criteo", raw, tmp_path / "dd", "--skip-bad-rows", "--min-count", "1") == 0
    assert "skipped 2 malformed rows" in capsys.readouterr().out

    results = tmp_path / "runs"
    argv = ["run", "--dataset", "criteo", "--data-dir", str(tmp_path / "dd"), "--methods", "none"]
    assert main([*argv, "--epochs", "1", "--embed-dim", "4", "--results", str(results), "--no-predictions"]) == 0
    (record,) = [json.loads(p.read_text()) for p in results.glob("*.json")]
    assert record["status"] == "ok" and record["data_source"] == "real"
    assert record["data_info"]["skipped_rows"] == 2


def test_movielens_latin1_files_are_read(tmp_path, capsys):
    folder = write_movielens(tmp_path / "ml", 300)
    movies = ["1::Amélie (2001)::Comédie|Romance", "2::Ça (1990)::Horreur"]
    write_lines(
        folder / "movies.dat", movies + [f"{m}::Film {m} (1999)::Drama" for m in range(3, 31)], encoding="latin-1"
    )
    assert b"Com\xe9die" in (folder / "movies.dat").read_bytes()
    (batch,) = list(MovieLensReader(folder).batches(10_000))
    year_of = dict(zip(batch.columns["genres"].to_pylist(), batch.columns["year"].to_pylist(), strict=True))
    assert year_of["Comédie|Romance"] == "2001" and year_of["Horreur"] == "1990"
    assert _prepare("movielens", folder, tmp_path / "dd") == 0
    assert "prepared movielens" in capsys.readouterr().out


# ---------------------------------------------------------------- other commands


def test_report_of_a_missing_dir_is_a_usage_error(tmp_path, capsys):
    assert main(["report", "--results", str(tmp_path / "nothing"), "--out", str(tmp_path / "out")]) == 2
    assert "does not exist" in _error_line(capsys)
    assert not (tmp_path / "out").exists()


def test_list_methods(capsys):
    assert main(["list", "methods"]) == 0
    names = [line.split()[0] for line in capsys.readouterr().out.splitlines()]
    assert names[:2] == ["none", "random"] and "lasso" in names


# ---------------------------------------------------------------- plug-ins

# A child process whose entry-point group holds one plug-in that cannot be imported; it then runs the CLI.
BROKEN_PLUGIN_CLI = """
import importlib.metadata as metadata, sys
broken = metadata.EntryPoint(name="broken", value="plug2.nothere:Nope", group="fmpbench.selectors")
real = metadata.entry_points
metadata.entry_points = lambda **kw: [broken] if kw.get("group") == "fmpbench.selectors" else real(**kw)
from fmpbench.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.parametrize(
    "argv",
    [["list", "methods"], [*TINY_RUN[:-4], "--methods", "none"]],
    ids=["list", "run"],
)
def test_a_broken_plugin_is_one_warning_line_and_the_command_works(tmp_path, argv):
    if argv[0] == "run":
        argv = [*argv, "--results", str(tmp_path / "results")]
    child = subprocess.run(
        [sys.executable, "-c", BROKEN_PLUGIN_CLI, *argv],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert child.returncode == 0, child.stderr
    warnings = [line for line in child.stderr.splitlines() if "plug-in" in line]
    assert warnings == [
        "fmpbench: warning: skipped plug-in 'broken' (broken = plug2.nothere:Nope): "
        "ModuleNotFoundError: No module named 'plug2'"
    ]
    assert "Traceback" not in child.stderr
    if argv[0] == "list":
        assert child.stdout.split()[0] == "none"
    else:
        assert len(list((tmp_path / "results").glob("*.json"))) == 1


def test_methods_all_names_the_installed_plugins_it_includes(monkeypatch, capsys):
    plugin = metadata.EntryPoint("rategain", "fmpbench_rategain:RateGain", registry.ENTRY_POINT_GROUP)
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "examples" / "plugin"))
    real = metadata.entry_points
    monkeypatch.setattr(
        registry.metadata,
        "entry_points",
        lambda **kw: [plugin] if kw.get("group") == "fmpbench.selectors" else real(**kw),
    )
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    monkeypatch.setattr(registry, "_PLUGINS", [])
    monkeypatch.setattr(registry, "_entry_points_loaded", False)
    assert _resolve_methods("all")[-1] == "rategain"
    assert capsys.readouterr().err == "fmpbench: --methods all includes installed plug-ins: rategain\n"
    assert _resolve_methods("none,rategain") == ["none", "rategain"]
    assert capsys.readouterr().err == ""


# ---------------------------------------------------------------- silent no-ops made loud


def test_report_finds_records_one_folder_down_and_refuses_an_empty_tree(tmp_path, capsys):
    results = tmp_path / "results"
    assert main([*TINY_RUN, "--results", str(results / "mine"), "--no-predictions"]) == 0
    capsys.readouterr()
    out = tmp_path / "out"
    assert main(["report", "--results", str(results), "--out", str(out), "--no-figures"]) == 0
    captured = capsys.readouterr()
    assert f"reporting those in '{results / 'mine'}'" in captured.err
    assert captured.out.startswith("2 records (2 ok,")

    (results / "other").mkdir()
    (results / "other" / "x.json").write_text((next((results / "mine").glob("*.json"))).read_text())
    assert main(["report", "--results", str(results), "--out", str(out)]) == 2
    assert "choose one folder as --results" in _error_line(capsys)

    (tmp_path / "empty" / "sub").mkdir(parents=True)
    assert main(["report", "--results", str(tmp_path / "empty"), "--out", str(tmp_path / "out2")]) == 2
    assert "no run records (*.json) in" in _error_line(capsys)
    assert not (tmp_path / "out2").exists()


def test_rows_with_real_data_and_a_missing_data_dir_are_not_silent(tmp_path, capsys):
    data_dir = tmp_path / "dd"
    assert _prepare("criteo", write_lines(tmp_path / "train.txt", criteo_lines(300, seed=3)), data_dir) == 0
    capsys.readouterr()
    argv = ["run", "--dataset", "criteo", "--methods", "none", "--epochs", "1", "--embed-dim", "4", "--no-predictions"]
    assert main([*argv, "--data-dir", str(data_dir), "--rows", "100", "--results", str(tmp_path / "r")]) == 0
    err = capsys.readouterr().err
    assert (
        f"warning: --rows 100 is ignored: 'criteo' is the prepared real data in '{data_dir}' (240 training rows)" in err
    )

    assert main([*argv, "--data-dir", str(tmp_path / "typo"), "--results", str(tmp_path / "r2")]) == 2
    assert f"--data-dir '{tmp_path / 'typo'}' does not exist" in _error_line(capsys)
    assert not (tmp_path / "r2").exists()

    empty = tmp_path / "empty"
    empty.mkdir()
    assert main([*argv, "--data-dir", str(empty), "--rows", "500", "--results", str(tmp_path / "r3")]) == 0
    assert f"no prepared 'criteo' data in '{empty / 'criteo'}'" in capsys.readouterr().err


def test_resume_summary_shows_the_whole_grid(tmp_path, capsys):
    results = str(tmp_path / "results")
    assert main([*TINY_RUN[:-4], "--methods", "none", "--results", results, "--no-predictions"]) == 0
    capsys.readouterr()
    assert main([*TINY_RUN, "--results", results, "--no-predictions", "--resume"]) == 0
    captured = capsys.readouterr()
    assert "1 runs in" in captured.err and "1 skipped (--resume)" in captured.err
    table = captured.out.split("Which fields can be dropped")[0]  # the summary table, before the drop-list
    assert [line.split()[0] for line in table.splitlines()[1:]] == ["random", "none"]


def test_the_stand_in_notice_is_printed_once(tmp_path, capsys, caplog):
    argv = ["run", "--dataset", "avazu", "--rows", "600", "--methods", "none", "--epochs", "1", "--embed-dim", "4"]
    (tmp_path / "no-data").mkdir()
    assert (
        main([*argv, "--data-dir", str(tmp_path / "no-data"), "--results", str(tmp_path / "r"), "--no-predictions"])
        == 0
    )
    assert capsys.readouterr().err.count("STAND-IN") == 1
    assert not [r for r in caplog.records if r.name.startswith("fmpbench")]


def test_prepare_says_how_many_duplicate_reviews_it_dropped(tmp_path, capsys):
    lines = amazon_lines(80)
    raw = write_lines(tmp_path / "a_5.json", lines + lines[:7])
    assert _prepare("amazon", raw, tmp_path / "dd") == 0
    assert "dropped 7 of 87 reviews as duplicates (one review repeated under several product variants" in (
        capsys.readouterr().out
    )


@pytest.mark.skipif(not (SHARED_DATA / "amazon").is_dir(), reason="real excerpts absent")
def test_the_amazon_excerpt_reports_its_duplicates(tmp_path, capsys):
    assert _prepare("amazon", SHARED_DATA / "amazon" / "AMAZON_FASHION_5.json.gz", tmp_path / "dd") == 0
    assert "dropped 2,728 of 3,176 reviews as duplicates" in capsys.readouterr().out


@pytest.mark.parametrize(("flag", "setting"), [("--torch-dropout", "fast_dropout"), ("--torch-adam", "fused_adam")])
def test_torch_flags_run_the_committed_study_s_arithmetic(tmp_path, flag, setting):
    # the study pins torch's masks and Adam; from `run` the same training needs flags, and its record says which
    argv = ["run", "--dataset", "synthetic", "--rows", "2000", "--epochs", "1", "--methods", "none", "--seeds", "1",
            "--embed-dim", "4", "--no-predictions", "-q"]
    configs = {}
    for flags in ([], [flag]):
        results = tmp_path / ("torch" if flags else "fast")
        assert main([*argv, *flags, "--results", str(results)]) == 0
        (record,) = [json.loads(p.read_text()) for p in results.glob("*.json")]
        configs[bool(flags)] = record
    assert configs[False]["train_config"][setting] is True
    assert setting not in configs[True]["train_config"]  # = False, the key the study's run ids lack
    assert configs[False]["run_id"] != configs[True]["run_id"]
    if setting == "fast_dropout":  # other masks: another draw
        assert configs[False]["test_auc"] != configs[True]["test_auc"]
    else:  # another rounding of the same update
        assert configs[False]["test_auc"] == pytest.approx(configs[True]["test_auc"], abs=1e-3)
