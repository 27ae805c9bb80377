"""Expanding a grid (methods × seeds, each with its ks) into tasks and running them with progress."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fmpbench.data.prepared import PreparedData
from fmpbench.protocol import ExperimentConfig, Task, run_task, task_rows
from fmpbench.results import finished_run_ids

DEFAULT_K_RATIOS = (0.25, 0.5, 0.75)


class GridError(ValueError):
    """A grid that cannot run as asked (impossible k, no seeds, ...)."""


def resolve_ks(spec: Sequence[float] | None, num_fields: int) -> tuple[int, ...]:
    """Budgets as field counts: values < 1 are ratios of F, integers are counts; sorted, unique."""
    values = DEFAULT_K_RATIOS if not spec else spec
    ks: set[int] = set()
    for value in values:
        if 0 < value < 1:
            k = max(1, round(value * num_fields))
        elif float(value).is_integer() and 1 <= value <= num_fields:
            k = int(value)
        else:
            raise GridError(f"impossible k={value:g}: use a count in 1..{num_fields} or a ratio in (0, 1)")
        ks.add(k)
    return tuple(sorted(ks))


def build_tasks(methods: Sequence[str], seeds: Sequence[int], ks: tuple[int, ...]) -> list[Task]:
    """Seed-major order, so a partial grid already holds complete seeds of every method."""
    if not seeds:
        raise GridError("need at least one seed (--seeds must be ≥ 1)")
    return [Task(method, seed, ks) for seed in seeds for method in methods]


@dataclass
class GridOutcome:
    records: list[dict[str, Any]]
    skipped: int
    total_rows: int
    seconds: float

    @property
    def failed(self) -> list[dict[str, Any]]:
        return [r for r in self.records if r["status"] != "ok"]


def _progress_printer(total: int, already: int, stream: Any) -> Callable[[dict[str, Any]], None]:
    done = already
    start = time.perf_counter()

    def report(record: dict[str, Any]) -> None:
        nonlocal done
        done += 1
        elapsed = time.perf_counter() - start
        new = done - already
        eta = elapsed / new * (total - done) if new else 0.0
        head = f"[{done}/{total}] {record['method']:<12} k={record['k']:<3} seed={record['seed']}"
        if record["status"] == "ok":
            body = (
                f"AUC {record['test_auc']:.4f}  logloss {record['test_logloss']:.4f}  "
                f"epochs {record['epochs']}  search {record['search_seconds']:.1f}s  "
                f"retrain {record['retrain_seconds']:.1f}s"
            )
        else:
            body = f"{record['status'].upper()}: {record['error']}"
        print(f"{head}  {body}  (ETA {eta:.0f}s)", file=stream, flush=True)

    return report


def run_grid(
    tasks: Sequence[Task],
    config: ExperimentConfig,
    data: PreparedData,
    results_dir: Path,
    *,
    resume: bool = False,
    stream: Any = sys.stderr,
) -> GridOutcome:
    """Run every task in this process, skipping finished runs when ``resume`` is set."""
    start = time.perf_counter()
    finished = finished_run_ids(results_dir) if resume else set()
    all_rows = [row for task in tasks for row in task_rows(task, config, data)]
    skipped = sum(row.run_id in finished for row in all_rows)
    report = _progress_printer(len(all_rows), skipped, stream)
    records: list[dict[str, Any]] = []
    for task in tasks:
        records += run_task(task, config, data, results_dir, finished, report)
    return GridOutcome(records, skipped, len(all_rows), time.perf_counter() - start)
