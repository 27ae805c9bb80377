"""Criteo: the Kaggle Display Advertising Challenge ``train.txt`` (card: ``datasets/criteo.md``).

Label column 0; I1..I13 integer counts bucketed as ``v > 2 -> floor(ln(v)^2)`` (else ``v``; missing is
its own token); C1..C26 hashed categoricals. ``min_count`` 10, as BARS' criteo_x4.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa

from fmpbench.data.rawio import check_file
from fmpbench.data.readers import (
    Batch,
    Column,
    DelimitedReader,
    NeedRescan,
    check_int,
    fast_batches,
    int_codes,
    int_ok_mask,
    labels01,
    pack_keys,
    resolve_criteo_like,
    single_raw,
)
from fmpbench.data.spec import DatasetSpec
from fmpbench.data.synthetic import FieldSpec

CRITEO_INT_FIELDS = [f"I{i}" for i in range(1, 14)]
CRITEO_CAT_FIELDS = [f"C{i}" for i in range(1, 27)]
CRITEO_FIELDS = CRITEO_INT_FIELDS + CRITEO_CAT_FIELDS
_CRITEO_COLS = ["label", *CRITEO_FIELDS]


class CriteoReader(DelimitedReader):
    """Kaggle Display Advertising Challenge ``train.txt``: 40 tab-separated columns, no header.

    Fields: I1..I13 (integer counts, bucketed: ``v > 2 -> floor(ln(v)^2)``, else ``v``; missing is
    its own token) and C1..C26 (hashed categoricals, opaque tokens; empty is its own token).
    """

    dataset = "criteo"

    def __init__(self, path: Path, skip_bad_rows: bool = False) -> None:
        super().__init__(skip_bad_rows)
        self.path = check_file(path, "criteo")

    def line_error(self, line: str) -> str | None:
        parts = line.split("\t")
        if len(parts) != 40:
            hint = ""
            if len(parts) == 39:
                hint = " (if this is Kaggle's test.txt: it has no labels; use train.txt)"
            elif "," in line and len(line.split(",")) == 40:
                hint = " (this looks comma-separated; fmpbench reads the raw tab-separated train.txt)"
            return f"expected 40 tab-separated columns, got {len(parts)}{hint}"
        if parts[0] not in ("0", "1"):
            return f"label is not 0 or 1: {parts[0]!r}"
        for name, text in zip(CRITEO_INT_FIELDS, parts[1:14], strict=True):
            if text and not check_int(text):
                return f"{name} is not an integer: {text!r}"
        return None

    def _convert(self, rb: pa.Table) -> Batch:
        labels, ok = labels01(rb.column(0))
        if not ok.all():
            raise NeedRescan("label")
        cols: dict[str, Column] = {}
        for j, name in enumerate(CRITEO_INT_FIELDS, 1):
            codes = int_codes(rb.column(j))
            if codes is None:
                raise NeedRescan(name)
            cols[name] = codes
        for j, name in enumerate(CRITEO_CAT_FIELDS, 14):
            cols[name] = pack_keys(rb.column(j))
        return Batch(labels, cols)

    def _row_ok(self, rb: pa.Table) -> np.ndarray:
        ok = labels01(rb.column(0))[1]
        for j in range(1, 14):
            ok &= int_ok_mask(rb.column(j))
        return ok

    def batches(self, chunk_rows: int) -> Iterator[Batch]:
        skips = self.skips if self.skip_bad_rows else None
        yield from fast_batches(self, chunk_rows, names=_CRITEO_COLS, delimiter="\t", skip_rows=0, skips=skips)



def make_reader(raw: str | Path | list, skip_bad_rows: bool = False) -> CriteoReader:
    return CriteoReader(resolve_criteo_like(single_raw(raw, "criteo"), ("train.txt", "train.txt.gz"), "criteo"),
                        skip_bad_rows)


def standin_fields() -> tuple[FieldSpec, ...]:
    # Bucketed integer fields keep their real (small) cardinalities; categorical ones are scaled down
    # from the full Kaggle counts (e.g. C3: 10.1M -> 20k) so a 50k-row stand-in stays quick.
    ints = [50, 100, 60, 40, 200, 100, 80, 50, 100, 5, 40, 40, 60]
    cats = [
        300,
        250,
        20000,
        10000,
        150,
        24,
        2000,
        300,
        3,
        5000,
        1500,
        18000,
        1000,
        27,
        2500,
        15000,
        10,
        1500,
        800,
        4,
        16000,
        18,
        15,
        6000,
        105,
        5000,
    ]
    roles = {
        "I7": "strong",
        "C14": "strong",
        "C17": "strong",
        "I1": "weak",
        "I3": "weak",
        "I11": "weak",
        "C6": "weak",
        "C2": "weak",
        "C20": "interaction",
        "C22": "interaction",
    }
    out = [FieldSpec(f"I{i + 1}", c, roles.get(f"I{i + 1}", "noise"), 1.0) for i, c in enumerate(ints)]
    for i, c in enumerate(cats):
        name = f"C{i + 1}"
        role = roles.get(name, "high_card_noise" if c >= 5000 else "noise")
        out.append(FieldSpec(name, c, role, 1.05 if c >= 1000 else 1.0))
    return tuple(out)


SPEC = DatasetSpec(
    name="criteo",
    reader=make_reader,
    min_count=10,
    standin_fields=standin_fields,
    standin_label_rate=0.25,
    card=Path("datasets/criteo.md"),
)
