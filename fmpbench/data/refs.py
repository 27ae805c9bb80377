"""Naming a dataset exactly (:class:`DataRef`), and drawing another split of it (:func:`with_split_seed`).

A worker process must train on the very data its parent chose, not on whatever a dataset's
``CURRENT`` pointer names when the worker starts (a ``prepare`` in between would silently mix two
datasets in one grid). So executors pass a ``DataRef`` — the fingerprint plus where the prepared
cache lies, or the generator's parameters — and :func:`load_ref` loads exactly that or fails.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fmpbench.data import cache as _cache
from fmpbench.data import reprepare
from fmpbench.data.errors import DataError
from fmpbench.data.prepared import PreparedData
from fmpbench.data.synthetic import regenerate


@dataclass(frozen=True)
class DataRef:
    """Exactly one dataset: real data by cache folder, generated data by its generator parameters."""

    name: str
    fingerprint: str
    data_dir: str | None = None
    generator: tuple[tuple[str, Any], ...] | None = None


def ref_of(data: PreparedData, data_dir: str | Path | None) -> DataRef:
    if data.data_source == "real":
        if data_dir is None:
            raise ValueError(f"{data.name}: real data needs the data directory it was prepared into")
        return DataRef(data.name, data.fingerprint, data_dir=str(data_dir))
    params = data.info["params"]
    return DataRef(data.name, data.fingerprint, generator=tuple(sorted(params.items())))


def load_ref(ref: DataRef) -> PreparedData:
    """The data ``ref`` names, memory-mapped when prepared; a ``DataError`` when it is gone or differs."""
    if ref.generator is not None:
        data = regenerate(dict(ref.generator))
    else:
        assert ref.data_dir is not None
        folder = _cache.dataset_root(ref.data_dir, ref.name) / ref.fingerprint
        if not folder.is_dir():
            raise DataError(f"{ref.name}: prepared data {ref.fingerprint} is no longer in {folder.parent}")
        data = _cache.load_cache(folder, mmap=True)
    if data.fingerprint != ref.fingerprint:
        raise DataError(f"{ref.name}: expected data {ref.fingerprint}, found {data.fingerprint}")
    return data


def with_split_seed(data: PreparedData, split_seed: int, data_dir: str | Path | None = None) -> PreparedData:
    """The same dataset with its random split drawn from ``split_seed`` (vocabularies refitted on that
    split's training rows, so nothing leaks). Real data is prepared again from the raw files it was
    prepared from (cached like any preparation; the dataset's ``CURRENT`` pointer is left as it was);
    generated data is generated again. A sequential split has no seed: the data comes back unchanged.
    """
    params = data.info.get("params") or {}
    if params.get("split", "random") != "random" or data.split_seed == split_seed:
        return data
    if data.data_source != "real":
        return regenerate({**params, "split_seed": split_seed})
    if data_dir is None:
        raise ValueError(f"{data.name}: real data needs the data directory it was prepared into")
    root = _cache.dataset_root(data_dir, data.name)
    try:
        meta = json.loads((root / data.fingerprint / _cache.META).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        folder = root / data.fingerprint
        raise DataError(f"{data.name}: cannot read the preparation record in {folder}: {exc}") from None
    current = _cache.read_current(root)
    try:
        again = reprepare(meta, data_dir, split_seed=split_seed)
        if again is None:
            raise DataError(
                f"{data.name}: the raw files it was prepared from are gone, so the split of seed {split_seed} "
                "cannot be drawn; prepare it again"
            )
        return again
    finally:
        if current is not None:
            _cache.set_current(root, current)
