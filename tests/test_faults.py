"""Faults found by an outside probe (issue 12): each test names its case and fails on the code before the fix."""

from __future__ import annotations

import errno
import gzip
import hashlib
import io
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from shared_data import SHARED_DATA

from fmpbench import data as data_module
from fmpbench import report as report_module
from fmpbench import results as results_module
from fmpbench.cli import main
from fmpbench.data import DataError, get_dataset, load_prepared, prepare, preprocess
from fmpbench.data.fixtures import amazon_lines, avazu_lines, criteo_lines, write_lines, write_movielens
from fmpbench.data.prepared import PreparedData, Split
from fmpbench.grid import GridError, build_tasks, run_grid
from fmpbench.measures import PeakMemory
from fmpbench.protocol import ExperimentConfig, Task, task_rows
from fmpbench.report import generate_report
from fmpbench.report import summary as report_summary
from fmpbench.results import CLAIM_MAX_AGE_S, CLAIMS_FOLDER, RunClaims, write_record
from fmpbench.selectors import SearchContext, Selector, get_selector_class, register
from fmpbench.selectors.encoding import subsample
from fmpbench.selectors.registry import _REGISTRY
from fmpbench.training import TrainConfig

TINY_CONFIG = ExperimentConfig(
    dataset="synthetic",
    n_rows=2000,
    backbone_params={"embed_dim": 4, "hidden": (16,)},
    train_config=TrainConfig(max_epochs=1, batch_size=256),
)


@pytest.fixture(scope="module")
def grid_with_predictions() -> Iterator[Path]:
    """none and random × k = 3, 6 with stored test predictions (what DeLong's test reads)."""
    with tempfile.TemporaryDirectory() as tmp:
        results = Path(tmp) / "runs"
        data = get_dataset("synthetic", n_rows=TINY_CONFIG.n_rows)
        with open(os.devnull, "w") as quiet:
            run_grid(build_tasks(["none", "random"], [0], (3, 6)), TINY_CONFIG, data, results, stream=quiet)
        yield results


# ---------------------------------------------------------------- case 2: report


def _copy(source: Path, target: Path) -> Path:
    shutil.copytree(source, target)
    return target


def test_case2_report_skips_an_ok_record_with_a_nan_auc_and_names_it(grid_with_predictions, tmp_path):
    results = _copy(grid_with_predictions, tmp_path / "runs")
    record = json.loads(next(results.glob("*.json")).read_text())
    record.update(run_id="0" * 16, seed=7, test_auc=float("nan"))
    bad = results / f"{record['run_id']}.json"
    bad.write_text(json.dumps(record))
    with pytest.warns(UserWarning, match=f"skipping corrupt result record {bad}: status ok but test_auc is nan"):
        summary = generate_report(results, tmp_path / "report", figures=False)
    assert summary.n_ok == 3 and summary.n_corrupt == 1
    assert (tmp_path / "report" / "main_results.md").is_file()


