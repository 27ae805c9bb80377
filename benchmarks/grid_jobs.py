"""Grid wall-clock with ``--jobs 2`` against ``--jobs 1`` on the same 12-run grid, in one run.

The grid: every registered method at one budget (k = F/2) on the built-in Avazu stand-in — 11
tasks (one search each) and 12 result rows (``none`` at k = F, ``lightfmp`` adds ``lightfmp-fs``).
Each configuration runs as its own ``python -m fmpbench run`` into a fresh results directory, so
process start-up and data generation are included, as a user sees it.

This machine's speed drifts by ±15 % from minute to minute, so the two configurations alternate
(1, 2, 2, 1, 1, 2, ...) for ``--repeats`` rounds and each is summarised by its fastest run, the
estimate least disturbed by other load (as ``timeit`` does), and by its median; every raw time is
printed too.

Why the ratio cannot reach 0.5: ``--jobs 1`` already uses every core (torch's intra-op threads,
XGBoost and the random forest's parallel trees), while each of two workers gets one thread. The
benchmark therefore also reports the work: the seconds the tasks themselves took (searches and
retrains, from the records) in each configuration, and the ratio a perfectly balanced ``--jobs 2``
without any start-up cost would reach given that work —
``(T1 - W1 + W2 / 2) / T1`` for wall-clock ``T1`` and task seconds ``W1`` of ``--jobs 1`` and task
seconds ``W2`` of ``--jobs 2``.

Usage: python benchmarks/grid_jobs.py [--rows 200000] [--repeats 2] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

GRID = ["--methods", "all", "--dataset", "avazu", "--k", "0.5", "--seeds", "1"]


def task_seconds(records: list[dict]) -> float:
    """Seconds spent in searches (once per task) and retrains, summed over a grid's records."""
    searches = {(r["selector"], r["seed"]): r["search_seconds"] for r in records}
    return sum(searches.values()) + sum(r["retrain_seconds"] for r in records)


def run_grid(jobs: int, rows: int) -> tuple[float, float]:
    """Wall-clock and task seconds of one grid run in a fresh process and results directory."""
    with tempfile.TemporaryDirectory() as results:
        stand_in = ["--rows", str(rows), "--data-dir", str(Path(results) / "no-prepared-data")]
        command = [sys.executable, "-m", "fmpbench", "run", *GRID, *stand_in, "--jobs", str(jobs)]
        start = time.perf_counter()
        subprocess.run([*command, "--results", results], check=True, capture_output=True)
        seconds = time.perf_counter() - start
        records = [json.loads(path.read_text()) for path in Path(results).glob("*.json")]
    assert len(records) == 12 and all(r["status"] == "ok" for r in records), f"--jobs {jobs}: {len(records)} records"
    return seconds, task_seconds(records)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000, help="stand-in rows (the default grid's: 50,000)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    runs: dict[int, list[tuple[float, float]]] = {1: [], 2: []}
    for round_ in range(args.repeats):
        for jobs in (1, 2) if round_ % 2 == 0 else (2, 1):
            seconds, work = run_grid(jobs, args.rows)
            runs[jobs].append((round(seconds, 1), round(work, 1)))
            print(f"--jobs {jobs}: {seconds:.1f} s wall-clock, {work:.1f} s in tasks", file=sys.stderr, flush=True)
    (one, work_one), (two, work_two) = min(runs[1]), min(runs[2])
    result = {
        "rows": args.rows,
        "runs": 12,
        "jobs1_seconds": one,
        "jobs2_seconds": two,
        "jobs2_over_jobs1": round(two / one, 3),
        "jobs2_over_jobs1_medians": round(
            statistics.median(s for s, _ in runs[2]) / statistics.median(s for s, _ in runs[1]), 3
        ),
        "jobs1_task_seconds": work_one,
        "jobs2_task_seconds": work_two,
        "one_thread_work_over_two_thread_work": round(work_two / work_one, 3),
        "jobs2_over_jobs1_bound": round((one - work_one + work_two / 2) / one, 3),
        "all_runs": {
            f"jobs{jobs}": [{"seconds": s, "task_seconds": w} for s, w in values] for jobs, values in runs.items()
        },
    }
    print(json.dumps(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
