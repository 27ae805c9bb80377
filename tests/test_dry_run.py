"""Grids seen before running: ``--dry-run`` on run and study, ``--set`` / ``[grid.set]``, report's default."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

from fmpbench.cli import DEFAULT_RESULTS_DIR, build_parser, main
from fmpbench.plan import _fits, parse_value
from fmpbench.selectors import available_methods, get_selector_class
from fmpbench.study import StudyError, load_study

TINY = ["--dataset", "synthetic", "--rows", "2000", "--epochs", "1", "--embed-dim", "4", "--k", "4"]
ROW = re.compile(r"^([0-9a-f]{16})\s+(\S+)\s+(\d+)\s+(\d+)\s+(finished|to run)$", re.MULTILINE)


def _plan(out: str) -> dict[str, tuple[str, int, int, str]]:
    return {m[1]: (m[2], int(m[3]), int(m[4]), m[5]) for m in ROW.finditer(out)}


def test_dry_run_lists_every_run_and_which_are_finished(tmp_path, capsys):
    results = tmp_path / "r"
    assert main(["run", "--methods", "none,lasso", *TINY, "--results", str(results)]) == 0
    finished = {p.stem for p in results.glob("*.json")}
    capsys.readouterr()
    assert main(["run", "--methods", "none,lasso", *TINY, "--seeds", "2", "--results", str(results), "--dry-run"]) == 0
    plan = _plan(capsys.readouterr().out)
    assert sorted((row, k, seed) for row, k, seed, _ in plan.values()) == [
        ("lasso", 4, 0), ("lasso", 4, 1), ("none", 18, 0), ("none", 18, 1)]
    assert {run_id for run_id, (*_, status) in plan.items() if status == "finished"} == finished
    assert {p.stem for p in results.glob("*.json")} == finished  # nothing was trained


def test_dry_run_writes_nothing(tmp_path, capsys):
    assert main(["run", "--methods", "lasso", *TINY, "--results", str(tmp_path / "r"), "--dry-run"]) == 0
    assert "1 runs: 0 finished, 1 to run" in capsys.readouterr().out
    assert not (tmp_path / "r").exists()


def test_set_changes_the_run_and_reaches_the_selector(tmp_path, capsys):
    args = ["run", "--methods", "lasso", *TINY, "--results", str(tmp_path / "r")]
    assert main([*args, "--dry-run"]) == 0
    default_ids = set(_plan(capsys.readouterr().out))
    assert main([*args, "--set", "lasso.max_rows=1000", "--set", "lasso.Cs=[0.1, 1.0]", "--dry-run"]) == 0
    set_ids = set(_plan(capsys.readouterr().out))
    assert set_ids and not set_ids & default_ids  # the parameters are part of the run's identity
    assert main([*args, "--set", "lasso.max_rows=1000", "--set", "lasso.Cs=[0.1, 1.0]"]) == 0
    (record,) = [p for p in (tmp_path / "r").glob("*.json")]
    assert record.stem in set_ids and '"max_rows": 1000' in record.read_text()


@pytest.mark.parametrize(("item", "message"), [
    ("nope.x=1", "--set: unknown method 'nope'"),
    ("lasso.alpha=1", "--set: lasso has no parameter 'alpha'; it has: Cs, max_rows"),
    ("lasso.max_rows=many", "--set: lasso.max_rows = 'many' does not fit its type 'int | None'"),
    ("lasso.max_rows", "--set expects METHOD.PARAM=VALUE"),
    ("gbdt.max_rounds=5", "--set names gbdt, which --methods does not include"),
])
def test_bad_set_is_one_line_and_exit_2(tmp_path, capsys, item, message):
    assert main(["run", "--methods", "lasso", *TINY, "--results", str(tmp_path / "r"), "--set", item]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not (tmp_path / "r").exists()


def test_values_parse_as_toml_then_json_then_text():
    assert [parse_value(v) for v in ("0.2", "true", "[4, 6]", '"a b"', "null", "user")] == [
        0.2, True, [4, 6], "a b", None, "user"]


def test_every_default_fits_its_own_annotation():
    """The type check of --set would otherwise refuse a method's own default."""
    for method in available_methods():
        for param in inspect.signature(get_selector_class(method).__init__).parameters.values():
            if param.name != "self" and param.default is not inspect.Parameter.empty:
                assert _fits(param.default, str(param.annotation)), (method, param.name)


def _study(tmp_path: Path, grid: str = "") -> Path:
    path = tmp_path / "study.toml"
    path.write_text(f'[grid]\nresults = "{tmp_path / "r"}"\ndata_dir = "{tmp_path / "d"}"\n'
                    f'methods = ["none", "lasso"]\nseeds = 2\nk = [4]\n{grid}\n'
                    "[datasets.synthetic]\nrows = 2000\n", encoding="utf-8")
    return path


def test_study_dry_run_lists_the_grid_and_trains_nothing(tmp_path, capsys):
    path = _study(tmp_path, "[grid.set]\nlasso.max_rows = 1000")
    assert load_study(path).method_params == {"lasso": {"max_rows": 1000}}
    assert main(["study", str(path), "--dry-run"]) == 0
    plan = _plan(capsys.readouterr().out)
    assert sorted((row, seed) for row, _, seed, _ in plan.values()) == [
        ("lasso", 0), ("lasso", 1), ("none", 0), ("none", 1)]
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize(("grid", "message"), [
    ("[grid.set]\nnope.x = 1", "[grid.set]: unknown method 'nope'"),
    ("[grid.set]\nlasso.alpha = 1", "[grid.set]: lasso has no parameter 'alpha'"),
    ("[grid.set]\nlasso = 3", "[grid.set]: 'lasso' needs a table of parameters"),
])
def test_study_set_is_checked(tmp_path, capsys, grid, message):
    path = _study(tmp_path, grid)
    with pytest.raises(StudyError, match=re.escape(message)):
        load_study(path)
    assert main(["study", str(path), "--dry-run"]) == 2
    assert message in capsys.readouterr().err


def test_report_reads_where_run_writes():
    sub = build_parser()._subparsers._group_actions[0].choices  # noqa: SLF001 - the parsers argparse built
    defaults = {name: sub[name].get_default("results") for name in ("run", "report")}
    assert defaults == {"run": DEFAULT_RESULTS_DIR, "report": DEFAULT_RESULTS_DIR}
