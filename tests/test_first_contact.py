"""What a new user meets first: the README's plug-in package, ``help(Selector)``, ``--help``."""

from __future__ import annotations

import pydoc
import re
from pathlib import Path

import pytest

from fmpbench.selectors import Selector

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
