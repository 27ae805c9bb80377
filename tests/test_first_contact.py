"""What a new user meets first: the README's plug-in package, ``help(Selector)``, ``--help``."""

from __future__ import annotations

import pydoc
import re
from pathlib import Path

import pytest

from fmpbench.cli import main
from fmpbench.data import DATASETS, DEFAULT_MIN_COUNT, REAL_DATASETS
from fmpbench.grid import EXECUTORS
from fmpbench.models import BACKBONES
from fmpbench.selectors import Selector
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
