"""Tiny raw files in each dataset's original format, for tests and demos (no third-party data).

The real files may not be shipped, so tests of the readers and of the ``prepare`` command write
small seeded look-alikes with these helpers.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np

from fmpbench.data.avazu import AVAZU_COLUMNS


def write_lines(path: Path, lines: list[str], *, gz: bool = False, encoding: str = "utf-8") -> Path:
    """Write ``lines`` (newline-terminated) as plain text or gzip."""
    data = "".join(line + "\n" for line in lines).encode(encoding)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if gz:
        with gzip.open(path, "wb") as f:
            f.write(data)
    else:
        path.write_bytes(data)
    return path


def criteo_lines(n: int, seed: int = 0) -> list[str]:
    """Rows of Kaggle ``train.txt``: label, 13 integers (some empty/negative), 26 hex tokens."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        label = int(rng.random() < 0.25)
        ints = [
            "" if rng.random() < 0.2 else str(int(rng.integers(-2, 3) if rng.random() < 0.4 else rng.integers(0, 5000)))
            for _ in range(13)
        ]
        cats = ["" if rng.random() < 0.05 else f"{int(rng.zipf(1.6)) * 2654435761 % (1 << 32):08x}" for _ in range(26)]
        out.append("\t".join([str(label), *ints, *cats]))
    return out


def avazu_lines(n: int, seed: int = 0, *, header: bool = True) -> list[str]:
    """Rows of Kaggle Avazu ``train.csv`` (with its header); ids exceed int64 like the real ones."""
    rng = np.random.default_rng(seed)
    out = [",".join(AVAZU_COLUMNS)] if header else []
    for i in range(n):
        hour = f"1410{21 + int(rng.integers(0, 9)):02d}{int(rng.integers(0, 24)):02d}"
        row = [
            str(10**19 + i),
            str(int(rng.random() < 0.17)),
            hour,
            str(1005 + int(rng.integers(0, 3))),
            str(int(rng.integers(0, 3))),
        ]
        row += [f"{int(rng.zipf(1.5)) % 5000:08x}" for _ in range(11)]
        row += [str(int(rng.zipf(1.5)) % 300) for _ in range(8)]
        out.append(",".join(row))
    return out


def write_movielens(folder: Path, n: int, seed: int = 0, *, gz: bool = False) -> Path:
    """ML-1M style ``ratings.dat`` (+ ``users.dat``, ``movies.dat`` in Latin-1); returns the folder."""
    rng = np.random.default_rng(seed)
    folder = Path(folder)
    ages = [1, 18, 25, 35, 45, 50, 56]
    users = [f"{u}::{'MF'[u % 2]}::{ages[u % 7]}::{u % 21}::{10000 + u * 7}" for u in range(1, 51)]
    titles = [
        "Amélie (2001)",
        "Toy Story (1995)",
        "Bicycle Thief, The (Ladri di biciclette) (1948)",
        "Crime and Punishment (Crime et châtiment) (1935)",
        "Untitled",
    ]
    genres = ["Comedy|Romance", "Animation|Children's|Comedy", "Drama", "Drama|Crime", "Documentary"]
    movies = [f"{m}::{titles[m % 5]}::{genres[m % 5]}" for m in range(1, 31)]
    ratings = [
        f"{int(rng.integers(1, 51))}::{int(rng.integers(1, 31))}::{int(rng.integers(1, 6))}::"
        f"{956703932 + int(rng.integers(0, 10**8))}"
        for _ in range(n)
    ]
    write_lines(folder / "users.dat", users, encoding="latin-1")
    write_lines(folder / "movies.dat", movies, encoding="latin-1")
    write_lines(folder / ("ratings.dat.gz" if gz else "ratings.dat"), ratings, gz=gz, encoding="latin-1")
    return folder


def amazon_lines(n: int, seed: int = 0) -> list[str]:
    """Amazon 2018 5-core JSON lines with style dicts and comma-grouped vote strings."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        d: dict[str, object] = {
            "overall": float(rng.integers(1, 6)),
            "verified": bool(rng.random() < 0.8),
            "reviewerID": f"A{int(rng.integers(0, 40)):05d}",
            "asin": f"B{int(rng.integers(0, 15)):09d}",
            "unixReviewTime": 1262304000 + int(rng.integers(0, 3 * 10**8)),
            "reviewText": "ok",
        }
        if rng.random() < 0.9:
            d["style"] = {"Size:": f" {['S', 'M', 'L'][int(rng.integers(0, 3))]}", "Color:": " Blue"}
        if rng.random() < 0.3:
            d["vote"] = f"{int(rng.integers(1, 3000)):,}"
        out.append(json.dumps(d))
    return out
