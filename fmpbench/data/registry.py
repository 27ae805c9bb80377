"""The built-in datasets, derived from their spec modules: add a dataset by adding its module here.

Everything that lists datasets reads it from here (``fmpbench.data.DATASETS``, the CLI's choices and
``--min-count`` defaults, the stand-ins, ``prepare``'s readers); the spec module (``criteo.py``, ...)
holds what the dataset is, and ``datasets/<name>.md`` its card. Tables of your own are not listed
here: they are named when prepared (``fmpbench.data.tabular``) and found in the data directory.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fmpbench.data import amazon, avazu, criteo, movielens, movielens100k
from fmpbench.data.readers import RawReader
from fmpbench.data.spec import DatasetSpec

SPECS: dict[str, DatasetSpec] = {
    m.SPEC.name: m.SPEC for m in (criteo, avazu, movielens, movielens100k, amazon)
}
#: datasets prepared from their owners' raw files
REAL_DATASETS: tuple[str, ...] = tuple(SPECS)
#: every name ``--dataset`` knows without a data directory (``synthetic`` is generated)
DATASETS: tuple[str, ...] = (*REAL_DATASETS, "synthetic")
# Values seen fewer times than this in train map to OOV (0). Criteo follows BARS' criteo_x4 (10);
# the others keep every value seen at least twice (BARS' avazu_x4 uses 2), so a singleton, which
# would get an embedding trained on one row, shares the OOV embedding instead.
DEFAULT_MIN_COUNT: dict[str, int] = {name: spec.min_count for name, spec in SPECS.items()}
#: every real dataset has a stand-in with its schema
STANDIN_NAMES: tuple[str, ...] = REAL_DATASETS


def spec_of(name: str) -> DatasetSpec:
    if name not in SPECS:
        raise ValueError(f"no built-in dataset {name!r}; choose from: {', '.join(SPECS)}")
    return SPECS[name]


def make_reader(name: str, raw: str | Path | list, *, skip_bad_rows: bool = False, **options: Any) -> RawReader:
    """The reader for built-in dataset ``name`` over ``raw`` (file, folder, or list of files)."""
    return spec_of(name).make_reader(raw, skip_bad_rows=skip_bad_rows, **options)
