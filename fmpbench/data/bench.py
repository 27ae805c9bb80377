"""Preparation throughput benchmark on a generated Criteo-format file.

    python -m fmpbench.data.bench --rows 1000000 [--raw /tmp/criteo_1m.txt] [--keep]

Writes a Kaggle ``train.txt``-shaped file (40 tab-separated columns, empty and negative integers,
8-hex-digit categoricals with heavy-tailed frequencies and Criteo-like cardinalities), then times
``prepare("criteo", ...)`` and reports rows/s, CPU seconds and peak RSS.
"""

from __future__ import annotations

import argparse
import resource
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

# Full-data cardinalities of C1..C26 (Kaggle train.txt), capped for generation.
_CARDS = [
    1460,
    583,
    10131227,
    2202608,
    305,
    24,
    12517,
    633,
    3,
    93145,
    5683,
    8351593,
    3194,
    27,
    14992,
    5461306,
    10,
    5652,
    2173,
    4,
    7046547,
    18,
    15,
    286181,
    105,
    142572,
]


def write_criteo_like(path: Path, n_rows: int, seed: int = 0, block: int = 200_000) -> Path:
    """Generate ``n_rows`` Criteo-format lines (vectorised; ~20 s per million rows)."""
    rng = np.random.default_rng(seed)
    with open(path, "w", encoding="ascii") as f:
        for start in range(0, n_rows, block):
            m = min(block, n_rows - start)
            cols = [np.where(rng.random(m) < 0.25, "1", "0")]
            for i in range(13):
                v = (np.floor(rng.pareto(1.0, m) * 3).astype(np.int64) - (i == 1)).astype(str)
                v[rng.random(m) < 0.3] = ""
                cols.append(v)
            for c in _CARDS:
                codes = np.minimum(np.floor(min(c, 4_000_000) * rng.random(m) ** 3).astype(np.int64), c - 1)
                hexes = np.char.mod("%08x", (codes * 2654435761) % (1 << 32))
                hexes[rng.random(m) < 0.04] = ""
                cols.append(hexes)
            f.write("\n".join("\t".join(r) for r in zip(*cols)) + "\n")
    return path


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--raw", type=Path, default=None, help="reuse/keep the generated file here")
    ap.add_argument("--min-count", type=int, default=10)
    ap.add_argument("--chunk-rows", type=int, default=None)
    ap.add_argument("--split", default="random")
    args = ap.parse_args(argv)

    from fmpbench.data import prepare
    from fmpbench.data.preprocess import DEFAULT_CHUNK_ROWS

    tmp = Path(tempfile.mkdtemp(prefix="fmpbench-bench-"))
    try:
        raw = args.raw or tmp / "train.txt"
        if not raw.exists():
            t = time.perf_counter()
            write_criteo_like(raw, args.rows)
            print(f"generated {raw} ({raw.stat().st_size / 1e6:.0f} MB) in {time.perf_counter() - t:.1f}s")
        c0, t0 = time.process_time(), time.perf_counter()
        d = prepare(
            "criteo",
            raw,
            tmp / "data",
            min_count=args.min_count,
            split=args.split,
            chunk_rows=args.chunk_rows or DEFAULT_CHUNK_ROWS,
        )
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        n = len(d.train) + len(d.valid) + len(d.test)
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(
            f"prepare criteo: {n:,} rows in {wall:.2f}s = {n / wall:,.0f} rows/s "
            f"(cpu {cpu:.1f}s, peak RSS {rss:.0f} MB, vocabulary {sum(d.field_dims):,} ids, "
            f"passes {d.info['timing_s']})"
        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
