"""Readers for the four raw formats, yielding labelled batches of per-field tokens.

A reader turns raw rows into ``Batch``es: a float32 label vector and, per field, either a pyarrow
string array or an int64 numpy array of *tokens* (values before vocabulary encoding). The streaming
preparer (``preprocess.py``) counts and encodes the tokens; readers only parse and validate.

Criteo and Avazu (tens of millions of rows) are parsed by pyarrow's multi-threaded CSV reader. When
the fast path meets a malformed row and the user did not ask to skip bad rows, the file is rescanned
line by line in Python up to the first bad line, so the error names the exact line (pyarrow does not
track line numbers). MovieLens and Amazon are small enough for a plain Python parser.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import gzip
import hashlib
import io
import json
import math
import re
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv

from fmpbench.data.errors import DataError
from fmpbench.data.rawio import (
    arrow_stream,
    check_file,
    first_line,
    gzip_error,
    is_gzip,
    iter_lines,
)

Column = pa.Array | pa.ChunkedArray | np.ndarray

# Integer tokens: raw small values keep their value; log buckets and "missing" live in disjoint
# ranges, so bucket 1 (v = 3) never collides with the raw value 1.
MISSING_CODE = np.iinfo(np.int64).min
BUCKET_OFFSET = 1 << 60

_INT_RE = re.compile(r"-?[0-9]+\Z")
_INT64_MAX = (1 << 63) - 1


@dataclass
class Batch:
    """Rows of one chunk: labels and per-field tokens (same length)."""

    labels: np.ndarray
    columns: dict[str, Column]

    def __len__(self) -> int:
        return int(self.labels.shape[0])


@dataclass
class SkipLog:
    """Bad rows skipped under ``skip_bad_rows=True``: a count and the first few reasons."""

    count: int = 0
    examples: list[str] = field(default_factory=list)

    def add(self, reason: str, n: int = 1) -> None:
        self.count += n
        if len(self.examples) < 5:
            self.examples.append(reason)


def bucket_int_codes(values: np.ndarray, missing: np.ndarray) -> np.ndarray:
    """Criteo's integer transform: ``v > 2 -> floor(ln(v)^2)`` (as a bucket token), else ``v``."""
    v = values.astype(np.int64, copy=False)
    # Computed for every value and selected after: cheaper than gathering and scattering the big ones.
    buckets = BUCKET_OFFSET + np.floor(np.log(np.maximum(v, 3).astype(np.float64)) ** 2).astype(np.int64)
    out = np.where(v > 2, buckets, v)
    out[missing] = MISSING_CODE
    return out


def int_token_repr(code: int) -> str:
    """Human-readable form of an integer token (for vocab dumps and error messages)."""
    if code == MISSING_CODE:
        return ""
    if code >= BUCKET_OFFSET:
        return f"b{code - BUCKET_OFFSET}"
    return str(code)


# Short-string keys: a string of at most 8 UTF-8 bytes is its bytes, zero-padded, read as a
# big-endian uint64: exact, injective (text has no NUL bytes), ordered like the strings, and 10x
# faster to count and look up than the string itself. Criteo and Avazu values are all <= 8 bytes (8 hex digits or small
# numbers). A longer value gets a 56-bit BLAKE2 hash tagged with a top byte 0xFF, which no packed
# key has (0xFF never occurs in UTF-8).
_LONG_TAG = np.uint64(0xFF << 56)
_LEN_MASK = np.array([((1 << (8 * k)) - 1) << (64 - 8 * k) for k in range(9)], dtype=np.uint64)


def _long_key(text: str) -> int:
    h = int.from_bytes(hashlib.blake2b(text.encode(), digest_size=7).digest(), "little")
    return h | (0xFF << 56)


def key_repr(key: int) -> str:
    """The string a packed key stands for (``#<hash>`` for a hashed long value)."""
    if key >> 56 == 0xFF:
        return f"#{key & ((1 << 56) - 1):014x}"
    return key.to_bytes(8, "big").rstrip(b"\0").decode("utf-8", "replace")


