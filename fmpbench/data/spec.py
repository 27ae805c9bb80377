"""What one built-in dataset is, in one place: :class:`DatasetSpec` (each dataset module defines ``SPEC``).

``fmpbench.data.registry`` collects the specs and derives everything else from them (the list of
datasets, the CLI choices, ``min_count`` defaults, readers, stand-ins), so a new dataset is one module
(reader, label rule, field derivations, stand-in schema, options) plus its card in ``datasets/``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from fmpbench.data.readers import RawReader
from fmpbench.data.synthetic import FieldSpec

#: ``(raw, skip_bad_rows, **options) -> RawReader``: ``raw`` is a file, a folder, or a list of files
ReaderFactory = Callable[..., RawReader]


@dataclass(frozen=True)
class DatasetSpec:
    """A built-in dataset: how to read its raw files and how to stand in for them when they are absent."""

    name: str
    #: builds the reader over the raw files as their owners distribute them
    reader: ReaderFactory
    #: values seen fewer times in train share the OOV id (``prepare --min-count`` overrides it)
    min_count: int
    #: the stand-in's fields (names as the reader produces them, scaled cardinalities, planted roles)
    standin_fields: Callable[[], tuple[FieldSpec, ...]]
    #: the stand-in's click rate: the real data's
    standin_label_rate: float
    #: reader options and their defaults; each enters the fingerprint through ``RawReader.params``
    options: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    #: the dataset's card (source, licence, checksums, schema), relative to the repository root
    card: Path = Path()

    def make_reader(self, raw: str | Path | list, *, skip_bad_rows: bool = False, **options: Any) -> RawReader:
        """The reader over ``raw``; options this dataset does not take are ignored (``prepare`` passes all)."""
        mine = {k: options.get(k, default) for k, default in self.options.items()}
        return self.reader(raw, skip_bad_rows, **mine)
