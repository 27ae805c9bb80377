"""Raw Criteo / Avazu files in their genuine formats, at any row count, for full-size benchmarks.

    python benchmarks/generate_raw.py criteo --rows 5000000 --out /tmp/train.txt [--gzip] [--seed 0]
    python benchmarks/generate_raw.py avazu --rows 5000000 --out /tmp/train.csv

Criteo: the Kaggle ``train.txt`` (no header; label, I1..I13, C1..C26, tab-separated). Integers are
log-normal counts with Criteo's missing rates (missing together in the groups the real file shows)
and a few negatives in I2; categoricals are 8 hex digits with Criteo's cardinalities and missing
rates. Avazu: the Kaggle ``train.csv`` with its header, 20-digit ids, rows in time order over ten
days of ``hour`` (YYMMDDHH), site-or-app traffic (an app row carries the "no site" ids and vice
versa), 8-hex-digit site/app/device ids and the integer columns' real value sets.

Category frequencies are heavy-tailed: a power-law head plus a uniform tail over the full
cardinality whose share is ``cardinality / rows of the real file``, so distinct values grow with
row count as in the real data (most tail values are rare and end up OOV under ``min_count``).
Sampling is inverse-CDF per row, so its cost does not depend on the cardinality: none needs capping.

Text is built without Python per-row loops: each field becomes a right-aligned byte matrix plus a
length per row, the fields and separators are laid side by side, and a mask drops the padding.
Memory is bounded by the block size (about 2 KB per block row: under 300 MB in all for Criteo). Output
depends only on ``--rows`` and ``--seed``; about 5 s per million Criteo rows on one core.
"""

from __future__ import annotations

import argparse
import gzip
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

import numpy as np

BLOCK_ROWS = 100_000
_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
_POW10 = np.array([10**k for k in range(20)], dtype=np.uint64)

Field = tuple[np.ndarray, np.ndarray]  # (uint8 [m, width] right-aligned text, int64 [m] lengths)


# ---------------------------------------------------------------- text rendering


def decimal(values: np.ndarray, width: int) -> Field:
    """Signed or unsigned integers as right-aligned decimal text (``width`` includes the sign)."""
    neg = values < 0 if values.dtype.kind == "i" else np.zeros(values.shape, dtype=bool)
    mag = np.abs(values).astype(np.uint64) if values.dtype.kind == "i" else values.astype(np.uint64)
    digits = 1 + (mag[:, None] >= _POW10[1:width]).sum(axis=1)
    if int((digits + neg).max(initial=0)) > width:
        raise ValueError(f"a value needs more than {width} characters")
    text = np.empty((len(values), width), dtype=np.uint8)
    q = mag.copy()
    for p in range(width - 1, -1, -1):
        text[:, p] = 48 + (q % 10).astype(np.uint8)
        q //= 10
    rows = np.flatnonzero(neg)
    text[rows, width - 1 - digits[rows]] = ord("-")
    return text, digits + neg


def hex8(codes: np.ndarray, missing: np.ndarray | None = None) -> Field:
    """32-bit codes as 8 lowercase hex digits; missing rows are empty."""
    c = codes.astype(np.uint32)
    text = np.empty((len(c), 8), dtype=np.uint8)
    for p in range(8):
        text[:, p] = _HEX[(c >> np.uint32(4 * (7 - p))) & np.uint32(15)]
    lens = np.full(len(c), 8, dtype=np.int64)
    if missing is not None:
        lens[missing] = 0
    return text, lens


def blank(field: Field, missing: np.ndarray) -> Field:
    text, lens = field
    lens = lens.copy()
    lens[missing] = 0
    return text, lens


def render(fields: list[Field], sep: bytes) -> bytes:
    """Lines of ``sep``-separated fields, each ended by a newline."""
    m = len(fields[0][1])
    width = sum(t.shape[1] for t, _ in fields) + len(fields)
    buf = np.empty((m, width), dtype=np.uint8)
    keep = np.ones((m, width), dtype=bool)
    col = 0
    for k, (text, lens) in enumerate(fields):
        w = text.shape[1]
        buf[:, col : col + w] = text
        keep[:, col : col + w] = np.arange(w) >= (w - lens)[:, None]
        col += w
        buf[:, col] = ord("\n") if k == len(fields) - 1 else sep[0]
        col += 1
    return buf[keep].tobytes()


