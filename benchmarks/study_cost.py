"""What a study costs, old path against new, in one run: and what a full-size study would cost.

The study: 6 methods (none, random, lasso, pca, permutation, sfs) × 3 k (F/4, F/2, 3F/4) × 2 seeds
on the Avazu stand-in, default backbone (MLP 256-128, embedding 16), at most ``--epochs`` epochs.
Shrunk to fit one run in ≤ 10 minutes on a loaded 2-core host: ``--rows`` 40 k instead of 200 k,
3 epochs instead of 30 (patience 1), one torch thread for both paths. Before timing, both paths run
once on 2,000 rows, so that first-call costs (imports, allocator, thread pools) hit neither.

* **old path** — each task on its own, as before issue 15: its search, then every retrain trained
  alone (``iter_task_outputs`` with a ledger of its own task, so no reuse across methods);
* **new path** — ``run_grid(stack_retrains=True)``: identical retrains reused (the grid's
  ``RetrainLedger``), and each k's retrains of all methods of a seed trained as one stack.

The paths alternate by seed (old 0, new 0, new 1, old 1) so that drifting load hits both. From the
records: search, retrain and selection seconds; the rest of each path's wall-clock is evaluation
(test AUC, FLOPs, latency) and record writing. Start-up (``import fmpbench.cli`` and ``--help`` in
a fresh interpreter) is measured once; every process of a study pays it once.

Projection of a full Criteo + Avazu study (11 methods, 5 seeds, 3 k; 45 M and 40 M rows) from the
measured per-sample costs: searches and retrains scale with training rows × epochs and with the
number of fields (Criteo 39, Avazu 23: per-sample costs × F / 23), evaluation with test rows; the
epochs and the share of reused retrains are this run's. The GPU figure divides by assumed
speed-ups (printed, not measured: no GPU was available).

Usage: python benchmarks/study_cost.py [--rows 40000] [--epochs 3] [--json benchmarks/results/study_cost.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from fmpbench.data import get_dataset
from fmpbench.grid import build_tasks, resolve_ks, run_grid
from fmpbench.protocol import ExperimentConfig, iter_task_outputs
from fmpbench.results import iter_records, write_record
from fmpbench.training import TrainConfig

METHODS = ["none", "random", "lasso", "pca", "permutation", "sfs"]
FULL = {"criteo": (45_000_000, 39), "avazu": (40_000_000, 23)}
FULL_METHODS, FULL_SEEDS, FULL_KS = 11, 5, 3
#: assumed GPU speed-ups over this machine (not measured). Old path: the project's own extrapolation
#: (≈ 13 days on this machine, ≈ 4 on one H100). Stacked retrains: a further 4× because the default
#: model at batch 512 leaves a GPU mostly idle, so a stack of ~11 costs about what a few alone do.
GPU_SPEEDUP_OLD = 3.25
GPU_SPEEDUP_STACKED_RETRAIN = GPU_SPEEDUP_OLD * 4


def startup_seconds() -> dict[str, float]:
    """Wall-clock of a fresh interpreter importing the CLI, and of ``--help``."""
    out = {}
    for name, args in (("import_cli", ["-c", "import fmpbench.cli"]), ("help", ["-m", "fmpbench", "--help"])):
        start = time.perf_counter()
        subprocess.run([sys.executable, *args], check=True, capture_output=True)
        out[name] = time.perf_counter() - start
    return out


def old_path(tasks: list, config: ExperimentConfig, data, results: Path) -> None:
    for task in tasks:
        for record, predictions in iter_task_outputs(task, config, data):
            write_record(results, record, predictions)


def new_path(tasks: list, config: ExperimentConfig, data, results: Path) -> None:
    with open(os.devnull, "w") as quiet:
        run_grid(tasks, config, data, results, stream=quiet, stack_retrains=True)


def breakdown(records: list[dict], wall: float) -> dict[str, float]:
    search = sum({(r["selector"], r["seed"]): r["search_seconds"] for r in records}.values())
    retrain = sum(r["retrain_seconds"] for r in records)
    selection = sum(r["selection_seconds"] for r in records)
    return {"wall": wall, "search": search, "retrain": retrain, "selection": selection,
            "evaluation_and_records": wall - search - retrain - selection}


def per_sample(records: list[dict], parts: dict[str, float], n_train: int, n_test: int) -> dict[str, float]:
    """Seconds per training row (search, per task), per training row-epoch (retrain) and per test row."""
    trained = [r for r in records if not r.get("reused_from")]
    tasks = len({(r["selector"], r["seed"]) for r in records})
    return {
        "search_per_train_row": parts["search"] / (tasks * n_train),
        "retrain_per_row_epoch": parts["retrain"] / (sum(r["epochs"] for r in trained) * n_train),
        "eval_per_test_row": parts["evaluation_and_records"] / (len(records) * n_test),
        "mean_epochs": statistics.mean(r["epochs"] for r in trained),
        "trained_share": len(trained) / len(records),
    }


def project(cost: dict[str, float], train_share: float, retrain_speedup: float, other_speedup: float) -> float:
    """Seconds of a full Criteo + Avazu study at these per-sample costs."""
    total = 0.0
    retrains = FULL_METHODS * FULL_KS
    for rows, fields in FULL.values():
        scale = fields / 23
        n_train, n_test = rows * train_share, rows * (1 - train_share) / 2
        search = FULL_METHODS * cost["search_per_train_row"] * n_train * scale / other_speedup
        retrain = (retrains * cost["trained_share"] * cost["mean_epochs"] * cost["retrain_per_row_epoch"]
                   * n_train * scale / retrain_speedup)
        evaluation = retrains * cost["eval_per_test_row"] * n_test * scale / other_speedup
        total += FULL_SEEDS * (search + retrain + evaluation)
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=40_000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    data = get_dataset("avazu", n_rows=args.rows)
    prepare_seconds = time.perf_counter() - start
    config = ExperimentConfig(dataset="avazu", n_rows=args.rows,
                              train_config=TrainConfig(max_epochs=args.epochs, patience=1))
    ks = resolve_ks(None, data.num_fields)
    walls = {"old": 0.0, "new": 0.0}
    with tempfile.TemporaryDirectory() as tmp:
        warm = get_dataset("avazu", n_rows=2000)
        warm_config = ExperimentConfig(dataset="avazu", n_rows=2000, train_config=TrainConfig(max_epochs=1))
        for name, run in (("old", old_path), ("new", new_path)):
            run(build_tasks(METHODS, [0], ks), warm_config, warm, Path(tmp, "warm", name))
        dirs = {"old": Path(tmp, "old"), "new": Path(tmp, "new")}
        for seed in range(args.seeds):
            tasks = build_tasks(METHODS, [seed], ks)
            for name, run in (("old", old_path), ("new", new_path))[:: 1 if seed % 2 == 0 else -1]:
                begin = time.perf_counter()
                run(tasks, config, data, dirs[name])
                walls[name] += time.perf_counter() - begin
                print(f"seed {seed} {name} path: {time.perf_counter() - begin:.1f}s", flush=True)
        records = {name: sorted(iter_records(path), key=lambda r: r["run_id"]) for name, path in dirs.items()}
    startup = startup_seconds()
    n_train, n_test = len(data.train), len(data.test)
    parts = {name: breakdown(records[name], walls[name]) for name in walls}
    costs = {name: per_sample(records[name], parts[name], n_train, n_test) for name in walls}
    old_auc = {r["run_id"]: r["test_auc"] for r in records["old"]}
    diffs = [r["test_auc"] - old_auc[r["run_id"]] for r in records["new"]]
    by_row: dict[tuple, list[float]] = {}
    for r in records["old"]:
        by_row.setdefault((r["method"], r["k"]), []).append(r["test_auc"])
    seed_sd = statistics.mean(statistics.stdev(v) for v in by_row.values() if len(v) > 1)
    train_share = n_train / args.rows
    projection = {
        "cpu_days": {name: project(costs[name], train_share, 1.0, 1.0) / 86400 for name in walls},
        "gpu_days_assumed": {
            "old": project(costs["old"], train_share, GPU_SPEEDUP_OLD, GPU_SPEEDUP_OLD) / 86400,
            "new": project(costs["new"], train_share, GPU_SPEEDUP_STACKED_RETRAIN, GPU_SPEEDUP_OLD) / 86400,
        },
        "gpu_speedups_assumed": {"old": GPU_SPEEDUP_OLD, "new_retrain": GPU_SPEEDUP_STACKED_RETRAIN,
                                 "search_and_eval": GPU_SPEEDUP_OLD},
    }
    out = {
        "study": {"dataset": "avazu stand-in", "rows": args.rows, "train_rows": n_train, "methods": METHODS,
                  "ks": list(ks), "seeds": args.seeds, "max_epochs": args.epochs, "threads": args.threads,
                  "runs": len(records["new"])},
        "ratio_new_over_old": walls["new"] / walls["old"],
        "breakdown_seconds": parts,
        "startup_seconds": startup,
        "data_generation_seconds": prepare_seconds,
        "per_sample": costs,
        "reused_retrains": sum(bool(r.get("reused_from")) for r in records["new"]),
        "stack_sizes": sorted({r.get("stack_size", 1) for r in records["new"] if not r.get("reused_from")}),
        "test_auc": {"mean_old": float(np.mean(list(old_auc.values()))),
                     "mean_new": float(np.mean([r["test_auc"] for r in records["new"]])),
                     "mean_diff": float(np.mean(diffs)), "mean_abs_diff": float(np.mean(np.abs(diffs))),
                     "seed_sd": seed_sd},
        "projection": projection,
    }
    print(f"\nstudy: {len(METHODS)} methods × k={list(ks)} × {args.seeds} seeds on {args.rows} Avazu-stand-in rows "
          f"({len(records['new'])} runs), ≤{args.epochs} epochs, {args.threads} thread")
    print(f"wall-clock: old {walls['old']:.1f}s, new {walls['new']:.1f}s → new/old = {out['ratio_new_over_old']:.2f}")
    for name in walls:
        p = parts[name]
        print(f"  {name}: search {p['search']:.1f}s, retrain {p['retrain']:.1f}s, selection {p['selection']:.1f}s, "
              f"evaluation+records {p['evaluation_and_records']:.1f}s")
    print(f"  new path: {out['reused_retrains']} retrains reused, stack sizes {out['stack_sizes']}")
    print(f"start-up (once per process): import fmpbench.cli {startup['import_cli']:.1f}s, "
          f"--help {startup['help']:.1f}s; data generation {prepare_seconds:.1f}s")
    t = out["test_auc"]
    print(f"test AUC: old {t['mean_old']:.4f}, new {t['mean_new']:.4f}; paired diff mean {t['mean_diff']:+.4f}, "
          f"mean |diff| {t['mean_abs_diff']:.4f}; seed-to-seed sd {t['seed_sd']:.4f}")
    cpu, gpu = projection["cpu_days"], projection["gpu_days_assumed"]
    print(f"full Criteo+Avazu study (11 methods × 5 seeds × 3 k): this machine old {cpu['old']:.1f} d, "
          f"new {cpu['new']:.1f} d; one GPU (assumed {GPU_SPEEDUP_OLD}× old, {GPU_SPEEDUP_STACKED_RETRAIN}× "
          f"stacked retrains, NOT measured) old {gpu['old']:.1f} d, new {gpu['new']:.1f} d")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
