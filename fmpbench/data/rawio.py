"""Low-level access to raw files exactly as their owners distribute them (plain or gzip).

Compression is detected from the magic bytes, not the file name: users rename files, and Avazu's
``train.gz`` and Criteo's ``train.txt`` must both just work.
"""

from __future__ import annotations

import gzip
import hashlib
import zlib
from collections.abc import Iterator
from pathlib import Path

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


def arrow_stream(path: Path) -> pa.NativeFile:
    """pyarrow input stream, decompressing gzip in C++ (fast path for the big CSV/TSV formats)."""
    return pa.input_stream(str(path), compression="gzip" if is_gzip(path) else None)


def iter_lines(path: Path, encoding: str = "utf-8") -> Iterator[tuple[int, str]]:
    """``(line_number, line_without_eol)`` pairs, 1-based; wraps gzip and decoding errors.

    Lines are split on bytes and decoded one by one so a bad byte is reported with its line number.
    """
    i = 0
    try:
        with gzip.open(path, "rb") if is_gzip(path) else open(path, "rb") as f:
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
