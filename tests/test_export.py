"""Results as data: ``load_results`` without torch, ``export`` to CSV/parquet, labels stored in records."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import warnings
from dataclasses import fields
from pathlib import Path

import pandas as pd
import pytest

from fmpbench.catalog import builtin_defaults
from fmpbench.cli import main
from fmpbench.labels import canonical
from fmpbench.protocol import ExperimentConfig, Task, run_task
from fmpbench.report.load import COLUMNS
from fmpbench.results import SCHEMA_VERSION, RunRecord, iter_records, load_results, record_schema_markdown, write_record
from fmpbench.selectors import available_methods, get_selector_class
from fmpbench.training import TrainConfig

DEFAULT = {"Cs": [0.01, 0.03, 0.1, 0.3, 1.0], "max_rows": 200_000}
VARIANT = {"Cs": [0.1], "max_rows": 5}


def _write(results, n: int = 3) -> None:
    for seed in range(n):
        write_record(results, {"run_id": f"r{seed}", "status": "ok", "method": "lasso", "selector": "lasso",
                               "dataset": "toy", "data_source": "real", "k": 2, "num_fields": 3, "seed": seed,
                               "field_names": ["a", "b", "c"], "selected_fields": ["a", "b"],
                               "field_scores": {"a": 1.0, "b": 0.5, "c": 0.1},
                               "method_params": DEFAULT if seed == 0 else VARIANT, "test_auc": 0.7,
                               "test_logloss": 0.5})


def test_load_results_imports_neither_torch_nor_xgboost(tmp_path):
    _write(tmp_path)
    code = (f"import sys; from fmpbench.results import load_results; runs = load_results({str(tmp_path)!r}); "
            "print(len(runs), *sorted(set(runs['label'])), 'torch' in sys.modules, 'xgboost' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["3", "lasso", "lasso[Cs=[0.1],max_rows=5]", "False", "False"]  # defaults read from the source


def test_source_read_defaults_are_the_selectors_own():
    defaults = builtin_defaults()
    for method in available_methods():
        assert canonical(defaults[method]) == canonical(get_selector_class(method)().get_params()), method


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_export_writes_one_row_per_record_with_the_documented_columns(tmp_path, capsys, fmt):
    _write(tmp_path / "r")
    out = tmp_path / f"runs.{fmt}"
    assert main(["export", "--results", str(tmp_path / "r"), "--format", fmt, "--out", str(out)]) == 0
    table = pd.read_csv(out) if fmt == "csv" else pd.read_parquet(out)
    assert list(table.columns) == list(COLUMNS) and len(table) == 3
    assert json.loads(table["selected_fields"].iloc[0]) == ["a", "b"]
    assert json.loads(table["params"].iloc[-1]) == VARIANT
    assert "3 records" in capsys.readouterr().out
    documented = (Path(__file__).parents[1] / "docs" / "record_schema.md").read_text()
    assert all(f"`{column}`" in documented for column in COLUMNS)


def test_export_of_a_missing_folder_is_one_line(tmp_path, capsys):
    assert main(["export", "--results", str(tmp_path / "nope"), "--format", "csv", "--out", str(tmp_path / "x")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_the_record_stores_its_label(tiny_synthetic, tmp_path):
    config = ExperimentConfig(dataset="synthetic", backbone_params={"embed_dim": 4, "hidden": (8,)},
                              train_config=TrainConfig(max_epochs=1, batch_size=1024),
                              method_params={"lasso": {"max_rows": 1000}})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        (record,) = run_task(Task("lasso", 0, (3,)), config, tiny_synthetic, tmp_path)
    assert record["label"] == "lasso[max_rows=1000]"
    assert list(load_results(tmp_path)["label"]) == ["lasso[max_rows=1000]"]


def _doc_section(name: str) -> str:
    text = (Path(__file__).parents[1] / "docs" / "record_schema.md").read_text(encoding="utf-8")
    return text.split(f"## {name}\n", 1)[1].split("\n## ", 1)[0]


def test_the_record_schema_doc_is_rendered_from_the_dataclass():
    section = _doc_section("The JSON record")
    assert record_schema_markdown() in section
    documented = set(re.findall(r"^\| `(\w+)` \|", section, flags=re.M))
    assert documented == {spec.name for spec in fields(RunRecord)}
    assert all(spec.metadata["doc"] for spec in fields(RunRecord))


def test_the_protocol_writes_exactly_the_record_fields(tiny_synthetic, tmp_path):
    config = ExperimentConfig(dataset="synthetic", backbone_params={"embed_dim": 4, "hidden": (8,)},
                              train_config=TrainConfig(max_epochs=1, batch_size=1024))
    (record,) = run_task(Task("random", 0, (3,)), config, tiny_synthetic, tmp_path)
    stored = json.loads((tmp_path / f"{record['run_id']}.json").read_text())
    assert set(stored) == {spec.name for spec in fields(RunRecord)}
    assert stored["schema_version"] == SCHEMA_VERSION and stored["status"] == "ok"
    with pytest.raises(AttributeError, match="no field 'tset_auc'"):
        RunRecord().update(tset_auc=0.5)


def test_another_major_version_is_skipped_with_a_warning_and_old_records_read_as_1_0(tmp_path):
    _write(tmp_path)
    newer = json.loads((tmp_path / "r1.json").read_text())
    (tmp_path / "r1.json").write_text(json.dumps({**newer, "schema_version": "2.0"}))
    with pytest.warns(UserWarning, match=r"skipping result record .*r1\.json: record schema_version 2\.0: "
                                         r"this fmpbench reads 1\.x"):
        runs = load_results(tmp_path)
    assert sorted(runs["run_id"]) == ["r0", "r2"]
    with pytest.warns(UserWarning, match="schema_version 2.0"):
        assert [r["schema_version"] for r in iter_records(tmp_path)] == ["1.0", "1.0"]  # written without one


def test_the_committed_study_records_still_read():
    study = Path(__file__).parents[1] / "results" / "study"
    if not study.is_dir():
        pytest.skip("no committed study records")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        versions = {r["schema_version"] for r in iter_records(study)}
    assert "1.0" in versions and versions <= {"1.0", SCHEMA_VERSION}  # rows added since are written in the current one
