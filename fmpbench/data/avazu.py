"""Avazu: the Kaggle CTR ``train.csv`` / ``train.gz`` with its header (card: ``datasets/avazu.md``).

Label ``click``; ``id`` dropped; ``hour`` (YYMMDDHH) becomes ``hour_of_day`` and ``weekday``; the other
21 columns are opaque categorical tokens. ``min_count`` 2, as BARS' avazu_x4.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from fmpbench.data.errors import DataError
from fmpbench.data.rawio import check_file, first_line
from fmpbench.data.readers import (
    Batch,
    Column,
    DelimitedReader,
    NeedRescan,
    chunks_of,
    fast_batches,
    labels01,
    pack_keys,
    resolve_criteo_like,
    single_raw,
)
from fmpbench.data.spec import DatasetSpec
from fmpbench.data.synthetic import FieldSpec

AVAZU_COLUMNS = [
    "id",
    "click",
    "hour",
    "C1",
    "banner_pos",
    "site_id",
    "site_domain",
    "site_category",
    "app_id",
    "app_domain",
    "app_category",
    "device_id",
    "device_ip",
    "device_model",
    "device_type",
    "device_conn_type",
    "C14",
    "C15",
    "C16",
    "C17",
    "C18",
    "C19",
    "C20",
    "C21",
]
# ``hour`` (YYMMDDHH) is replaced, in place, by hour_of_day and weekday: 22 raw feature fields
# (id and click are not features) become 23 model fields.
AVAZU_FIELDS = ["hour_of_day", "weekday", *AVAZU_COLUMNS[3:]]


def parse_avazu_hour(text: str) -> tuple[int, int] | None:
    """``YYMMDDHH -> (hour_of_day, weekday Mon=0)``; ``None`` when malformed."""
    if len(text) != 8 or not text.isdigit():
        return None
    try:
        d = dt.date(2000 + int(text[:2]), int(text[2:4]), int(text[4:6]))
    except ValueError:
        return None
    h = int(text[6:])
    return (h, d.weekday()) if h < 24 else None


class AvazuReader(DelimitedReader):
    """Kaggle Avazu CTR ``train.csv`` / ``train.gz``: comma-separated with the original header.

    ``id`` is dropped (read as a string: it exceeds int64); ``click`` is the label; ``hour`` becomes
    ``hour_of_day`` (0-23) and ``weekday`` (Mon=0); the other 21 columns are opaque tokens.
    """

    dataset = "avazu"
    header_lines = 1

    def __init__(self, path: Path, skip_bad_rows: bool = False) -> None:
        super().__init__(skip_bad_rows)
        self.path = check_file(path, "avazu")
        self._hours: dict[str, tuple[int, int] | None] = {}

    def _check_header(self) -> None:
        head = first_line(self.path)
        if head != ",".join(AVAZU_COLUMNS):
            got = head if len(head) <= 120 else head[:117] + "..."
            hint = " (Kaggle test.csv has no click column; use train.csv)" if head.startswith("id,hour") else ""
            raise DataError(
                f"{self._where(1)}: unexpected header {got!r}; "
                f"expected the Kaggle train.csv header 'id,click,hour,...'{hint}"
            )

    def line_error(self, line: str) -> str | None:
        parts = line.split(",")
        if len(parts) != 24:
            return f"expected 24 comma-separated columns, got {len(parts)}"
        if parts[1] not in ("0", "1"):
            return f"click is not 0 or 1: {parts[1]!r}"
        if parse_avazu_hour(parts[2]) is None:
            return f"hour is not a valid YYMMDDHH value: {parts[2]!r}"
        return None

    def _hour_codes(self, col: pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        parts = [self._hour_codes_1(c) for c in chunks_of(col)]
        if len(parts) == 1:
            return parts[0]
        return tuple(np.concatenate(x) for x in zip(*parts))  # type: ignore[return-value]

    def _hour_codes_1(self, col: pa.Array) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        enc = pc.dictionary_encode(col)
        uniq = enc.dictionary.to_pylist()
        hod = np.empty(len(uniq), dtype=np.int64)
        wd = np.empty(len(uniq), dtype=np.int64)
        good = np.ones(len(uniq), dtype=bool)
        for k, u in enumerate(uniq):
            if u not in self._hours:
                self._hours[u] = parse_avazu_hour(u)
            p = self._hours[u]
            if p is None:
                good[k] = False
                hod[k] = wd[k] = 0
            else:
                hod[k], wd[k] = p
        idx = enc.indices.to_numpy(zero_copy_only=False)
        return hod[idx], wd[idx], good[idx]

    def _convert(self, rb: pa.Table) -> Batch:
        labels, ok = labels01(rb.column(1))
        hod, wd, hok = self._hour_codes(rb.column(2))
        if not (ok.all() and hok.all()):
            raise NeedRescan("label/hour")
        cols: dict[str, Column] = {"hour_of_day": hod, "weekday": wd}
        for j, name in enumerate(AVAZU_COLUMNS[3:], 3):
            cols[name] = pack_keys(rb.column(j))
        return Batch(labels, cols)

    def _row_ok(self, rb: pa.Table) -> np.ndarray:
        return labels01(rb.column(1))[1] & self._hour_codes(rb.column(2))[2]

    def batches(self, chunk_rows: int) -> Iterator[Batch]:
        self._check_header()
        skips = self.skips if self.skip_bad_rows else None
        yield from fast_batches(self, chunk_rows, names=AVAZU_COLUMNS, delimiter=",", skip_rows=1, skips=skips)




def make_reader(raw: str | Path | list, skip_bad_rows: bool = False) -> AvazuReader:
    names = ("train.csv", "train.gz", "train.csv.gz", "train")
    return AvazuReader(resolve_criteo_like(single_raw(raw, "avazu"), names, "avazu"), skip_bad_rows)


def standin_fields() -> tuple[FieldSpec, ...]:
    return (
        FieldSpec("hour_of_day", 24, "weak", 0.3),
        FieldSpec("weekday", 7, "noise", 0.2),
        FieldSpec("C1", 7, "weak", 1.5),
        FieldSpec("banner_pos", 7, "strong", 1.5),
        FieldSpec("site_id", 1500, "strong", 1.1),
        FieldSpec("site_domain", 750, "redundant", source="site_id", coarsen=2),
        FieldSpec("site_category", 26, "strong", 1.2),
        FieldSpec("app_id", 2000, "weak", 1.2),
        FieldSpec("app_domain", 500, "redundant", source="app_id", coarsen=4),
        FieldSpec("app_category", 36, "noise", 1.2),
        FieldSpec("device_id", 15000, "high_card_noise", 1.2),
        FieldSpec("device_ip", 20000, "high_card_noise", 1.05),
        FieldSpec("device_model", 2500, "high_card_noise", 1.05),
        FieldSpec("device_type", 5, "noise", 1.5),
        FieldSpec("device_conn_type", 4, "interaction"),
        FieldSpec("C14", 800, "noise", 1.05),
        FieldSpec("C15", 8, "weak", 1.5),
        FieldSpec("C16", 9, "noise", 1.5),
        FieldSpec("C17", 400, "noise", 1.05),
        FieldSpec("C18", 4, "interaction"),
        FieldSpec("C19", 68, "noise", 1.0),
        FieldSpec("C20", 172, "noise", 1.0),
        FieldSpec("C21", 60, "noise", 1.0),
    )


SPEC = DatasetSpec(
    name="avazu",
    reader=make_reader,
    min_count=2,
    standin_fields=standin_fields,
    standin_label_rate=0.17,
    card=Path("datasets/avazu.md"),
)
