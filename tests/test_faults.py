"""Faults found by an outside probe (issue 12): each test names its case and fails on the code before the fix."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

from fmpbench.data import get_dataset
from fmpbench.grid import build_tasks, run_grid
from fmpbench.protocol import ExperimentConfig
from fmpbench.report import generate_report
from fmpbench.report import summary as report_summary
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
