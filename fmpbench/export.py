"""``fmpbench export``: the run records as one flat table (CSV or parquet), one row per record.

The columns are those of :data:`fmpbench.report.load.COLUMNS` (documented in ``docs/record_schema.md``);
values that are lists or tables in a record (``params``, ``field_names``, ``field_scores``,
``selected_fields``, ``ground_truth``) are JSON text, so both formats hold the same values.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from fmpbench.results import load_results

FORMATS = ("csv", "parquet")
#: columns whose cells are lists or dicts, written as JSON text
NESTED = ("params", "field_names", "field_scores", "selected_fields", "ground_truth")


def flat_table(results_dir: Path) -> pd.DataFrame:
    """Every record of ``results_dir`` as one row, nested values as JSON text."""
    runs = load_results(results_dir)
    for column in NESTED:
        runs[column] = [json.dumps(value, sort_keys=True, default=str) for value in runs[column]]
    return runs


def export_results(results_dir: Path, out: Path, fmt: str) -> int:
    """Write the table to ``out`` as ``fmt`` (``FORMATS``); returns the number of rows."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format '{fmt}'; choose from: {', '.join(FORMATS)}")
    table = flat_table(results_dir)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    if fmt == "csv":
        table.to_csv(out, index=False)
    else:
        table.to_parquet(out, index=False)
    return len(table)