@pytest.mark.parametrize("damage", ["truncated", "empty", "not-a-zip"])
def test_case2_report_skips_an_unreadable_prediction_file_and_names_it(grid_with_predictions, tmp_path, damage):
    results = _copy(grid_with_predictions, tmp_path / "runs")
    victim = sorted((results / "predictions").glob("*.npz"))[0]
    payload = victim.read_bytes()
    victim.write_bytes({"truncated": payload[: len(payload) // 2], "empty": b"", "not-a-zip": b"hello"}[damage])
    with pytest.warns(UserWarning, match=f"skipping unreadable predictions {victim}"):
        summary = generate_report(results, tmp_path / "report", figures=False)
    assert summary.n_ok == 3 and (tmp_path / "report" / "main_results.md").is_file()


def test_case2_a_report_that_fails_leaves_the_previous_one_in_place(grid_with_predictions, tmp_path, monkeypatch):
    out = tmp_path / "report"
    generate_report(grid_with_predictions, out, figures=False)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    (out / "notes.txt").write_text("a colleague's file")

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("failed half-way")

    monkeypatch.setattr(report_summary, "failures_summary", broken)
    with pytest.raises(RuntimeError, match="failed half-way"):
        generate_report(grid_with_predictions, out, figures=False)
    after = {p.name: p.read_bytes() for p in out.iterdir() if p.name != "notes.txt"}
    assert after == before and (out / "notes.txt").read_text() == "a colleague's file"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report"]  # no temporary folder left behind


def test_case2_a_successful_report_replaces_its_own_files_only(grid_with_predictions, tmp_path):
    out = tmp_path / "report"
    out.mkdir()
    (out / "notes.txt").write_text("kept")
    (out / "auc_vs_k.png").write_bytes(b"stale figure")  # ours, but figures=False leaves figures alone
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        summary = generate_report(grid_with_predictions, out, figures=False)
    assert all(path.parent == out and path.is_file() for path in summary.tables)
    assert (out / "notes.txt").read_text() == "kept" and (out / "auc_vs_k.png").read_bytes() == b"stale figure"


# ---------------------------------------------------------------- case 3: degenerate data


def _criteo_with_labels(path: Path, n: int, label: str | None) -> Path:
    """Kaggle-format rows, every label replaced by ``label`` (None keeps the fixture's mix)."""
    lines = criteo_lines(n, seed=5)
    return write_lines(path, [line if label is None else label + line[1:] for line in lines])


@pytest.mark.parametrize("label", ["0", "1"])
def test_case3_single_class_data_is_refused_before_training_exit_2(tmp_path, capsys, label):
    raw = _criteo_with_labels(tmp_path / "train.txt", 300, label)
    data_dir, results = tmp_path / "dd", tmp_path / "runs"
    prepare("criteo", raw, data_dir, min_count=1)
    argv = ["run", "--dataset", "criteo", "--data-dir", str(data_dir), "--methods", "none", "--results", str(results)]
    assert main(argv) == 2
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert line == (
        f"fmpbench: error: dataset criteo: the train split has a single class (all 240 labels are {label}); "
        "training and AUC need both clicks and non-clicks"
    )
    assert not list(results.glob("*.json"))


@pytest.mark.parametrize(("split", "single"), [("valid", False), ("test", False), ("valid", True)])
def test_case3_an_empty_or_single_class_split_is_refused_by_run_grid(tmp_path, split, single):
    data = get_dataset("synthetic", n_rows=1000)
    part = getattr(data, split)
    broken = Split(part.X, np.zeros_like(part.y)) if single else Split(part.X[:0], part.y[:0])
    with pytest.raises(GridError, match=f"^dataset synthetic: the {split} split (has a single class|is empty)"):
        run_grid(build_tasks(["none"], [0], (3,)), TINY_CONFIG, replace(data, **{split: broken}), tmp_path / "r")
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("method", ["lasso", "rf"])
def test_case3_lasso_and_rf_fit_when_a_subsample_draws_a_single_class(method):
    """One click in 1,000 rows: a 100-row subsample almost surely misses it; the fit must still work."""
    data = get_dataset("synthetic", n_rows=1500)
    y = np.zeros(len(data.train), dtype=np.float32)
    y[17] = 1.0
    yv = np.zeros(len(data.valid), dtype=np.float32)
    yv[3] = 1.0
    rare = replace(data, train=Split(data.train.X, y), valid=Split(data.valid.X, yv))
    params = {"max_rows": 100} if method == "lasso" else {"max_rows": 100, "max_valid_rows": 100, "n_estimators": 5}
    selector = get_selector_class(method)(**params).fit(rare, SearchContext(seed=0))
    assert np.all(np.isfinite(selector.scores_))
    X, ys = subsample(rare.train, 100, 0)
    assert set(np.unique(ys)) == {0.0, 1.0} and len(X) == 100


# ---------------------------------------------------------------- case 1: sequential split boundaries


def _shared(relative: str) -> Path:
    path = SHARED_DATA / relative
    if not path.exists():
        pytest.skip(f"real excerpt not available: {path}")
    return path


def _seven_two_one(total: int) -> dict[str, int]:
    train, valid = round(total * 0.7), round(total * 0.2)
    return {"train": train, "valid": valid, "test": total - train - valid}


def test_case1_sequential_split_of_the_amazon_excerpt_counts_rows_after_deduplication(tmp_path):
    """The genuine excerpt repeats reviews under several variants: 448 rows remain after de-duplication."""
    data = prepare("amazon", _shared("amazon/AMAZON_FASHION_5.json.gz"), tmp_path / "dd", split="sequential")
    assert data.info["split_sizes"] == _seven_two_one(448) == {"train": 314, "valid": 90, "test": 44}
    data.check_trainable()


def test_case1_sequential_split_of_a_criteo_file_with_cr_only_line_endings(tmp_path):
    with gzip.open(_shared("criteo/criteo_kaggle_train_8000.txt.gz"), "rb") as handle:
        lines = handle.read().splitlines()
    raw = tmp_path / "train.txt"
    raw.write_bytes(b"\r".join(lines) + b"\r")
    data = prepare("criteo", raw, tmp_path / "dd", split="sequential", min_count=1)
    assert data.info["split_sizes"] == _seven_two_one(8000) == {"train": 5600, "valid": 1600, "test": 800}
    # file order: the last 800 rows are the test split
    labels = np.array([int(line.split(b"\t", 1)[0]) for line in lines], dtype=np.float32)
    np.testing.assert_array_equal(np.asarray(data.test.y), labels[-800:])


def test_case1_sequential_split_ignores_blank_lines_and_skipped_rows(tmp_path):
    lines = criteo_lines(100, seed=3)
    raw = write_lines(tmp_path / "train.txt", [*lines[:50], "", "", "not\ta row", *lines[50:], ""])
    data = prepare("criteo", raw, tmp_path / "dd", split="sequential", min_count=1, skip_bad_rows=True)
    assert data.info["split_sizes"] == {"train": 70, "valid": 20, "test": 10}
    assert data.info["skipped_rows"] == 1


# ---------------------------------------------------------------- case 6: raw file changing under prepare


def test_case6_rows_appended_during_prepare_are_refused_and_leave_no_cache(tmp_path, monkeypatch):
    raw = write_lines(tmp_path / "train.txt", criteo_lines(300, seed=8))
    data_dir = tmp_path / "dd"
    real_run = data_module._run

    def append_while_parsing(reader, build, **kwargs):  # noqa: ANN001, ANN202 - same signature as the real one
        out = real_run(reader, build, **kwargs)
        with open(raw, "a", encoding="utf-8") as handle:
            handle.write("\n".join(criteo_lines(20, seed=9)) + "\n")
        return out

    monkeypatch.setattr(data_module, "_run", append_while_parsing)
    with pytest.raises(DataError, match=f"^{raw}: the raw file changed while it was being prepared \\(bytes "):
        prepare("criteo", raw, data_dir, min_count=1)
    assert load_prepared("criteo", data_dir) is None
    assert [p.name for p in (data_dir / "criteo").iterdir()] == ["raw_checksums.json"]


def test_case6_an_edit_that_keeps_size_and_mtime_is_not_served_from_the_old_cache(tmp_path):
    raw = write_lines(tmp_path / "train.txt", criteo_lines(300, seed=8))
    data_dir = tmp_path / "dd"
    first = prepare("criteo", raw, data_dir, min_count=1)
    before = raw.stat()
    payload = bytearray(raw.read_bytes())
    payload[0:1] = b"1" if payload[0:1] == b"0" else b"0"  # the first row's label, same size
    raw.write_bytes(bytes(payload))
    os.utime(raw, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert (raw.stat().st_size, raw.stat().st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    second = prepare("criteo", raw, data_dir, min_count=1)
    assert second.fingerprint != first.fingerprint
    assert second.info["raw"]["train"]["sha256"] == hashlib.sha256(bytes(payload)).hexdigest()


# ---------------------------------------------------------------- case 8: every error path is one line


def _mutated(tmp_path: Path, case: str) -> tuple[str, Path, str]:
    """``(dataset, raw, where the error must point)`` for a raw file with one bad line."""
    if case.startswith("amazon"):
        rows = [json.loads(line) for line in amazon_lines(60, seed=2)]
        change = {
            "amazon-time-overflow": {"unixReviewTime": 10**20},
            "amazon-time-before-year-1": {"unixReviewTime": -(10**15)},
            "amazon-lone-surrogate": {"reviewerID": "\udc80x"},
        }[case]
        rows[7].update(change)
        return "amazon", write_lines(tmp_path / "reviews.json", [json.dumps(r) for r in rows]), "line 8"
    if case.startswith("movielens"):
        folder = write_movielens(tmp_path / "ml", 80, seed=2)
        ratings = (folder / "ratings.dat").read_text(encoding="latin-1").splitlines()
        parts = ratings[5].split("::")
        column, value = {"movielens-superscript-digit": (0, "²"), "movielens-timestamp-overflow": (3, "9" * 25)}[case]
        parts[column] = value
        ratings[5] = "::".join(parts)
        write_lines(folder / "ratings.dat", ratings, encoding="latin-1")
        return "movielens", folder, "line 6"
    lines = (criteo_lines if case.startswith("criteo") else avazu_lines)(60, seed=2)
    payload = [line.encode() for line in lines]
    payload[9] += b"\xff"  # a byte that is not UTF-8, at the end of the last field
    raw = tmp_path / ("train.txt" if case.startswith("criteo") else "train.csv")
    raw.write_bytes(b"\n".join(payload) + b"\n")
    return case.split("-")[0], raw, "line 10"


READER_CASES = [
    "amazon-time-overflow",
    "amazon-time-before-year-1",
    "amazon-lone-surrogate",
    "movielens-superscript-digit",
    "movielens-timestamp-overflow",
    "criteo-invalid-utf8",
    "avazu-invalid-utf8",
]


@pytest.mark.parametrize("case", READER_CASES)
def test_case8_reader_limits_and_non_ascii_name_file_and_line_and_are_skippable(tmp_path, capsys, case):
    dataset, raw, where = _mutated(tmp_path, case)
    argv = ["prepare", dataset, "--raw", str(raw), "--min-count", "1"]
    assert main([*argv, "--data-dir", str(tmp_path / "strict")]) == 1
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("fmpbench: error: ") and where in line, line
    assert main([*argv, "--data-dir", str(tmp_path / "lenient"), "--skip-bad-rows"]) == 0
    assert "skipped 1 malformed rows" in capsys.readouterr().out
    assert "Traceback" not in capsys.readouterr().err


def _error_line(capsys: pytest.CaptureFixture[str]) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fmpbench: error: "), lines
    return lines[0]


def test_case8_a_data_dir_that_is_a_regular_file_is_one_line(tmp_path, capsys):
    raw = write_lines(tmp_path / "train.txt", criteo_lines(60, seed=2))
    (tmp_path / "afile").write_text("")
    assert main(["prepare", "criteo", "--raw", str(raw), "--data-dir", str(tmp_path / "afile")]) == 1
    assert str(tmp_path / "afile") in _error_line(capsys)


def test_case8_a_full_disk_during_prepare_names_the_folder_and_leaves_nothing(tmp_path, capsys, monkeypatch):
    def full(self: object, block: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(preprocess.NpyWriter, "write", full)
    raw = write_lines(tmp_path / "train.txt", criteo_lines(60, seed=2))
    data_dir = tmp_path / "dd"
    assert main(["prepare", "criteo", "--raw", str(raw), "--data-dir", str(data_dir), "--min-count", "1"]) == 1
    line = _error_line(capsys)
    assert f"'{data_dir / 'criteo'}" in line and line.endswith("No space left on device")
    assert [p.name for p in (data_dir / "criteo").iterdir()] == ["raw_checksums.json"]


def test_case8_a_full_disk_while_writing_a_record_names_the_record(tmp_path, capsys, monkeypatch):
    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(results_module.os, "fsync", full)
    results = tmp_path / "runs"
    argv = ["run", "--dataset", "synthetic", "--rows", "500", "--epochs", "1", "--methods", "none", "--no-predictions"]
    assert main([*argv, "--results", str(results)]) == 1
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert line.startswith(f"fmpbench: error: '{results}") and line.endswith(".json': No space left on device")
    assert not list(results.glob("*.json")) and not [p for p in results.rglob(".*") if p.is_file()]


def test_case8_a_read_only_report_folder_is_one_line(grid_with_predictions, tmp_path, capsys, monkeypatch):
    def read_only(*args: object, **kwargs: object) -> str:
        raise OSError(errno.EROFS, "Read-only file system", str(tmp_path / "out"))

    monkeypatch.setattr(report_module.tempfile, "mkdtemp", read_only)
    assert main(["report", "--results", str(grid_with_predictions), "--out", str(tmp_path / "out")]) == 1
    assert _error_line(capsys) == f"fmpbench: error: '{tmp_path / 'out'}': Read-only file system"


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["prepare", "criteo", "--raw", "RAW", "--min-count", "0"], "--min-count must be at least 1, got 0"),
        (["run", "--dataset", "synthetic", "--seeds", "100000000000"], "--seeds must be at most 10,000, got "),
        (["run", "--dataset", "synthetic", "--device", "cuda:0"], "device 'cuda:0' is not available here"),
    ],
)
def test_case8_option_values_are_checked_before_any_work(tmp_path, capsys, argv, expected):
    if "cuda:0" in argv and torch.cuda.is_available():
        pytest.skip("this machine has a CUDA device")
    raw = write_lines(tmp_path / "train.txt", criteo_lines(60, seed=2))
    argv = [str(raw) if a == "RAW" else a for a in argv]
    extra = ["--data-dir", str(tmp_path / "dd")] if argv[0] == "prepare" else ["--results", str(tmp_path / "r")]
    assert main([*argv, *extra]) == 2
    assert expected in _error_line(capsys)
    assert not (tmp_path / "dd").exists() and not (tmp_path / "r").exists()


# ---------------------------------------------------------------- case 9: the umask


@pytest.fixture
def group_umask() -> Iterator[int]:
    """A umask that shares with the group (0o002), as on a team's shared results folder."""
    previous = os.umask(0o002)
    yield 0o002
    os.umask(previous)


def _modes(root: Path) -> set[tuple[str, int]]:
    return {("dir" if p.is_dir() else "file", p.stat().st_mode & 0o777) for p in [root, *root.rglob("*")]}


@pytest.mark.usefixtures("group_umask")
def test_case9_cache_folders_and_files_follow_the_umask(tmp_path):
    raw = write_lines(tmp_path / "train.txt", criteo_lines(60, seed=2))
    data = prepare("criteo", raw, tmp_path / "dd", min_count=1)
    assert _modes(tmp_path / "dd" / "criteo" / data.fingerprint) == {("dir", 0o775), ("file", 0o664)}


@pytest.mark.usefixtures("group_umask")
def test_case9_records_and_predictions_follow_the_umask(tmp_path):
    record = {"run_id": "abc", "status": "ok"}
    write_record(tmp_path / "runs", record, (np.array([0, 1]), np.array([0.2, 0.9])))
    assert _modes(tmp_path / "runs") == {("dir", 0o775), ("file", 0o664)}


# ---------------------------------------------------------------- case 11: each run's own peak memory

HOG_MB = 400


class MemoryHog(Selector):
    """Touches ``HOG_MB`` MiB during its search, then frees them."""

    name = "test_memory_hog"

    def fit(self, data: PreparedData, context: SearchContext | None = None) -> MemoryHog:
        hog = np.ones(HOG_MB * 2**20 // 8)
        self.set_scores(data, np.arange(data.num_fields, dtype=float) + hog[0])
        del hog
        return self


needs_clear_refs = pytest.mark.skipif(
    not Path("/proc/self/clear_refs").exists(), reason="per-run CPU peaks need Linux's /proc/self/clear_refs"
)


@needs_clear_refs
def test_case11_peak_memory_laps_do_not_inherit_earlier_peaks():
    memory = PeakMemory(torch.device("cpu"))
    hog = np.ones(HOG_MB * 2**20 // 8)
    del hog
    first, second = memory.lap(), memory.lap()
    assert first - second > 0.8 * HOG_MB, (first, second)


@needs_clear_refs
def test_case11_a_run_after_a_memory_hungry_one_reports_its_own_peak(tmp_path):
    register(MemoryHog)
    try:
        data = get_dataset("synthetic", n_rows=TINY_CONFIG.n_rows)
        tasks = [Task("test_memory_hog", 0, (3,)), Task("none", 0, (3,))]
        with open(os.devnull, "w") as quiet:
            records = run_grid(tasks, TINY_CONFIG, data, tmp_path / "runs", stream=quiet).records
    finally:
        _REGISTRY.pop(MemoryHog.name, None)
    peaks = {r["method"]: r["peak_memory_mb"] for r in records}
    assert peaks["test_memory_hog"] - peaks["none"] > 0.5 * HOG_MB, peaks  # before: none inherited the hog's peak


# ---------------------------------------------------------------- case 10: two runs on one results folder


def _write_claim(results: Path, run_id: str, host: str, pid: int, age_s: float = 0.0) -> Path:
    path = results / CLAIMS_FOLDER / f"{run_id}.claim"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"host": host, "pid": pid, "since": 0}))
    then = time.time() - age_s
    os.utime(path, (then, then))
    return path


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_case10_claims_are_exclusive_and_stale_ones_are_taken_over(tmp_path):
    here = platform.node()
    first, second = RunClaims(tmp_path), RunClaims(tmp_path)
    assert first.take(["a", "b"]) and not second.take(["c", "b"])
    assert second.declined == {"b": f"{here} pid {os.getpid()}"}
    assert not (tmp_path / CLAIMS_FOLDER / "c.claim").exists()  # all or nothing
    _write_claim(tmp_path, "dead", here, _dead_pid())
    _write_claim(tmp_path, "remote-fresh", "another-host", 1, age_s=60)
    _write_claim(tmp_path, "remote-old", "another-host", 1, age_s=CLAIM_MAX_AGE_S + 60)
    assert second.take(["dead"]) and second.take(["remote-old"]) and not second.take(["remote-fresh"])
    owner = json.loads((tmp_path / CLAIMS_FOLDER / "dead.claim").read_text())
    assert (owner["host"], owner["pid"]) == (here, os.getpid())
    first.release_all()
    assert not (tmp_path / CLAIMS_FOLDER / "a.claim").exists() and (tmp_path / CLAIMS_FOLDER / "dead.claim").exists()


def test_case10_a_grid_skips_the_runs_a_live_process_has_claimed(tmp_path):
    results = tmp_path / "runs"
    data = get_dataset("synthetic", n_rows=TINY_CONFIG.n_rows)
    tasks = build_tasks(["none", "random"], [0], (3, 6))
    random_ids = [row.run_id for row in task_rows(Task("random", 0, (3, 6)), TINY_CONFIG, data)]
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        _write_claim(results, random_ids[0], platform.node(), other.pid)
        stream = io.StringIO()
        outcome = run_grid(tasks, TINY_CONFIG, data, results, stream=stream)
    finally:
        other.kill()
        other.wait()
    assert [r["method"] for r in outcome.records] == ["none"]  # before: both processes computed every run
    assert f"skipped 2 runs that another process has claimed ({platform.node()} pid {other.pid})" in stream.getvalue()
    assert sorted(p.name for p in (results / CLAIMS_FOLDER).iterdir()) == [f"{random_ids[0]}.claim"]
    again = run_grid(tasks, TINY_CONFIG, data, results, resume=True, stream=io.StringIO())  # the owner is gone
    assert [r["method"] for r in again.records] == ["random", "random"]
    assert not (results / CLAIMS_FOLDER).exists()
