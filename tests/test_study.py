"""The study and ``run --vary-split``: each seed its own split, exact worker data, strict study files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fmpbench.cli import main
from fmpbench.results import iter_records
from fmpbench.study import StudyError, load_study

TINY = ["--backbone", "mlp", "--embed-dim", "4", "--epochs", "1", "--batch-size", "1024", "--no-predictions"]


def _records(folder: Path) -> list[dict]:
    return [r for r in iter_records(folder) if r["status"] == "ok"]


def test_vary_split_gives_each_seed_its_own_split_and_one_family(tmp_path):
    results = tmp_path / "results"
    code = main(["run", "--methods", "none,random", "--dataset", "synthetic", "--rows", "2000", "--k", "4",
                 "--seeds", "3", "--vary-split", "--jobs", "2", "--results", str(results), *TINY])
    assert code == 0
    records = _records(results)
    by_seed = {r["seed"]: r for r in records if r["method"] == "none"}
    assert {r["split_seed"] for r in by_seed.values()} == {2024, 2025, 2026}
    assert len({r["data_fingerprint"] for r in by_seed.values()}) == 3
    assert len({r["data_family"] for r in records}) == 1
    # every row of a seed, whichever process ran it, trained on that seed's data
    for record in records:
        assert record["data_fingerprint"] == by_seed[record["seed"]]["data_fingerprint"]
    # the report compares them as one dataset, not three setups
    from fmpbench.report import load_results

    assert set(load_results(results).ok["block"]) == {"synthetic"}


def test_matched_baselines_from_the_cli(tmp_path):
    results = tmp_path / "results"
    assert main(["run", "--methods", "lightfmp", "--dataset", "synthetic", "--rows", "2000", "--k", "6",
                 "--matched-baselines", "lightfmp", "--results", str(results), *TINY]) == 0
    methods = sorted(r["method"] for r in _records(results))
    assert methods == ["lightfmp", "lightfmp+magnitude", "lightfmp+small", "lightfmp-fs"]


def _study(tmp_path: Path, grid: str = "", dataset: str = "rows = 2000") -> Path:
    path = tmp_path / "study.toml"
    path.write_text(f'[grid]\nresults = "{tmp_path / "r"}"\nmethods = ["none"]\nseeds = 2\n{grid}\n'
                    f"[datasets.synthetic]\n{dataset}\n", encoding="utf-8")
    return path


@pytest.mark.parametrize(("grid", "dataset", "message"), [
    ("seed = 5", "rows = 2000", "unknown key 'seed' in [grid]; allowed: results, data_dir, methods"),
    ("epoch = 2", "rows = 2000", "unknown key 'epoch' in [grid]"),
    ("train = { epochs = 2 }", "rows = 2000", "unknown key 'epochs' in [grid.train]; allowed: max_epochs"),
    ("", "rows = 2000\nepochs = 2", "unknown key 'epochs' in [datasets.synthetic]"),
    ('matched_baselines = ["nope"]', "rows = 2000", "unknown method 'nope'"),
])
def test_unknown_study_keys_are_refused(tmp_path, capsys, grid, dataset, message):
    path = _study(tmp_path, grid, dataset)
    with pytest.raises(StudyError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_study(path)
    assert main(["study", str(path)]) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(("methods", "expected"), [('"none, lasso"', ["none", "lasso"]), ('["lasso"]', ["lasso"])])
def test_study_methods_are_a_list_or_a_comma_separated_string_as_for_run(tmp_path, methods, expected):
    path = tmp_path / "s.toml"
    path.write_text(f"[grid]\nmethods = {methods}\nmatched_baselines = {methods}\n[datasets.synthetic]\nrows = 2000\n")
    study = load_study(path)
    assert study.methods == expected and list(study.matched_baselines) == expected


def test_study_methods_of_another_type_are_refused_in_one_line(tmp_path, capsys):
    path = tmp_path / "s.toml"
    path.write_text("[grid]\nmethods = 3\n[datasets.synthetic]\nrows = 2000\n")
    assert main(["study", str(path)]) == 2
    assert "[grid] methods = 3: give a list of method names or one comma-separated string" in capsys.readouterr().err


def test_study_defaults_are_five_seeds_with_split_variation(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text("[datasets.synthetic]\nrows = 2000\n", encoding="utf-8")
    study = load_study(path)
    assert study.seeds == 5 and study.vary_split


def test_study_runs_only_the_datasets_asked_for(tmp_path, capsys):
    path = _study(tmp_path, "jobs = 1", "rows = 2000\ngenerator_seed = 3")
    assert main(["study", str(path), "--datasets", "criteo"]) == 2
    assert "--datasets names criteo, which the file does not have" in capsys.readouterr().err
    assert main(["study", str(path), "--datasets", "synthetic"]) == 0
    records = _records(tmp_path / "r")
    assert {r["split_seed"] for r in records} == {2024, 2025}
    assert {json.dumps(r["ground_truth"]["pairs"]) for r in records} == {
        json.dumps([["inter_a", "inter_b"], ["inter_c", "inter_d"]])}


def test_a_study_sets_the_trainer_and_backbone_as_run_does(tmp_path):
    path = _study(tmp_path, "epochs = 2\nbatch_size = 256\nlr = 0.01\npatience = 1\ndevice = \"cpu\"\nembed_dim = 4\n"
                            "hidden = [8]\npredictions = false\ntrain = { embed_lr = 0.05 }\n"
                            "backbone_params = { dropout = 0.0 }")
    study = load_study(path)
    config = study.train_config
    assert (config.max_epochs, config.batch_size, config.lr, config.patience) == (2, 256, 0.01, 1)
    assert config.embed_lr == 0.05
    assert study.backbone_params == {"embed_dim": 4, "hidden": (8,), "dropout": 0.0}
    assert main(["study", str(path)]) == 0
    records = _records(tmp_path / "r")
    assert len(records) == 2 and not (tmp_path / "r" / "predictions").exists()
    for record in records:
        assert record["train_config"]["max_epochs"] == 2 and record["train_config"]["embed_lr"] == 0.05
        assert record["backbone_params"] == {"embed_dim": 4, "hidden": [8], "dropout": 0.0}
        assert record["dense_params"] == 4 * 18 * 8 + 8 + 8 + 1  # the 8-unit tower on 18 fields of width 4


@pytest.mark.parametrize(("grid", "message"), [
    ("epochs = 0", "[grid] epochs = 0: must be an integer ≥ 1"),
    ('lr = "fast"', "[grid] lr = 'fast': must be a positive number"),
    ('hidden = [8, "x"]', "[grid] hidden = [8, 'x']: must be a list of integers ≥ 1"),
    ("train = { weight_decay = true }", "[grid.train] weight_decay = True: must be a number"),
    ("backbone_params = { width = 3 }", "unknown key 'width' in [grid.backbone_params]"),
    ("epochs = 2\ntrain = { max_epochs = 3 }", "[grid] epochs is also set in its table; set it once"),
    ('executor = "dask"', "[grid] executor = 'dask': choose from: local, ray"),
    ('backbone = "resnet"', "[grid] backbone = 'resnet': choose from: mlp"),
    ('device = "cuda:7"', "device 'cuda:7' is not available here"),
])
def test_bad_study_settings_are_one_line_errors(tmp_path, capsys, grid, message):
    assert main(["study", str(_study(tmp_path, grid))]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
