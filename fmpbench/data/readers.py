"""What every raw reader shares: the ``Batch`` contract, the ``RawReader`` base and the parsing helpers.

A reader turns raw rows into ``Batch``es: a float32 label vector and, per field, either a pyarrow
string array or an int64 numpy array of *tokens* (values before vocabulary encoding). The streaming
preparer (``preprocess.py``) counts and encodes the tokens; readers only parse and validate. Each
built-in dataset's reader lives in its own module (``criteo.py``, ``avazu.py``, ``movielens.py``,
``movielens100k.py``, ``amazon.py``; your own tables: ``tabular.py``).

Criteo and Avazu (tens of millions of rows) are parsed by pyarrow's multi-threaded CSV reader
(:class:`DelimitedReader`, :func:`fast_batches`). When the fast path meets a malformed row and the user
did not ask to skip bad rows, the file is rescanned line by line in Python up to the first bad line, so
the error names the exact line (pyarrow does not track line numbers).
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import importlib
import io
import re
import sys
from collections.abc import Iterator
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


def check_int(text: str) -> bool:
    return bool(_INT_RE.match(text)) and abs(int(text)) <= _INT64_MAX


class NeedRescan(Exception):
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


class DelimitedReader(RawReader):
    """One delimited file read by pyarrow's fast path (:func:`fast_batches`): ``_convert`` turns a parse
    block into a batch (raising :class:`NeedRescan` at a bad row), ``_row_ok`` marks its good rows, and
    ``line_error`` describes one bad line for the error message."""

    path: Path

    def files(self) -> dict[str, Path]:
        return {"train": self.path}

    def _where(self, line: int) -> str:
        return f"{self.dataset} {self.path.name} line {line}"

    def line_error(self, line: str) -> str | None:
        raise NotImplementedError

    def _convert(self, rb: pa.Table) -> Batch:
        raise NotImplementedError

    def _row_ok(self, rb: pa.Table) -> np.ndarray:
        raise NotImplementedError


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
            raise NeedRescan(str(exc)) from exc
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


def labels01(col: pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """``(labels float32, ok mask)`` for a '0'/'1' string column."""
    one = to_numpy(pc.equal(col, "1"))
    zero = to_numpy(pc.equal(col, "0"))
    return one.astype(np.float32), one | zero


def int_codes(col: pa.Array | pa.ChunkedArray) -> np.ndarray | None:
    """Bucketed int64 tokens of a string column of integers; ``None`` when a value is not one."""
    parts = [_int_codes_one(a) for a in chunks_of(col)]
    if any(p is None for p in parts):
        return None
    return parts[0] if len(parts) == 1 else np.concatenate(parts)  # type: ignore[arg-type]


def _int_codes_one(a: pa.Array) -> np.ndarray | None:
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


def int_ok_mask(col: pa.Array | pa.ChunkedArray) -> np.ndarray:
    return to_numpy(pc.or_(pc.equal(col, ""), pc.match_substring_regex(col, r"^-?[0-9]{1,18}$")))


def fast_batches(
    reader: DelimitedReader,
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
            except NeedRescan:
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
        except NeedRescan:  # under skip_bad_rows only the parser raises it: undecodable bytes
            if skips is None:
                raise
            skips.count, skips.examples = 0, []
            produced, n = n, 0
            for batch in converted(decodable_only=True):
                if n + len(batch) > produced:
                    yield _rows_from(batch, max(produced - n, 0))
                n += len(batch)
    except NeedRescan:
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


def _first_bad_line(reader: DelimitedReader, skip_rows: int) -> DataError:
    """Slow path: scan line by line and describe the first malformed line."""
    for i, line in iter_lines(reader.path, "utf-8"):
        if i <= skip_rows or not line:
            continue
        msg = reader.line_error(line)
        if msg is not None:
            return DataError(f"{reader._where(i)}: {msg}")
    return DataError(f"{reader.dataset} {reader.path}: malformed content (could not locate the line)")


def resolve_criteo_like(raw: Path, names: tuple[str, ...], dataset: str) -> Path:
    """Accept the file itself or the folder holding it under one of its usual names."""
    raw = Path(raw).expanduser()
    if raw.is_dir():
        for n in names:
            if (raw / n).is_file():
                return raw / n
        raise DataError(f"{dataset} {raw}: none of {', '.join(names)} in this folder")
    return raw


def single_raw(raw: str | Path | list, name: str) -> Path:
    """The one raw file or folder of a dataset that has one."""
    if isinstance(raw, list | tuple):
        if len(raw) != 1:
            raise DataError(f"{name}: expected one raw file or folder, got {len(raw)}")
        raw = raw[0]
    return Path(raw)


#: names defined here before each dataset got its own module; ``from fmpbench.data.readers import X``
#: still works for them
_MOVED = {
    **dict.fromkeys(("CRITEO_FIELDS", "CRITEO_INT_FIELDS", "CRITEO_CAT_FIELDS", "CriteoReader"), "criteo"),
    **dict.fromkeys(("AVAZU_COLUMNS", "AVAZU_FIELDS", "AvazuReader", "parse_avazu_hour"), "avazu"),
    **dict.fromkeys(("MOVIELENS_FIELDS", "MovieLensReader", "resolve_movielens"), "movielens"),
    **dict.fromkeys(("AMAZON_BASE_FIELDS", "AMAZON_META_FIELDS", "AmazonReader", "log_bucket", "price_bucket",
                     "resolve_amazon", "style_field_name"), "amazon"),
}


def __getattr__(name: str) -> Any:
    if name in _MOVED:
        return getattr(importlib.import_module(f"fmpbench.data.{_MOVED[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
