"""Low-level access to raw files exactly as their owners distribute them (plain or gzip).

Compression is detected from the magic bytes, not the file name: users rename files, and Avazu's
``train.gz`` and Criteo's ``train.txt`` must both just work.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import threading
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import pyarrow as pa

from fmpbench.data.errors import DataError

GZIP_MAGIC = b"\x1f\x8b"
_READ = 8 << 20


def is_gzip(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(2) == GZIP_MAGIC


def check_file(path: Path, what: str) -> Path:
    """Fail early, in one line, on a missing, non-regular or empty file."""
    path = Path(path).expanduser()
    if not path.exists():
        raise DataError(f"{what} {path}: file not found")
    if not path.is_file():
        raise DataError(f"{what} {path}: not a regular file")
    if path.stat().st_size == 0:
        raise DataError(f"{what} {path}: file is empty")
    return path


def gzip_error(path: Path, exc: BaseException) -> DataError:
    return DataError(f"{path}: corrupt or truncated gzip stream ({type(exc).__name__}: {exc})".replace("\n", " "))


def sha256_file(path: Path) -> str:
    """sha256 of the bytes as stored (what PROVENANCE and dataset cards list as "sha256 (file)")."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(_READ):
            h.update(block)
    return h.hexdigest()


class ByteCount:
    """Bytes read from raw files opened while it is active (:func:`counting`): what a progress bar of
    ``prepare`` shows. pyarrow may read from its own threads, hence the lock."""

    def __init__(self) -> None:
        self.bytes = 0
        self._lock = threading.Lock()

    def add(self, n: int) -> None:
        with self._lock:
            self.bytes += n


_active: list[ByteCount] = []


@contextlib.contextmanager
def counting(count: ByteCount) -> Iterator[ByteCount]:
    """Count into ``count`` the raw bytes read from files opened inside this block."""
    _active.append(count)
    try:
        yield count
    finally:
        _active.remove(count)


class _Counted(io.RawIOBase):
    def __init__(self, f: BinaryIO, count: ByteCount) -> None:
        super().__init__()
        self._f = f
        self._count = count

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:  # parquet is read by seeking to its footer and column chunks
        return True

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return self._f.seek(offset, whence)

    def tell(self) -> int:
        return self._f.tell()

    def readinto(self, out: bytearray | memoryview) -> int:
        n = self._f.readinto(out)  # type: ignore[attr-defined]
        self._count.add(n or 0)
        return n

    def close(self) -> None:
        self._f.close()
        super().close()


def open_raw(path: Path) -> BinaryIO:
    """The file's bytes as stored (compressed or not), counted while a :func:`counting` block is active."""
    f = open(path, "rb")  # noqa: SIM115 - the caller closes it
    if not _active:
        return f
    return io.BufferedReader(_Counted(f, _active[-1]), 1 << 20)  # type: ignore[return-value]


def arrow_stream(path: Path) -> pa.NativeFile:
    """pyarrow input stream, decompressing gzip in C++ (fast path for the big CSV/TSV formats)."""
    compression = "gzip" if is_gzip(path) else None
    if not _active:
        return pa.input_stream(str(path), compression=compression)
    return pa.input_stream(open_raw(path), compression=compression)


def iter_lines(path: Path, encoding: str = "utf-8") -> Iterator[tuple[int, str]]:
    """``(line_number, line_without_eol)`` pairs, 1-based; wraps gzip and decoding errors.

    Lines are split on bytes and decoded one by one so a bad byte is reported with its line number.
    """
    i = 0
    try:
        with open_raw(path) as raw, gzip.open(raw, "rb") if is_gzip(path) else contextlib.nullcontext(raw) as f:
            for i, raw in enumerate(f, 1):
                yield i, raw.rstrip(b"\r\n").decode(encoding)
    except (EOFError, OSError, zlib.error) as exc:
        raise gzip_error(path, exc) from exc
    except UnicodeDecodeError as exc:
        raise DataError(f"{path} line {i}: not valid {encoding} text ({exc.reason} at column {exc.start + 1})") from exc


def first_line(path: Path) -> str:
    for _, line in iter_lines(path):
        return line
    return ""
