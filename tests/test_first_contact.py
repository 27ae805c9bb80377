"""What a new user meets first: the README's plug-in package, ``help(Selector)``, ``--help``."""

from __future__ import annotations

import io
import json
import pydoc
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from fmpbench import grid
from fmpbench.catalog import MethodInfo, builtin_methods, rows_of, summary_of
from fmpbench.cli import _print_summary, main
from fmpbench.data import DATASETS, DEFAULT_MIN_COUNT, REAL_DATASETS
from fmpbench.grid import EXECUTORS
from fmpbench.models import BACKBONES
from fmpbench.protocol import Task
from fmpbench.report.flags import flag_rows
from fmpbench.selectors import Selector, available_methods, get_selector_class, registry
from fmpbench.training import TrainConfig

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", ["pyproject.toml", "fmpbench_rategain.py"])
def test_readme_shows_the_example_plugin_verbatim(name):
    blocks = re.findall(r"```\w+\n# (examples/plugin/\S+)\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    shown = dict(blocks)
    assert shown[f"examples/plugin/{name}"] == (ROOT / "examples" / "plugin" / name).read_text()


def test_help_of_selector_says_what_fit_receives():
    text = pydoc.render_doc(Selector, renderer=pydoc.plaintext)
    for member in (
        "data.train.X",
        "data.valid",
        "field_dims",
        "field_names",
        "user_field",
        "context.seed",
        "train_config",
        "set_scores",
    ):
        assert member in text, member


def _help(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main([*argv, "--help"])
    assert exit_info.value.code == 0
    return " ".join(capsys.readouterr().out.split())  # argparse wraps lines at the terminal width


def test_run_help_shows_defaults_and_the_registries_choices(capsys):
    text = _help(capsys, "run")
    assert f"--dataset DATASET dataset name (one of: {', '.join(DATASETS)}; default: avazu)" in text
    assert f"(one of: {', '.join(BACKBONES)}; default: mlp)" in text
    assert f"(one of: {', '.join(EXECUTORS)}; default: local)" in text
    assert f"(default: {TrainConfig().max_epochs})" in text and f"(default: {TrainConfig().batch_size})" in text
    assert "(default: results/runs)" in text


def test_prepare_help_documents_data_dir_and_min_count(capsys):
    text = _help(capsys, "prepare")
    assert "--data-dir DATA_DIR cache directory that `run --data-dir` reads" in text
    assert (
        "--min-count MIN_COUNT values seen fewer times in the training split share the out-of-vocabulary id 0" in text
    )
    assert ", ".join(f"{name} {count}" for name, count in DEFAULT_MIN_COUNT.items()) in text
    assert f"(one of: {', '.join(REAL_DATASETS)})" in text


def test_summary_prints_integer_counts_and_mflops(capsys):
    record = {
        "status": "ok",
        "dataset": "synthetic",
        "method": "lasso",
        "k": 5,
        "seed": 0,
        "test_auc": 0.71234,
        "test_logloss": 0.5,
        "embedding_params": 29920.0,
        "dense_params": 1234567.0,
        "flops_per_sample": 2_500_000.0,
        "search_seconds": 1.0,
        "retrain_seconds": 2.0,
        "total_seconds": 3.0,
    }
    _print_summary([record, {**record, "seed": 1, "embedding_params": 29922.0}])
    header, row = capsys.readouterr().out.splitlines()
    assert "MFLOPs" in header.split() and "mflops" not in header
    assert row.split()[:7] == ["lasso", "5", "0.7123", "0.5000", "29,921", "1,234,567", "2.500"]


def test_list_methods_prints_whole_summaries_and_lightfmps_two_rows(capsys):
    assert main(["list", "methods"]) == 0
    out = capsys.readouterr().out
    assert "…" not in out
    text = " ".join(out.split())
    for method in builtin_methods():
        assert f"{method.name} {method.summary}" in text
    assert "Yields two result rows: lightfmp-fs (its ranking, standard top-k retrain) and lightfmp (its own" in text


def test_first_eta_counts_the_search_it_waited_for(monkeypatch):
    """lasso's search costs 5 retrains: after its only row (6 units of 7) one unit is left, not one row of 1."""
    clock = iter([0.0, 60.0, 70.0])
    monkeypatch.setattr(grid.time, "perf_counter", lambda: next(clock))
    stream = io.StringIO()
    report = grid._progress_printer(2, 0, stream, [Task("lasso", 0, (3,)), Task("none", 0, (18,))])
    base = {"status": "failed", "error": "x", "k": 3, "seed": 0}
    report({**base, "method": "lasso", "selector": "lasso"})
    report({**base, "method": "none", "selector": "none"})
    first, last = stream.getvalue().splitlines()
    assert get_selector_class("lasso").search_cost == 5.0 and get_selector_class("none").search_cost == 0.0
    assert first.endswith("(ETA 10s)") and last.endswith("(ETA 0s)")


def test_flag_rows_marks_worse_than_chance_and_far_worse_logloss_than_none():
    runs = pd.DataFrame(
        {
            "dataset": ["a", "a", "a", "a", "b"],
            "seed": [0, 0, 0, 1, 0],
            "method": ["none", "lasso", "lightfmp", "lightfmp", "lightfmp"],
            "test_auc": [0.70, 0.69, 0.31, 0.68, 0.60],
            "test_logloss": [0.50, 0.549, 3.6, 0.60, 9.0],
        }
    )
    flagged = flag_rows(runs)
    assert flagged.index.tolist() == [2]  # seed 1 and dataset b have no `none` to compare logloss with
    assert flagged.loc[2, "reason"] == "test AUC 0.3100 < 0.5; logloss 3.6000 > none's 0.5000 + 0.05"


def test_run_summary_and_report_flag_a_result_worse_than_chance(tmp_path, capsys):
    results = tmp_path / "results"
    assert (
        main(
            [
                "run",
                "--dataset",
                "synthetic",
                "--rows",
                "2000",
                "--epochs",
                "1",
                "--methods",
                "none,random",
                "--k",
                "3",
                "--results",
                str(results),
                "--no-predictions",
            ]
        )
        == 0
    )
    records = {json.loads(p.read_text())["method"]: p for p in results.glob("*.json")}
    bad = json.loads(records["random"].read_text())
    bad["test_auc"] = 0.3
    records["random"].write_text(json.dumps(bad))

    _print_summary([json.loads(p.read_text()) for p in records.values()])
    out = capsys.readouterr().out
    assert "FLAGGED: 1 rows to read before publishing" in out
    assert "  random k=3 seed=0: test AUC 0.3000 < 0.5" in out

    assert main(["report", "--results", str(results), "--out", str(tmp_path / "out")]) == 0
    flags = (tmp_path / "out" / "flags.md").read_text()
    assert "| synthetic | random | 3 | 0 | 0.3000 |" in flags
    assert "rows to read before publishing (worse than chance, or far worse logloss than `none`): 1 — listed in" in (
        (tmp_path / "out" / "README.md").read_text()
    )


# Runs `python -m fmpbench ARGS` in this child and reports which heavy libraries it imported.
IMPORTS_OF_CLI = """
import runpy, sys
sys.argv = ["fmpbench", *sys.argv[1:]]
try:
    runpy.run_module("fmpbench", run_name="__main__", alter_sys=True)
except SystemExit as exc:
    assert exc.code in (0, None), exc.code
print("HEAVY", *sorted(m for m in ("torch", "scipy", "sklearn", "matplotlib") if m in sys.modules))
"""


@pytest.mark.parametrize("argv", [["--help"], ["list", "methods"]])
def test_help_and_list_methods_import_neither_torch_nor_scipy(argv):
    child = subprocess.run(
        [sys.executable, "-c", IMPORTS_OF_CLI, *argv], capture_output=True, text=True, timeout=120, cwd=ROOT
    )
    assert child.returncode == 0, child.stderr
    assert child.stdout.splitlines()[-1] == "HEAVY"


def test_the_source_read_catalog_matches_the_imported_registry():
    plugins = set(registry.plugin_methods())
    imported = [get_selector_class(name) for name in available_methods() if name not in plugins]
    assert builtin_methods() == [
        MethodInfo(cls.name, summary_of(cls.__doc__), rows_of(cls.name, cls.native_name, cls.retrain_name))
        for cls in imported
    ]