def pack_keys(col: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """uint64 keys of a string column (see above); "" is key 0."""
    parts = [_pack_chunk(c) for c in chunks_of(col)]
    if not parts:
        return np.zeros(0, dtype=np.uint64)
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


def _pack_chunk(a: pa.Array) -> np.ndarray:
    n = len(a)
    if n == 0:
        return np.zeros(0, dtype=np.uint64)
    if a.null_count:
        a = pc.fill_null(a, "")
    if pa.types.is_large_string(a.type):
        a = a.cast(pa.string())
    _, obuf, dbuf = a.buffers()
    off = np.frombuffer(obuf, dtype=np.int32, count=a.offset + n + 1)[a.offset :]
    lens = np.diff(off)
    data = np.frombuffer(dbuf, dtype=np.uint8) if dbuf is not None else np.zeros(0, dtype=np.uint8)
    body = data[off[0] : off[-1]]
    keys = np.zeros(n, dtype=np.uint64)
    full = lens == 8
    n_full = int(full.sum())
    if n_full * 8 == body.size:  # only 8-byte and empty values: they lie back to back
        if n_full:
            keys[full] = np.frombuffer(body.tobytes(), dtype=">u8")
        return keys
    padded = np.concatenate([body, np.zeros(8, dtype=np.uint8)])
    starts = (off[:-1] - off[0]).astype(np.int64)
    gathered = padded[starts[:, None] + np.arange(8)]
    keys = gathered.view(">u8").reshape(n).astype(np.uint64) & _LEN_MASK[np.minimum(lens, 8)]
    long = lens > 8
    if long.any():
        keys[long] = np.array([_long_key(t) for t in a.filter(pa.array(long)).to_pylist()], dtype=np.uint64)
    return keys


def _check_int(text: str) -> bool:
    return bool(_INT_RE.match(text)) and abs(int(text)) <= _INT64_MAX


class _NeedRescan(Exception):
    """Raised by a fast path when it met a bad row; the slow path finds and names the line."""


class _DecodableLines(io.RawIOBase):
    """A raw text file (gzip or plain) without its lines that are not valid UTF-8, each logged as skipped.

    The slow way to read a file, used only after the fast parser met undecodable bytes under
    ``skip_bad_rows``.
    """

    def __init__(self, path: Path, skips: SkipLog) -> None:
        super().__init__()
        self._file = gzip.open(path, "rb") if is_gzip(path) else open(path, "rb")  # noqa: SIM115 - closed in close()
        self._lines = enumerate(self._file, 1)
        self._skips = skips
        self._pending = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, out: bytearray | memoryview) -> int:
        while not self._pending:
            try:
                i, line = next(self._lines)
            except StopIteration:
                return 0
            try:
                line.decode("utf-8")
            except UnicodeDecodeError as exc:
                self._skips.add(f"line {i}: not valid UTF-8 text ({exc.reason} at column {exc.start + 1})")
                continue
            self._pending = memoryview(line)
        n = min(len(out), len(self._pending))
        out[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        return n

    def close(self) -> None:
        self._file.close()
        super().close()


class RawReader:
    """Base class: a dataset's raw files and how to turn them into batches."""

    dataset: str = ""
    header_lines: int = 0

    def __init__(self, skip_bad_rows: bool = False) -> None:
        self.skip_bad_rows = skip_bad_rows
        self.skips = SkipLog()
        self.duplicates_dropped = 0

    # Files whose sha256 enter the fingerprint: ``{role: path}``.
    def files(self) -> dict[str, Path]:
        raise NotImplementedError

    @property
    def main_file(self) -> Path:
        return next(iter(self.files().values()))

    def raw_arg(self) -> list[Path]:
        """What to pass as ``raw`` to prepare the same files again (used to rebuild a bad cache)."""
        return [self.main_file]

    def batches(self, chunk_rows: int) -> Iterator[Batch]:
        raise NotImplementedError

    def select_fields(self, names: list[str], nonmissing: dict[str, int], n_train: int) -> list[str]:
        """Final field list, given all token columns seen and their non-missing train counts."""
        return names

    def params(self) -> dict[str, object]:
        """Reader parameters that change the output (they enter the fingerprint)."""
        return {}

    def describe(self) -> dict[str, Any]:
        """What the prepared data's ``info`` should also hold (read once :meth:`batches` is exhausted)."""
        return {}

    def given_bounds(self) -> tuple[int, int]:
        """Rows where valid and test start when the files fix the split (``split="given"``); known once
        :meth:`batches` is exhausted."""
        raise NotImplementedError(f"{self.dataset} files do not fix a split")


# --------------------------------------------------------------------------------------------
# Shared fast path: pyarrow CSV
# --------------------------------------------------------------------------------------------


def _estimate_block_size(path: Path, chunk_rows: int) -> int:
    """Parse blocks of about 2 MB. pyarrow keeps ~20 blocks in flight, so the block size sets the
    reader's memory (measured on Criteo, 2 cores: ~45 MB of arrow memory per MB of block), and each
    block is converted by its own Python calls; 2 MB prepares as fast as 4 MB with 60 MB less peak
    memory, and 1 MB is 10% slower."""
    line = first_line(path)
    per_row = max(len(line.encode()) + 1, 16)
    return int(min(max(chunk_rows * per_row, 1 << 16), 2 << 20))


def to_numpy(x: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """numpy view/copy of a (chunked) arrow array without nulls."""
    if isinstance(x, pa.ChunkedArray):
        if x.num_chunks == 1:
            return x.chunk(0).to_numpy(zero_copy_only=False)
        return x.to_numpy()
    return x.to_numpy(zero_copy_only=False)


def chunks_of(x: pa.Array | pa.ChunkedArray) -> list[pa.Array]:
    return list(x.chunks) if isinstance(x, pa.ChunkedArray) else [x]


def _arrow_record_batches(
    path: Path,
    *,
    names: list[str],
    delimiter: str,
    skip_rows: int,
    chunk_rows: int,
    skips: SkipLog | None,
    what: str,
    decodable_only: bool = False,
) -> Iterator[pa.RecordBatch]:
    """Parse blocks of all-string columns; malformed column counts are skipped or abort.

    ``decodable_only`` reads through :class:`_DecodableLines` (needs ``skips``).
    """

    def handler(row: pcsv.InvalidRow) -> str:
        if skips is None:
            return "error"
        skips.add(f"expected {row.expected_columns} columns, got {row.actual_columns}")
        return "skip"

    read_options = pcsv.ReadOptions(
        column_names=names,
        skip_rows=skip_rows,
        block_size=_estimate_block_size(path, chunk_rows),
        use_threads=True,
    )
    parse_options = pcsv.ParseOptions(
        delimiter=delimiter,
        quote_char=False,
        double_quote=False,
        escape_char=False,
        newlines_in_values=False,
        ignore_empty_lines=True,
        invalid_row_handler=handler,
    )
    convert_options = pcsv.ConvertOptions(
        column_types={n: pa.string() for n in names},
        strings_can_be_null=False,
        quoted_strings_can_be_null=False,
    )
    try:
        opened = io.BufferedReader(_DecodableLines(path, skips), 1 << 20) if decodable_only and skips else None
        with opened or arrow_stream(path) as stream, _quiet_undecodable_rows():
            reader = pcsv.open_csv(
                stream,
                read_options=read_options,
                parse_options=parse_options,
                convert_options=convert_options,
            )
            for rb in reader:
                if rb.num_rows:
                    yield rb
    except pa.ArrowInvalid as exc:
        if "CSV parse error" in str(exc) or "Expected" in str(exc) or "invalid UTF8" in str(exc):
            raise _NeedRescan(str(exc)) from exc
        if "Empty CSV file" in str(exc):
            return
        raise DataError(f"{what} {path}: {str(exc).splitlines()[0]}") from exc
    except OSError as exc:
        raise gzip_error(path, exc) from exc


@contextlib.contextmanager
def _quiet_undecodable_rows() -> Iterator[None]:
    """pyarrow decodes a malformed row to show it to the invalid-row handler, and reports a failure to
    decode as "Exception ignored" before it fails the parse; the decodable-only reading then skips it."""
    previous = sys.unraisablehook

    def hook(info: Any) -> None:
        if not isinstance(info.exc_value, UnicodeDecodeError):
            previous(info)

    sys.unraisablehook = hook
    try:
        yield
    finally:
        sys.unraisablehook = previous


def _labels01(col: pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """``(labels float32, ok mask)`` for a '0'/'1' string column."""
    one = to_numpy(pc.equal(col, "1"))
    zero = to_numpy(pc.equal(col, "0"))
    return one.astype(np.float32), one | zero


def _int_codes(col: pa.Array | pa.ChunkedArray) -> np.ndarray | None:
    """Bucketed int64 tokens of a string column of integers; ``None`` when a value is not one."""
    parts = [_int_codes_1(a) for a in chunks_of(col)]
    if any(p is None for p in parts):
        return None
    return parts[0] if len(parts) == 1 else np.concatenate(parts)  # type: ignore[arg-type]


def _int_codes_1(a: pa.Array) -> np.ndarray | None:
    if pa.types.is_large_string(a.type):
        a = a.cast(pa.string())
    n = len(a)
    _, obuf, dbuf = a.buffers()
    off = np.frombuffer(obuf, dtype=np.int32, count=a.offset + n + 1)[a.offset :]
    missing = off[1:] == off[:-1]
    if dbuf is None or missing.all():
        return bucket_int_codes(np.zeros(n, dtype=np.int64), missing)
    # The same strings, with the empty ones marked null (a validity bitmap, no copy), cast in one call.
    present_bits = ~missing if a.offset == 0 else np.concatenate([np.ones(a.offset, dtype=bool), ~missing])
    valid = pa.py_buffer(np.packbits(present_bits, bitorder="little"))
    present = pa.Array.from_buffers(pa.string(), n, [valid, obuf, dbuf], offset=a.offset)
    try:
        ints = pc.cast(present, pa.int64())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    # The values under nulls are unspecified, and overwritten with the missing token by the bucketing.
    values = np.frombuffer(ints.buffers()[1], dtype=np.int64, count=ints.offset + n)[ints.offset :]
    return bucket_int_codes(values, missing)


def _int_ok_mask(col: pa.Array | pa.ChunkedArray) -> np.ndarray:
    return to_numpy(pc.or_(pc.equal(col, ""), pc.match_substring_regex(col, r"^-?[0-9]{1,18}$")))


# --------------------------------------------------------------------------------------------
# Criteo
# --------------------------------------------------------------------------------------------

CRITEO_INT_FIELDS = [f"I{i}" for i in range(1, 14)]
CRITEO_CAT_FIELDS = [f"C{i}" for i in range(1, 27)]
CRITEO_FIELDS = CRITEO_INT_FIELDS + CRITEO_CAT_FIELDS
_CRITEO_COLS = ["label", *CRITEO_FIELDS]


class CriteoReader(RawReader):
    """Kaggle Display Advertising Challenge ``train.txt``: 40 tab-separated columns, no header.

    Fields: I1..I13 (integer counts, bucketed: ``v > 2 -> floor(ln(v)^2)``, else ``v``; missing is
    its own token) and C1..C26 (hashed categoricals, opaque tokens; empty is its own token).
    """

    dataset = "criteo"

    def __init__(self, path: Path, skip_bad_rows: bool = False) -> None:
        super().__init__(skip_bad_rows)
        self.path = check_file(path, "criteo")

    def files(self) -> dict[str, Path]:
        return {"train": self.path}

    def _where(self, line: int) -> str:
        return f"criteo {self.path.name} line {line}"

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
            if text and not _check_int(text):
                return f"{name} is not an integer: {text!r}"
        return None

    def _convert(self, rb: pa.Table) -> Batch:
        labels, ok = _labels01(rb.column(0))
        if not ok.all():
            raise _NeedRescan("label")
        cols: dict[str, Column] = {}
        for j, name in enumerate(CRITEO_INT_FIELDS, 1):
            codes = _int_codes(rb.column(j))
            if codes is None:
                raise _NeedRescan(name)
            cols[name] = codes
        for j, name in enumerate(CRITEO_CAT_FIELDS, 14):
            cols[name] = pack_keys(rb.column(j))
        return Batch(labels, cols)

    def _row_ok(self, rb: pa.Table) -> np.ndarray:
        ok = _labels01(rb.column(0))[1]
        for j in range(1, 14):
            ok &= _int_ok_mask(rb.column(j))
        return ok

    def batches(self, chunk_rows: int) -> Iterator[Batch]:
        skips = self.skips if self.skip_bad_rows else None
        yield from _fast_batches(self, chunk_rows, names=_CRITEO_COLS, delimiter="\t", skip_rows=0, skips=skips)


def _fast_batches(
    reader: CriteoReader | AvazuReader,
    chunk_rows: int,
    *,
    names: list[str],
    delimiter: str,
    skip_rows: int,
    skips: SkipLog | None,
) -> Iterator[Batch]:
    """Batches of at least ``chunk_rows`` rows (the last may be smaller).

    Undecodable bytes stop pyarrow's parser (its invalid-row handler cannot even show such a row);
    under ``skip_bad_rows`` the file is then read again without its undecodable lines (the skip log
    restarts, as every row is seen again), and batches continue after the rows already produced,
    which the second reading produces identically.
    """

    def converted(decodable_only: bool) -> Iterator[Batch]:
        """Each parse block is turned into tokens at once, so the strings of only a block or two are
        alive, never of a whole chunk."""
        pending: list[Batch] = []
        pending_rows = 0
        for rb in _arrow_record_batches(
            reader.path,
            names=names,
            delimiter=delimiter,
            skip_rows=skip_rows,
            chunk_rows=chunk_rows,
            skips=skips,
            what=reader.dataset,
            decodable_only=decodable_only,
        ):
            try:
                batch = reader._convert(rb)
            except _NeedRescan:
                if skips is None:
                    raise
                ok = reader._row_ok(rb)
                bad = int((~ok).sum())
                if bad:
                    skips.add("label or integer field not parseable", bad)
                rb = rb.filter(pa.array(ok))
                if rb.num_rows == 0:
                    continue
                batch = reader._convert(rb)
            del rb
            pending.append(batch)
            pending_rows += len(batch)
            if pending_rows >= chunk_rows:
                yield concat_batches(pending)
                pending, pending_rows = [], 0
        if pending:
            yield concat_batches(pending)

    n = 0
    try:
        try:
            for batch in converted(decodable_only=False):
                n += len(batch)
                yield batch
        except _NeedRescan:  # under skip_bad_rows only the parser raises it: undecodable bytes
            if skips is None:
                raise
            skips.count, skips.examples = 0, []
            produced, n = n, 0
            for batch in converted(decodable_only=True):
                if n + len(batch) > produced:
                    yield _rows_from(batch, max(produced - n, 0))
                n += len(batch)
    except _NeedRescan:
        raise _first_bad_line(reader, skip_rows) from None
    if n == 0:
        if reader.skips.count:
            raise DataError(f"{reader.dataset} {reader.path}: no valid rows ({reader.skips.count} bad rows skipped)")
        raise DataError(f"{reader.dataset} {reader.path}: no data rows")


def _rows_from(batch: Batch, start: int) -> Batch:
    if not start:
        return batch
    return Batch(batch.labels[start:], {name: col[start:] for name, col in batch.columns.items()})


def concat_batches(parts: list[Batch]) -> Batch:
    """One batch of ``parts`` with numpy columns, emptying ``parts`` field by field so that only one
    field is ever held twice."""
    if len(parts) == 1:
        return parts.pop()
    labels = np.concatenate([p.labels for p in parts])
    cols: dict[str, Column] = {}
    for name in list(parts[0].columns):
        cols[name] = np.concatenate([p.columns.pop(name) for p in parts])
    parts.clear()
    return Batch(labels, cols)


def _first_bad_line(reader: CriteoReader | AvazuReader, skip_rows: int) -> DataError:
    """Slow path: scan line by line and describe the first malformed line."""
    for i, line in iter_lines(reader.path, "utf-8"):
        if i <= skip_rows or not line:
            continue
        msg = reader.line_error(line)
        if msg is not None:
            return DataError(f"{reader._where(i)}: {msg}")
    return DataError(f"{reader.dataset} {reader.path}: malformed content (could not locate the line)")


# --------------------------------------------------------------------------------------------
# Avazu
# --------------------------------------------------------------------------------------------

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


class AvazuReader(RawReader):
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

    def files(self) -> dict[str, Path]:
        return {"train": self.path}

    def _where(self, line: int) -> str:
        return f"avazu {self.path.name} line {line}"

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
        labels, ok = _labels01(rb.column(1))
        hod, wd, hok = self._hour_codes(rb.column(2))
        if not (ok.all() and hok.all()):
            raise _NeedRescan("label/hour")
        cols: dict[str, Column] = {"hour_of_day": hod, "weekday": wd}
        for j, name in enumerate(AVAZU_COLUMNS[3:], 3):
            cols[name] = pack_keys(rb.column(j))
        return Batch(labels, cols)

    def _row_ok(self, rb: pa.Table) -> np.ndarray:
        return _labels01(rb.column(1))[1] & self._hour_codes(rb.column(2))[2]

    def batches(self, chunk_rows: int) -> Iterator[Batch]:
        self._check_header()
        skips = self.skips if self.skip_bad_rows else None
        yield from _fast_batches(self, chunk_rows, names=AVAZU_COLUMNS, delimiter=",", skip_rows=1, skips=skips)


# --------------------------------------------------------------------------------------------
# MovieLens-1M
# --------------------------------------------------------------------------------------------

MOVIELENS_FIELDS = [
    "user_id",
    "movie_id",
    "gender",
    "age",
    "occupation",
    "zip",
    "genres",
    "year",
    "hour",
    "weekday",
]
_YEAR_RE = re.compile(r"\((\d{4})\)\s*$")
#: MovieLens ids, ratings and timestamps: ASCII digits that fit int64 (``str.isdigit`` also accepts
#: '²' or '１', which ``int`` then rejects or the int64 arrays overflow on)
_COUNT_RE = re.compile(r"[0-9]{1,18}\Z")


def _find_beside(folder: Path, stem: str) -> Path | None:
    for cand in (folder / f"{stem}.dat", folder / f"{stem}.dat.gz"):
        if cand.is_file():
            return cand
    return None


def resolve_movielens(raw: Path) -> tuple[Path, Path, Path]:
    """``(ratings, users, movies)`` from a folder or from the ratings file itself."""
    raw = Path(raw).expanduser()
    if raw.is_dir():
        folder = raw
        ratings = _find_beside(folder, "ratings")
        if ratings is None:
            cands = sorted(p for p in folder.iterdir() if re.fullmatch(r"ratings.*\.dat(\.gz)?", p.name))
            if not cands:
                raise DataError(f"movielens {raw}: no ratings.dat (or ratings*.dat[.gz]) in this folder")
            ratings = cands[0]
    else:
        ratings = check_file(raw, "movielens ratings")
        folder = ratings.parent
    users = _find_beside(folder, "users")
    movies = _find_beside(folder, "movies")
    for what, p in (("users.dat", users), ("movies.dat", movies)):
        if p is None:
            raise DataError(f"movielens {folder}: {what} not found beside the ratings file")
    assert users is not None and movies is not None
    return (
        check_file(ratings, "movielens ratings"),
        check_file(users, "movielens users"),
        check_file(movies, "movielens movies"),
    )


class MovieLensReader(RawReader):
    """MovieLens-1M ``ratings.dat`` joined with ``users.dat`` and ``movies.dat`` (``::``, Latin-1).

    Label ``rating > 3``. ``genres`` is the full pipe-joined genre string as one categorical value
    (the one-id-per-field contract has no multi-hot); ``year`` comes from the title's ``(YYYY)``;
    ``hour`` and ``weekday`` (Mon=0) are from the timestamp in UTC.
    """

    dataset = "movielens"

    def __init__(self, raw: Path, skip_bad_rows: bool = False) -> None:
        super().__init__(skip_bad_rows)
        self.ratings, self.users_path, self.movies_path = resolve_movielens(raw)
        self.path = self.ratings

    def files(self) -> dict[str, Path]:
        return {"ratings": self.ratings, "users": self.users_path, "movies": self.movies_path}

    def _table(self, path: Path, n_cols: int, what: str) -> dict[int, list[str]]:
        out: dict[int, list[str]] = {}
        for i, line in iter_lines(path, "latin-1"):
            if not line:
                continue
            parts = line.split("::")
            if len(parts) != n_cols:
                raise DataError(
                    f"movielens {path.name} line {i}: expected {n_cols} '::'-separated columns, got {len(parts)}"
                )
            if not _COUNT_RE.match(parts[0]):
                raise DataError(f"movielens {path.name} line {i}: {what} is not an integer: {parts[0]!r}")
            out[int(parts[0])] = parts[1:]
        if not out:
            raise DataError(f"movielens {path}: no data rows")
        return out

    def _lookup(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Sorted user ids with their attributes, and the same for movies (ids may be sparse and large)."""
        users = self._table(self.users_path, 5, "UserID")
        movies = self._table(self.movies_path, 3, "MovieID")
        u_ids = np.array(sorted(users), dtype=np.int64)
        u_attr = np.empty((len(users), 4), dtype=object)
        for k, uid in enumerate(u_ids.tolist()):
            u_attr[k] = users[uid]
        m_ids = np.array(sorted(movies), dtype=np.int64)
        m_attr = np.empty((len(movies), 2), dtype=object)
        for k, mid in enumerate(m_ids.tolist()):
            title, genres = movies[mid]
            year = _YEAR_RE.search(title)
            m_attr[k] = (genres, year.group(1) if year else "")
        return u_ids, u_attr, m_ids, m_attr

    def _rating_error(self, parts: list[str], u_ids: np.ndarray, m_ids: np.ndarray) -> str | None:
        if len(parts) != 4:
            return f"expected 4 '::'-separated columns, got {len(parts)}"
        for name, text in zip(("UserID", "MovieID", "Rating", "Timestamp"), parts, strict=True):
            if not _COUNT_RE.match(text):
                return f"{name} is not an integer: {text!r}"
        uid, mid, r = int(parts[0]), int(parts[1]), int(parts[2])
        if not 1 <= r <= 5:
            return f"Rating out of range 1-5: {r}"
        if not _contains(u_ids, uid):
            return f"UserID {uid} not in {self.users_path.name}"
        if not _contains(m_ids, mid):
            return f"MovieID {mid} not in {self.movies_path.name}"
        return None

    def batches(self, chunk_rows: int) -> Iterator[Batch]:
        u_ids, u_attr, m_ids, m_attr = self._lookup()
        rows: list[tuple[int, int, int, int]] = []
        total = 0
        for i, line in iter_lines(self.ratings, "latin-1"):
            if not line:
                continue
            parts = line.split("::")
            err = self._rating_error(parts, u_ids, m_ids)
            if err is not None:
                if self.skip_bad_rows:
                    self.skips.add(f"line {i}: {err}")
                    continue
                raise DataError(f"movielens {self.ratings.name} line {i}: {err}")
            rows.append((int(parts[0]), int(parts[1]), int(parts[2]), int(parts[3])))
            if len(rows) >= chunk_rows:
                total += len(rows)
                yield self._batch(rows, u_ids, u_attr, m_ids, m_attr)
                rows = []
        if rows:
            total += len(rows)
            yield self._batch(rows, u_ids, u_attr, m_ids, m_attr)
        if total == 0:
            raise DataError(f"movielens {self.ratings}: no data rows")

    @staticmethod
    def _batch(
        rows: list[tuple[int, int, int, int]],
        u_ids: np.ndarray,
        u_attr: np.ndarray,
        m_ids: np.ndarray,
        m_attr: np.ndarray,
    ) -> Batch:
        a = np.asarray(rows, dtype=np.int64)
        uid, mid, rating, ts = a[:, 0], a[:, 1], a[:, 2], a[:, 3]
        ua = u_attr[np.searchsorted(u_ids, uid)]
        ma = m_attr[np.searchsorted(m_ids, mid)]
        cols: dict[str, Column] = {
            "user_id": uid,
            "movie_id": mid,
            "gender": pa.array(ua[:, 0], pa.string()),
            "age": pa.array(ua[:, 1], pa.string()),
            "occupation": pa.array(ua[:, 2], pa.string()),
            "zip": pa.array(ua[:, 3], pa.string()),
            "genres": pa.array(ma[:, 0], pa.string()),
            "year": pa.array(ma[:, 1], pa.string()),
            "hour": (ts // 3600) % 24,
            "weekday": (ts // 86400 + 3) % 7,  # 1970-01-01 was a Thursday; Mon=0
        }
        return Batch((rating > 3).astype(np.float32), cols)


def _contains(sorted_ids: np.ndarray, value: int) -> bool:
    at = int(np.searchsorted(sorted_ids, value))
    return at < sorted_ids.size and int(sorted_ids[at]) == value


# --------------------------------------------------------------------------------------------
# Amazon 2018
# --------------------------------------------------------------------------------------------

AMAZON_BASE_FIELDS = ["user", "item", "verified", "vote", "year", "month", "weekday"]
AMAZON_META_FIELDS = ["brand", "main_cat", "price"]
_STYLE_NAME_RE = re.compile(r"[^0-9A-Za-z]+")


def style_field_name(key: str) -> str:
    """``'Size Name:' -> 'style_Size_Name'``."""
    return "style_" + (_STYLE_NAME_RE.sub("_", key).strip("_") or "unnamed")


def log_bucket(v: int) -> str:
    """Same transform as Criteo's integers, used for vote counts: ``v > 2 -> b<floor(ln(v)^2)>``."""
    return f"b{math.floor(math.log(v) ** 2)}" if v > 2 else str(v)


def price_bucket(text: object) -> str:
    """``'$12.99'`` (or a range ``'$5 - $9'``, first value) -> half-octave bucket; else missing."""
    if not isinstance(text, str):
        return ""
    m = re.search(r"\$\s*([0-9][0-9,]*(?:\.[0-9]+)?)", text)
    if not m:
        return ""
    p = float(m.group(1).replace(",", ""))
    return f"p{math.floor(2 * math.log2(1 + p))}"


def resolve_amazon(raw: Path | list[Path]) -> tuple[Path, Path | None]:
    """``(reviews, meta or None)`` from a file, a folder, or a list ``[reviews, meta]``."""
    paths: list[Path]
    if isinstance(raw, list | tuple):
        paths = [Path(p).expanduser() for p in raw]
    else:
        p = Path(raw).expanduser()
        if p.is_dir():
            paths = sorted(q for q in p.iterdir() if re.search(r"\.json(\.gz)?$", q.name))
            if not paths:
                raise DataError(f"amazon {p}: no *.json[.gz] files in this folder")
        else:
            paths = [p]
    meta = [p for p in paths if p.name.startswith("meta_")]
    reviews = [p for p in paths if not p.name.startswith("meta_")]
    if len(reviews) != 1 or len(meta) > 1:
        raise DataError(
            "amazon: expected one reviews file (<Category>_5.json.gz) and at most one "
            f"meta_<Category>.json.gz, got {[str(p) for p in paths]}"
        )
    return check_file(reviews[0], "amazon reviews"), (check_file(meta[0], "amazon meta") if meta else None)


_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _as_int(x: object) -> int | None:
    if isinstance(x, bool):
        return None
    if isinstance(x, int):
        return x
    if isinstance(x, float) and x.is_integer():
        return int(x)
    if isinstance(x, str) and re.fullmatch(r"[0-9][0-9,]*", x.strip()):
        return int(x.strip().replace(",", ""))
    return None


class AmazonReader(RawReader):
    """Amazon Reviews 2018 5-core JSON lines, optionally joined with the category's meta file.

    Label ``overall >= 4``. Fields: user (reviewerID), item (asin), verified, vote (comma-grouped
    count, missing = 0, log-bucketed), one ``style_<Key>`` field per style key present in at least
    ``style_min_share`` of train rows (others dropped; rows without the key get the missing token),
    review year, month and weekday (UTC); with meta: brand, main_cat, price (half-octave bucket).

    ``drop_duplicates`` (default) keeps one copy of a review that the 2018 files repeat under several
    product variants (same reviewer, time, summary and text): AMAZON_FASHION_5 holds 3,176 lines but
    448 distinct reviews, and a random split of the copies puts the same review in train and test,
    where ``user`` alone then predicts the label perfectly (test AUC 1.0). The count dropped is
    recorded as ``duplicates_dropped``.
    """

    dataset = "amazon"

    def __init__(
        self,
        raw: Path | list[Path],
        skip_bad_rows: bool = False,
        style_min_share: float = 0.05,
        drop_duplicates: bool = True,
    ) -> None:
        super().__init__(skip_bad_rows)
        self.path, self.meta_path = resolve_amazon(raw)
        self.style_min_share = style_min_share
        self.drop_duplicates = drop_duplicates
        self._meta: dict[str, tuple[str, str, str]] | None = None

    def files(self) -> dict[str, Path]:
        out = {"reviews": self.path}
        if self.meta_path is not None:
            out["meta"] = self.meta_path
        return out

    def params(self) -> dict[str, object]:
        return {"style_min_share": self.style_min_share, "drop_duplicates": self.drop_duplicates}

    def raw_arg(self) -> list[Path]:
        return list(self.files().values())

    def select_fields(self, names: list[str], nonmissing: dict[str, int], n_train: int) -> list[str]:
        styles = sorted(
            n
            for n in names
            if n.startswith("style_") and nonmissing.get(n, 0) >= self.style_min_share * max(n_train, 1)
        )
        meta = AMAZON_META_FIELDS if self.meta_path is not None else []
        return ["user", "item", "verified", "vote", *styles, "year", "month", "weekday", *meta]

    def _load_meta(self) -> dict[str, tuple[str, str, str]]:
        assert self.meta_path is not None
        out: dict[str, tuple[str, str, str]] = {}
        for i, line in iter_lines(self.meta_path, "utf-8"):
            if not line.strip():
                continue
            try:
                d = json.loads(line)
            except json.JSONDecodeError as exc:
                if self.skip_bad_rows:
                    self.skips.add(f"meta line {i}: bad JSON")
                    continue
                raise DataError(
                    f"amazon {self.meta_path.name} line {i}: bad JSON ({exc.msg} at column {exc.colno})"
                ) from exc
            asin = d.get("asin") if isinstance(d, dict) else None
            if not isinstance(asin, str):
                if self.skip_bad_rows:
                    self.skips.add(f"meta line {i}: no asin")
                    continue
                raise DataError(f"amazon {self.meta_path.name} line {i}: record has no 'asin'")
            if asin not in out:
                brand = d.get("brand")
                cat = d.get("main_cat")
                out[asin] = (
                    brand.strip() if isinstance(brand, str) else "",
                    cat.strip() if isinstance(cat, str) else "",
                    price_bucket(d.get("price")),
                )
        return out

    def _parse(self, line: str) -> tuple[float, dict[str, str], bytes] | str:
        """``(label, tokens, review key)`` or an error message."""
        try:
            d = json.loads(line)
        except json.JSONDecodeError as exc:
            return f"bad JSON ({exc.msg}, column {exc.colno})"
        if not isinstance(d, dict):
            return "record is not a JSON object"
        overall = d.get("overall")
        if isinstance(overall, bool) or not isinstance(overall, int | float) or not 1 <= overall <= 5:
            return f"'overall' must be a rating 1-5, got {overall!r}"
        user, item = d.get("reviewerID"), d.get("asin")
        if not isinstance(user, str) or not isinstance(item, str):
            return "'reviewerID' and 'asin' must be strings"
        t = _as_int(d.get("unixReviewTime"))
        if t is None:
            return f"'unixReviewTime' is not an integer: {d.get('unixReviewTime')!r}"
        vote_raw = d.get("vote")
        vote = 0 if vote_raw is None else _as_int(vote_raw)
        if vote is None:
            return f"'vote' is not a count: {vote_raw!r}"
        verified = d.get("verified")
        try:
            day = dt.datetime.fromtimestamp(t, dt.timezone.utc)
        except (OverflowError, OSError, ValueError):
            return f"'unixReviewTime' is not a time: {t}"
        tok = {
            "user": user,
            "item": item,
            "verified": "" if verified is None else str(verified).lower(),
            "vote": log_bucket(vote),
            "year": str(day.year),
            "month": str(day.month),
            "weekday": str(day.weekday()),
        }
        style = d.get("style")
        if style is not None:
            if not isinstance(style, dict):
                return "'style' is not an object"
            for k, v in style.items():
                tok[style_field_name(str(k))] = str(v).strip()
        if self.meta_path is not None:
            assert self._meta is not None
            brand, cat, price = self._meta.get(item, ("", "", ""))
            tok.update(brand=brand, main_cat=cat, price=price)
        if _SURROGATE_ESCAPE.search(line):  # "\\udc80" decodes to a str that UTF-8 cannot encode
            for name, value in tok.items():
                if not _encodable(value):
                    return f"'{name}' holds a lone UTF-16 surrogate (an invalid \\u escape)"
        review = json.dumps([user, t, d.get("summary"), d.get("reviewText")]).encode()
        return (1.0 if overall >= 4 else 0.0), tok, hashlib.blake2b(review, digest_size=8).digest()

    def batches(self, chunk_rows: int) -> Iterator[Batch]:
        if self.meta_path is not None and self._meta is None:
            self._meta = self._load_meta()
        labels: list[float] = []
        rows: list[dict[str, str]] = []
        seen: set[bytes] = set()  # 8 bytes per distinct review: memory follows reviews, not lines
        total = 0
        for i, line in iter_lines(self.path, "utf-8"):
            if not line.strip():
                continue
            res = self._parse(line)
            if isinstance(res, str):
                if self.skip_bad_rows:
                    self.skips.add(f"line {i}: {res}")
                    continue
                raise DataError(f"amazon {self.path.name} line {i}: {res}")
            if self.drop_duplicates:
                if res[2] in seen:
                    self.duplicates_dropped += 1
                    continue
                seen.add(res[2])
            labels.append(res[0])
            rows.append(res[1])
            if len(rows) >= chunk_rows:
                total += len(rows)
                yield _dict_batch(labels, rows)
                labels, rows = [], []
        if rows:
            total += len(rows)
            yield _dict_batch(labels, rows)
        if total == 0:
            raise DataError(f"amazon {self.path}: no data rows")


def _dict_batch(labels: list[float], rows: list[dict[str, str]]) -> Batch:
    keys: dict[str, None] = {}
    for r in rows:
        keys.update(dict.fromkeys(r))
    cols: dict[str, Column] = {k: pa.array([r.get(k, "") for r in rows], pa.string()) for k in keys}
    return Batch(np.asarray(labels, dtype=np.float32), cols)


READERS: dict[str, Callable[..., RawReader]] = {
    "criteo": CriteoReader,
    "avazu": AvazuReader,
    "movielens": MovieLensReader,
    "amazon": AmazonReader,
}


def resolve_criteo_like(raw: Path, names: tuple[str, ...], dataset: str) -> Path:
    """Accept the file itself or the folder holding it under one of its usual names."""
    raw = Path(raw).expanduser()
    if raw.is_dir():
        for n in names:
            if (raw / n).is_file():
                return raw / n
        raise DataError(f"{dataset} {raw}: none of {', '.join(names)} in this folder")
    return raw


def make_reader(name: str, raw: str | Path | list, *, skip_bad_rows: bool = False, **kw: object) -> RawReader:
    """The reader for dataset ``name`` over ``raw`` (file, folder, or list of files)."""
    if name == "criteo":
        return CriteoReader(resolve_criteo_like(_single(raw, name), ("train.txt", "train.txt.gz"), name), skip_bad_rows)
    if name == "avazu":
        return AvazuReader(
            resolve_criteo_like(_single(raw, name), ("train.csv", "train.gz", "train.csv.gz", "train"), name),
            skip_bad_rows,
        )
    if name == "movielens":
        return MovieLensReader(_single(raw, name), skip_bad_rows)
    if name == "movielens100k":
        from fmpbench.data.movielens100k import MovieLens100KReader  # imports this module

        return MovieLens100KReader(_single(raw, name), skip_bad_rows)
    if name == "amazon":
        share = kw.get("style_min_share", 0.05)
        assert isinstance(share, float | int)
        paths = [Path(p) for p in raw] if isinstance(raw, list | tuple) else Path(raw)
        return AmazonReader(paths, skip_bad_rows, float(share), bool(kw.get("drop_duplicates", True)))
    raise ValueError(f"no raw reader for dataset {name!r}; choose from: {', '.join(READERS)}")


def _single(raw: str | Path | list, name: str) -> Path:
    if isinstance(raw, list | tuple):
        if len(raw) != 1:
            raise DataError(f"{name}: expected one raw file or folder, got {len(raw)}")
        raw = raw[0]
    return Path(raw)
