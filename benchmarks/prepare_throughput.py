"""Preparation speed and peak memory on full-format raw files, and how they scale with row count.

In one run: generate Criteo ``train.txt`` files of 1 M and 5 M rows (``generate_raw.py``; or reuse
them from ``--raw-dir``), then run ``prepare("criteo", ...)`` on each in a fresh subprocess, so each
peak resident set size (``ru_maxrss`` of that process) belongs to one preparation alone. Reports
rows/s, CPU seconds, peak RSS, the ratio peak(largest)/peak(smallest), and the 1-minute load average
before and after each measurement (the figures are pessimistic on a machine shared with other jobs).
Times cover the whole ``prepare`` call: the raw file's checksum, both passes and the cache's finalisation.

Bars (2-core machine): >= 200,000 rows/s at 5 M rows; peak RSS at 5 M within 1.3x of 1 M and under 2 GiB.

Usage: python benchmarks/prepare_throughput.py [--rows 1000000 5000000] [--dataset criteo avazu]
       [--raw-dir DIR] [--gzip] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from generate_raw import write_raw  # beside this script, which is on sys.path when run as one

MIN_ROWS_PER_S = 200_000
MAX_PEAK_RATIO = 1.3
MAX_PEAK_BYTES = 2 << 30
SUFFIX = {"criteo": "txt", "avazu": "csv"}


def load() -> float:
    return round(os.getloadavg()[0], 2)


def child(dataset: str, raw: Path, data_dir: Path) -> None:
    """Run one preparation in this process and print its figures as one JSON line."""
    from fmpbench.data import prepare

    c0, t0 = time.process_time(), time.perf_counter()
    d = prepare(dataset, raw, data_dir)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    n = len(d.train) + len(d.valid) + len(d.test)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB
    print(
        json.dumps(
            {
                "rows": n,
                "wall_s": wall,
                "cpu_s": cpu,
                "rows_per_s": n / wall,
                "peak_rss_bytes": peak,
                "vocabulary": sum(d.field_dims),
                "passes_s": d.info["timing_s"],
            }
        )
    )


def measure(dataset: str, raw: Path, work: Path) -> dict[str, Any]:
    data_dir = work / f"prepared-{dataset}-{raw.stem}"
    shutil.rmtree(data_dir, ignore_errors=True)
    load_before = load()
    proc = subprocess.run(
        [sys.executable, __file__, "--child", dataset, str(raw), str(data_dir)],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        raise SystemExit(f"prepare {dataset} {raw} failed:\n{proc.stderr}")
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    res.update(dataset=dataset, raw=str(raw), raw_bytes=raw.stat().st_size, load_before=load_before, load_after=load())
    shutil.rmtree(data_dir, ignore_errors=True)
    return res


def raw_file(dataset: str, rows: int, folder: Path, gz: bool, seed: int) -> Path:
    path = folder / f"{dataset}_{rows}_seed{seed}.{SUFFIX[dataset]}{'.gz' if gz else ''}"
    if not path.exists():
        t = time.perf_counter()
        write_raw(dataset, rows, path, seed=seed, gzip_level=1 if gz else None)
        print(f"generated {path} ({path.stat().st_size / 1e6:,.0f} MB) in {time.perf_counter() - t:.1f}s", flush=True)
    return path


def verdict(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The bars, on the largest run against the smallest."""
    small, big = min(runs, key=lambda r: r["rows"]), max(runs, key=lambda r: r["rows"])
    ratio = big["peak_rss_bytes"] / small["peak_rss_bytes"]
    return {
        "rows_small": small["rows"],
        "rows_large": big["rows"],
        "peak_ratio": ratio,
        "rows_per_s_large": big["rows_per_s"],
        "meets_speed": big["rows_per_s"] >= MIN_ROWS_PER_S,
        "meets_memory_scaling": ratio <= MAX_PEAK_RATIO,
        "meets_memory_cap": big["peak_rss_bytes"] < MAX_PEAK_BYTES,
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 5_000_000])
    ap.add_argument("--dataset", nargs="+", choices=list(SUFFIX), default=["criteo"])
    ap.add_argument("--raw-dir", type=Path, default=None, help="keep/reuse generated raw files here")
    ap.add_argument("--gzip", action="store_true", help="gzip the raw files (level 1)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--child", nargs=3, metavar=("DATASET", "RAW", "DATA_DIR"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        child(args.child[0], Path(args.child[1]), Path(args.child[2]))
        return

    work = Path(tempfile.mkdtemp(prefix="fmpbench-prepare-"))
    raw_dir = args.raw_dir or work
    report: dict[str, Any] = {"cpus": os.cpu_count(), "affinity": len(os.sched_getaffinity(0)), "datasets": {}}
    try:
        for dataset in args.dataset:
            runs = []
            for rows in sorted(args.rows):
                raw = raw_file(dataset, rows, raw_dir, args.gzip, args.seed)
                r = measure(dataset, raw, work)
                runs.append(r)
                print(
                    f"{dataset} {r['rows']:>10,} rows: {r['wall_s']:6.1f} s  {r['rows_per_s']:>9,.0f} rows/s  "
                    f"cpu {r['cpu_s']:6.1f} s  peak RSS {r['peak_rss_bytes'] / 2**20:6,.0f} MiB  "
                    f"vocabulary {r['vocabulary']:>10,}  load {r['load_before']:.2f} -> {r['load_after']:.2f}",
                    flush=True,
                )
            v = verdict(runs) if len(runs) > 1 else {}
            if v:
                print(
                    f"{dataset}: peak({v['rows_large']:,})/peak({v['rows_small']:,}) = {v['peak_ratio']:.2f}  "
                    f"speed >= {MIN_ROWS_PER_S:,}/s: {v['meets_speed']}  ratio <= {MAX_PEAK_RATIO}: "
                    f"{v['meets_memory_scaling']}  peak < 2 GiB: {v['meets_memory_cap']}",
                    flush=True,
                )
            report["datasets"][dataset] = {"runs": runs, "verdict": v}
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
