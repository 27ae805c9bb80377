"""Search fidelity: ``--search-rows N`` gives every search a recorded, seeded sample of N training rows."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from fmpbench.cli import main
from fmpbench.protocol import ExperimentConfig, Task, run_task, search_view, task_rows
from fmpbench.results import iter_records
from fmpbench.selectors import get_selector_class
from fmpbench.study import load_study
from fmpbench.training import TrainConfig

CONFIG = dict(dataset="synthetic", backbone_params={"embed_dim": 4, "hidden": (8,)},
              train_config=TrainConfig(max_epochs=1, batch_size=1024))


@pytest.fixture
def seen(monkeypatch) -> list:
    """The data each ``random`` search is given."""
    calls: list = []
    cls = get_selector_class("random")
    fit = cls.fit

    def probe(self, data, context=None):
        calls.append(data)
        return fit(self, data, context)

    monkeypatch.setattr(cls, "fit", probe)
    return calls


def _rows(X: np.ndarray) -> set[bytes]:
    return {row.tobytes() for row in np.asarray(X)}


def test_a_search_sees_exactly_n_training_rows_and_never_the_test_split(tiny_synthetic, tmp_path, seen):
    config = ExperimentConfig(**CONFIG, search_rows=500)
    (record,) = run_task(Task("random", 0, (3,)), config, tiny_synthetic, tmp_path)
    (data,) = seen
    assert len(data.train) == 500 and data.train.X.shape == (500, tiny_synthetic.num_fields)
    assert _rows(data.train.X) <= _rows(tiny_synthetic.train.X)  # a sample of the training rows
    assert len(data.test) == 0 and data.truth is None
    assert np.array_equal(data.valid.X, tiny_synthetic.valid.X) and np.array_equal(data.valid.y, tiny_synthetic.valid.y)
    assert record["search_rows"] == 500 and record["search_train_rows"] == 500
    assert record["status"] == "ok"


def test_by_default_a_search_sees_every_training_row_but_not_the_test_split(tiny_synthetic, tmp_path, seen):
    (record,) = run_task(Task("random", 0, (3,)), ExperimentConfig(**CONFIG), tiny_synthetic, tmp_path)
    (data,) = seen
    assert data.train is tiny_synthetic.train and len(data.test) == 0
    assert record["search_rows"] is None and record["search_train_rows"] == len(tiny_synthetic.train)


def test_the_sample_is_seeded_and_apart_from_the_split(tiny_synthetic):
    first, again, other = (search_view(tiny_synthetic, 300, seed).train.X for seed in (0, 0, 1))
    assert np.array_equal(first, again) and not np.array_equal(first, other)
    assert search_view(tiny_synthetic, 10**9, 0).train is tiny_synthetic.train  # more than there is: all


def test_search_rows_is_part_of_the_run_id_only_when_set(tiny_synthetic):
    def ids(**extra):
        return [row.run_id for row in task_rows(Task("random", 0, (3,)), ExperimentConfig(**CONFIG, **extra),
                                                tiny_synthetic)]

    assert ids() == ids(search_rows=None) != ids(search_rows=500) != ids(search_rows=600)


def test_the_cli_and_the_study_take_search_rows(tmp_path, capsys):
    tiny = ["--dataset", "synthetic", "--rows", "2000", "--k", "4", "--embed-dim", "4", "--epochs", "1",
            "--no-predictions", "--methods", "random"]
    assert main(["run", *tiny, "--search-rows", "0", "--results", str(tmp_path / "x")]) == 2
    assert "--search-rows must be at least 1, got 0" in capsys.readouterr().err
    assert main(["run", *tiny, "--search-rows", "300", "--results", str(tmp_path / "run")]) == 0
    study = tmp_path / "study.toml"
    study.write_text(f'[grid]\nresults = "{tmp_path / "study"}"\nmethods = ["random"]\nseeds = 1\nk = [4]\n'
                     "epochs = 1\nembed_dim = 4\nsearch_rows = 300\n[datasets.synthetic]\nrows = 2000\n")
    assert main(["study", str(study)]) == 0
    for folder in (tmp_path / "run", tmp_path / "study"):
        (record,) = iter_records(Path(folder))
        assert record["search_rows"] == 300 and record["search_train_rows"] == 300


def test_the_committed_study_run_ids_are_unchanged(tiny_synthetic):
    """Without --search-rows a run's identity is what it was: `study` still resumes the committed records."""
    study = Path(__file__).resolve().parents[1] / "results" / "study"
    committed = [json.loads(path.read_text()) for path in sorted(study.glob("*.json"))]
    picked = [r for r in committed if r["dataset"] == "synthetic" and r["selector"] in ("lasso", "none")]
    if not picked:
        pytest.skip("no committed synthetic lasso/none records")
    train_config = load_study(study.parents[1] / "configs" / "study.toml").train_config  # torch's dropout, pinned
    for record in picked:
        data = replace(tiny_synthetic, fingerprint=record["data_fingerprint"])
        config = ExperimentConfig(dataset="synthetic", n_rows=20_000, method_params={}, train_config=train_config)
        rows = task_rows(Task(record["selector"], record["seed"], (record["k"],)), config, data)
        assert record["run_id"] in {row.run_id for row in rows}, record["run_id"]