# ---------------------------------------------------------------- sampling


def category_codes(
    rng: np.random.Generator, m: int, cardinality: int, real_rows: int, alpha: float = 1.2
) -> np.ndarray:
    """Ranks in ``[0, cardinality)``: power-law head (``alpha``) plus a uniform tail (see module doc)."""
    tail_share = min(0.5, cardinality / real_rows) if cardinality > 1000 else 0.0
    u = rng.random(m)
    # Inverse CDF of a continuous power law on [1, cardinality + 1] with density ~ x^-alpha.
    top = (cardinality + 1.0) ** (1.0 - alpha)
    head = np.floor((1.0 - u * (1.0 - top)) ** (1.0 / (1.0 - alpha))).astype(np.int64) - 1
    tail = rng.random(m) < tail_share
    head[tail] = rng.integers(0, cardinality, int(tail.sum()))
    return np.minimum(head, cardinality - 1)


def scramble(codes: np.ndarray, field: int) -> np.ndarray:
    """A per-field bijection of 32-bit codes (odd multiplier, random offset): hex strings look hashed."""
    salt = np.random.default_rng([0x5EED, field]).integers(1 << 32, dtype=np.uint64)
    return (codes.astype(np.uint64) * np.uint64(2654435761) + salt) & np.uint64(0xFFFFFFFF)


def weighted(rng: np.random.Generator, m: int, values: list[int], weights: list[float]) -> np.ndarray:
    p = np.asarray(weights, dtype=np.float64)
    return np.asarray(values, dtype=np.int64)[rng.choice(len(values), size=m, p=p / p.sum())]


# ---------------------------------------------------------------- Criteo


CRITEO_REAL_ROWS = 45_840_617
# Kaggle train.txt: distinct values of C1..C26.
CRITEO_CARDINALITIES = [
    1460, 583, 10131227, 2202608, 305, 24, 12517, 633, 3, 93145, 5683, 8351593, 3194,
    27, 14992, 5461306, 10, 5652, 2173, 4, 7046547, 18, 15, 286181, 105, 142572,
]  # fmt: skip
# I1..I13: (median, log-normal sigma, missing group); groups are missing together, at these rates.
CRITEO_INTS = [
    (1, 1.2, "a"), (3, 2.0, None), (7, 1.5, "b"), (4, 1.0, "b"), (2925, 1.8, "c"), (33, 1.6, "b"),
    (3, 1.5, "d"), (8, 1.0, "e"), (41, 1.3, "d"), (1, 0.6, "a"), (1, 1.0, "d"), (0, 1.5, "f"), (4, 1.2, "b"),
]  # fmt: skip
CRITEO_INT_MISSING = {"a": 0.454, "b": 0.216, "c": 0.026, "d": 0.043, "e": 0.0005, "f": 0.765}
CRITEO_CAT_MISSING = {  # C<i> -> (group, rate)
    3: ("g", 0.034), 4: ("g", 0.034), 12: ("g", 0.034), 16: ("g", 0.034), 21: ("g", 0.034), 24: ("g", 0.034),
    19: ("h", 0.44), 20: ("h", 0.44), 25: ("h", 0.44), 26: ("h", 0.44), 22: ("i", 0.762),
}  # fmt: skip
CRITEO_CTR = 0.256


def criteo_block(rng: np.random.Generator, start: int, m: int, n_rows: int) -> bytes:
    """``m`` lines of Criteo's ``train.txt``."""
    group_u = {g: rng.random(m) for g in "abcdefghi"}
    fields: list[Field] = [decimal((rng.random(m) < CRITEO_CTR).astype(np.int64), 1)]
    for i, (median, sigma, group) in enumerate(CRITEO_INTS, 1):
        v = np.floor((median + 0.5) * np.exp(sigma * rng.standard_normal(m))).astype(np.int64)
        v = np.minimum(v, 10**9 - 1)
        if i == 2:  # I2 is the one integer with negatives (-1 mostly, down to -3)
            neg = rng.random(m) < 0.05
            v[neg] = -weighted(rng, int(neg.sum()), [1, 2, 3], [0.9, 0.07, 0.03])
        f = decimal(v, 11)
        fields.append(blank(f, group_u[group] < CRITEO_INT_MISSING[group]) if group else f)
    for i, card in enumerate(CRITEO_CARDINALITIES, 1):
        codes = scramble(category_codes(rng, m, card, CRITEO_REAL_ROWS), i)
        group, rate = CRITEO_CAT_MISSING.get(i, (None, 0.0))
        fields.append(hex8(codes, group_u[group] < rate if group else None))
    return render(fields, b"\t")


