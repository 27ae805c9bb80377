"""The committed study: ``report`` on ``results/study`` reproduces the committed tables exactly."""

from __future__ import annotations

from pathlib import Path

import pytest

from fmpbench.report import generate_report

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "results" / "study"
FIGURES = ROOT / "paper_figures"


@pytest.fixture(scope="module")
def regenerated(tmp_path_factory):
    out = tmp_path_factory.mktemp("paper_figures")
    generate_report(RESULTS, out, figures=False)
    return out


def test_the_study_has_records():
    assert len(list(RESULTS.glob("*.json"))) > 500


def _tables(folder: Path) -> set[str]:
    """Table files (the README index is written with the figures, not by a tables-only report)."""
    return {p.name for p in folder.iterdir() if p.suffix in (".md", ".tex") and p.name != "README.md"}


@pytest.mark.parametrize("table", sorted(_tables(FIGURES)))
def test_committed_table_is_what_report_writes(regenerated, table):
    assert (regenerated / table).read_text() == (FIGURES / table).read_text()


def test_every_table_report_writes_is_committed(regenerated):
    assert _tables(regenerated) == _tables(FIGURES)


def test_committed_figures_exist_and_are_not_empty():
    figures = [p for p in FIGURES.iterdir() if p.suffix in (".png", ".pdf")]
    assert len(figures) >= 16
    assert all(p.stat().st_size > 1000 for p in figures)
    pngs = {p.stem for p in figures if p.suffix == ".png"}
    assert pngs == {p.stem for p in figures if p.suffix == ".pdf"}
