"""Grid wall-clock with ``--jobs 2`` against ``--jobs 1`` on the same 12-run grid, in one run.

The grid: every registered method at one budget (k = F/2) on the built-in Avazu stand-in — 11
tasks (one search each) and 12 result rows (``none`` at k = F, ``lightfmp`` adds ``lightfmp-fs``).
Each configuration runs as its own ``python -m fmpbench run`` into a fresh results directory, so
process start-up and data generation are included, as a user sees it.

Usage: python benchmarks/grid_jobs.py [--rows 200000] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

GRID = ["--methods", "all", "--dataset", "avazu", "--k", "0.5", "--seeds", "1"]


def wall_clock(jobs: int, rows: int) -> tuple[float, int]:
    with tempfile.TemporaryDirectory() as results:
        stand_in = ["--rows", str(rows), "--data-dir", str(Path(results) / "no-prepared-data")]
        command = [sys.executable, "-m", "fmpbench", "run", *GRID, *stand_in, "--jobs", str(jobs)]
        start = time.perf_counter()
        subprocess.run([*command, "--results", results], check=True, capture_output=True)
        seconds = time.perf_counter() - start
        return seconds, len(list(Path(results).glob("*.json")))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    one, runs_one = wall_clock(1, args.rows)
    two, runs_two = wall_clock(2, args.rows)
    result = {
        "runs": runs_one,
        "jobs1_seconds": round(one, 1),
        "jobs2_seconds": round(two, 1),
        "jobs2_over_jobs1": round(two / one, 3),
    }
    assert runs_one == runs_two == 12, (runs_one, runs_two)
    print(json.dumps(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