# ---------------------------------------------------------------- Avazu


AVAZU_HEADER = (
    "id,click,hour,C1,banner_pos,site_id,site_domain,site_category,app_id,app_domain,app_category,"
    "device_id,device_ip,device_model,device_type,device_conn_type,C14,C15,C16,C17,C18,C19,C20,C21"
)
AVAZU_REAL_ROWS = 40_428_967
AVAZU_CTR = 0.17
AVAZU_APP_SHARE = 0.36
# Hex columns: (cardinality in the real train.csv, power-law alpha). device_id's alpha makes one
# value ("a99f214a" in the real data) cover most rows.
AVAZU_HEX = {
    "site_id": (4737, 1.3), "site_domain": (7745, 1.3), "site_category": (26, 1.6),
    "app_id": (8552, 1.3), "app_domain": (559, 1.5), "app_category": (36, 1.8),
    "device_id": (2686408, 3.5), "device_ip": (6729486, 1.1), "device_model": (8251, 1.2),
}  # fmt: skip
# Placeholder ids of the side a row does not use: site rows carry these app ids and vice versa.
AVAZU_NO_APP = {"app_id": 0xECAD2386, "app_domain": 0x7801E8D9, "app_category": 0x07D7DF22}
AVAZU_NO_SITE = {"site_id": 0x85F751FD, "site_domain": 0xC4E18DD6, "site_category": 0x50E219E0}
# Integer columns with few values: (values, weights).
AVAZU_SMALL = {
    "C1": ([1005, 1002, 1010, 1012, 1007, 1001, 1008], [91.9, 5.5, 2.2, 0.28, 0.09, 0.02, 0.01]),
    "banner_pos": ([0, 1, 7, 2, 4, 5, 3], [72.0, 27.8, 0.1, 0.03, 0.02, 0.01, 0.01]),
    "device_type": ([1, 0, 4, 5, 2], [92.3, 5.5, 1.9, 0.3, 0.001]),
    "device_conn_type": ([0, 2, 3, 5], [86.3, 8.2, 5.4, 0.1]),
    "C15": ([320, 300, 216, 728, 120, 1024, 480, 768], [93.2, 5.7, 0.7, 0.2, 0.1, 0.05, 0.05, 0.01]),
    "C16": ([50, 250, 36, 480, 90, 20, 768, 320, 1024], [94.3, 4.4, 0.7, 0.2, 0.2, 0.1, 0.05, 0.04, 0.01]),
    "C18": ([0, 3, 2, 1], [41.9, 33.7, 17.4, 7.0]),
}
# Integer columns with many values: (cardinality, lowest, highest, power-law alpha).
AVAZU_POOLS = {
    "C14": (2626, 375, 24052, 1.1),
    "C17": (435, 112, 2758, 1.2),
    "C19": (68, 33, 1959, 1.4),
    "C20": (172, 100000, 100248, 1.2),
    "C21": (60, 1, 255, 1.3),
}
AVAZU_C20_MISSING = 0.47  # C20 is -1 on about half the rows
AVAZU_DAYS = 10  # 2014-10-21 .. 2014-10-30


def avazu_pools(seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng([seed, 1])
    return {
        name: rng.permutation(rng.choice(np.arange(lo, hi + 1), size=card, replace=False))
        for name, (card, lo, hi, _) in AVAZU_POOLS.items()
    }


def avazu_block(rng: np.random.Generator, start: int, m: int, n_rows: int, pools: dict[str, np.ndarray]) -> bytes:
    """``m`` lines of Avazu's ``train.csv`` (rows ``start..start+m`` of ``n_rows``, in time order)."""
    ids = rng.integers(10**19, np.iinfo(np.uint64).max, size=m, dtype=np.uint64, endpoint=True)
    hour_index = (np.arange(start, start + m, dtype=np.int64) * AVAZU_DAYS * 24) // max(n_rows, 1)
    hour = 14102100 + (hour_index // 24) * 100 + hour_index % 24
    fields: list[Field] = [
        decimal(ids, 20),
        decimal((rng.random(m) < AVAZU_CTR).astype(np.int64), 1),
        decimal(hour, 8),
        decimal(weighted(rng, m, *AVAZU_SMALL["C1"]), 4),
        decimal(weighted(rng, m, *AVAZU_SMALL["banner_pos"]), 1),
    ]
    is_app = rng.random(m) < AVAZU_APP_SHARE
    for k, (name, (card, alpha)) in enumerate(AVAZU_HEX.items()):
        codes = scramble(category_codes(rng, m, card, AVAZU_REAL_ROWS, alpha), 100 + k)
        if name in AVAZU_NO_APP:
            codes[~is_app] = AVAZU_NO_APP[name]
        elif name in AVAZU_NO_SITE:
            codes[is_app] = AVAZU_NO_SITE[name]
        fields.append(hex8(codes))
    fields.append(decimal(weighted(rng, m, *AVAZU_SMALL["device_type"]), 1))
    fields.append(decimal(weighted(rng, m, *AVAZU_SMALL["device_conn_type"]), 1))
    for name in ("C14", "C15", "C16", "C17", "C18", "C19", "C20", "C21"):
        if name in AVAZU_SMALL:
            fields.append(decimal(weighted(rng, m, *AVAZU_SMALL[name]), 4))
            continue
        card, _, _, alpha = AVAZU_POOLS[name]
        v = pools[name][category_codes(rng, m, card, AVAZU_REAL_ROWS, alpha)]
        if name == "C20":
            v[rng.random(m) < AVAZU_C20_MISSING] = -1
        fields.append(decimal(v, 6))
    return render(fields, b",")


# ---------------------------------------------------------------- driver


def blocks(dataset: str, n_rows: int, seed: int, block_rows: int = BLOCK_ROWS) -> Iterator[bytes]:
    """The file's content, block by block (each block seeded by its index: any block is reproducible)."""
    make: Callable[[np.random.Generator, int, int, int], bytes]
    if dataset == "criteo":
        make = criteo_block
    elif dataset == "avazu":
        pools = avazu_pools(seed)
        yield (AVAZU_HEADER + "\n").encode()

        def make(rng: np.random.Generator, start: int, m: int, n: int) -> bytes:
            return avazu_block(rng, start, m, n, pools)
    else:
        raise ValueError(f"unknown dataset {dataset!r}; choose criteo or avazu")
    for b, start in enumerate(range(0, n_rows, block_rows)):
        yield make(np.random.default_rng([seed, 0, b]), start, min(block_rows, n_rows - start), n_rows)


def write_raw(dataset: str, n_rows: int, out: Path, *, seed: int = 0, gzip_level: int | None = None) -> Path:
    """Write ``n_rows`` rows of ``dataset``'s raw format to ``out`` (gzip when ``gzip_level``).

    A regular file is written beside its final name and renamed at the end, so an interrupted run
    never leaves a truncated file that a later benchmark would reuse; anything else (a pipe,
    ``/dev/stdout``) is written in place."""
    atomic = not out.exists() or out.is_file()
    target = out.with_name(out.name + ".partial") if atomic else out
    if atomic:
        out.parent.mkdir(parents=True, exist_ok=True)
    f: BinaryIO
    with open(target, "wb") as raw:
        f = gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=gzip_level, mtime=0) if gzip_level else raw
        for block in blocks(dataset, n_rows, seed):
            f.write(block)
        if f is not raw:
            f.close()
    if atomic:
        target.replace(out)
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dataset", choices=["criteo", "avazu"])
    ap.add_argument("--rows", type=int, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--gzip", action="store_true", help="gzip the output (level --gzip-level)")
    ap.add_argument("--gzip-level", type=int, default=1, help="1 is fast; the real downloads use 6-9")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    if args.rows < 1:
        ap.error("--rows must be >= 1")
    t = time.perf_counter()
    write_raw(args.dataset, args.rows, args.out, seed=args.seed, gzip_level=args.gzip_level if args.gzip else None)
    dt = time.perf_counter() - t
    print(f"{args.out}: {args.rows:,} {args.dataset} rows in {dt:.1f}s", file=sys.stderr)


if __name__ == "__main__":
    main()
