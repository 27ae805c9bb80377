"""What a study costs, old path against new, in one run: and what a full-size study would cost.

The study: 6 methods (none, random, lasso, pca, permutation, sfs) × 3 k (F/4, F/2, 3F/4) × 2 seeds
on the Avazu stand-in, default backbone (MLP 256-128, embedding 16), at most ``--epochs`` epochs.
Shrunk to fit one run in ≤ 10 minutes on a 2-core host: ``--rows`` 40 k instead of 200 k, 3 epochs
instead of 30 (patience 1). Before timing, every path runs once on 2,000 rows, so that first-call
costs (imports, allocator, thread pools) hit none of them.

Five paths, each the whole study, in the order old/1, new/1, new/2, old/2, cold/2 (reversed in
every other repeat) so that drifting load hits both sides:

* **old/1** — ``run --jobs 1`` before issue 15: each task on its own (``iter_task_outputs`` with a
  ledger of its own task, so no reuse across methods), every retrain trained alone, all cores' threads;
* **new/1** — ``run --jobs 1`` now: ``run_grid(stack_retrains=True)``: identical retrains reused (the
  grid's ``RetrainLedger``), each k's retrains of all methods of a seed trained as one stack;
* **new/2** — ``run --jobs 2`` now: two processes of one thread, each stacking one seed's retrains;
* **old/2** — ``run --jobs 2 --no-stack-retrains``: two processes, every retrain alone (this grid
  has no identical retrains, so the ledger it keeps changes nothing here; checked below).
* **cold/2** — new/2 as the first grid of a process: the ``--jobs`` workers' fork server
  (:func:`fmpbench.lifetime.worker_context`) is stopped first, so the worker waits for it to import the
  grid (~5 s). Every other /2 path finds the server started, as a study's later sections and a
  session's later grids do; until session 7 every grid spawned workers that imported the grid.

Each path runs ``--repeats`` times (the order reversed each time; the host is noisy, ±20 % from run
to run); wall-clock is the mean. From the records (means over the runs): search, retrain and selection seconds;
the rest of a /1 path's wall-clock is evaluation (test AUC, FLOPs, latency) and record writing (in
the /2 paths the record seconds of two processes overlap, so they sum to more than the wall-clock).
Start-up (``import fmpbench.cli`` and ``--help`` in a fresh interpreter) is measured once; every
process of a study pays it once.

**The floor.** Whatever a path does with the retrains, their matrix products remain: the records'
forward FLOPs per sample × 3 (forward and backward) × training rows × epochs, plus one forward over
the validation split per epoch, at the best GEMM throughput of this machine (measured at 2 threads,
or twice the 1-thread figure for two processes, not measured). The searches are the same work in
every path. So the lowest ratio a faster retrain scheme could reach against old/1 is (old/1's
searches + evaluation + the retrains' GEMM time) / old/1 with the searches one after another, and
(old/2's search process-seconds / 2 + evaluation + GEMM time) / old/1 with two processes sharing them.

Projection of a full Criteo + Avazu study (11 methods, 5 seeds, 3 k; 45 M and 40 M rows) from the
measured per-sample costs of the /1 paths: searches and retrains scale with training rows × epochs
and with the number of fields (Criteo 39, Avazu 23: per-sample costs × F / 23), evaluation with test
rows; the epochs and the share of reused retrains are this run's; a /2 path is its /1 path's
projection times their measured wall-clock ratio, and also ("balanced") its own per-sample
process-seconds shared evenly by two processes — without the worker's start-up (~5 s) and the idle
tail, which this small study's wall-clock holds (printed) and a full-size one, with hours per unit,
does not. The GPU figure divides by assumed
speed-ups (printed, not measured: no GPU was available).

Like ``python -m fmpbench``, this script imports fmpbench before torch (so OpenMP threads sleep when
idle) and keeps its module light for the ``--jobs`` helpers it spawns. Until session 6 it imported
torch first (its 2-thread paths ran with spinning OpenMP threads) and its module pulled in torch and
the grid, so every /2 path also waited ~3.5 s for the ledger manager to start.

Usage: python benchmarks/study_cost.py [--rows 40000] [--epochs 3] [--repeats 2]
       [--json benchmarks/results/study_cost.json]
"""

from __future__ import annotations

# isort: off
import fmpbench  # noqa: F401 - first: sets the OpenMP wait policy before torch loads libgomp

# isort: on

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fmpbench.protocol import ExperimentConfig

# torch and the grid are imported where used: a --jobs helper process (spawned) imports this file first,
# and must start as fast as it does under `python -m fmpbench`, whose main module is light

METHODS = ["none", "random", "lasso", "pca", "permutation", "sfs"]
FULL = {"criteo": (45_000_000, 39), "avazu": (40_000_000, 23)}
FULL_METHODS, FULL_SEEDS, FULL_KS = 11, 5, 3
#: assumed GPU speed-ups over this machine (not measured). Old path: the project's own extrapolation
#: (≈ 13 days on this machine, ≈ 4 on one H100). Stacked retrains: a further 4× because the default
#: model at batch 512 leaves a GPU mostly idle, so a stack of ~11 costs about what a few alone do.
GPU_SPEEDUP_OLD = 3.25
GPU_SPEEDUP_STACKED_RETRAIN = GPU_SPEEDUP_OLD * 4


def startup_seconds() -> dict[str, float]:
    """Wall-clock of a fresh interpreter importing the CLI, of ``--help``, and of importing what a
    ``--jobs`` worker loads before its first task (the grid: torch, the selectors)."""
    out = {}
    commands = (("import_cli", ["-c", "import fmpbench.cli"]), ("help", ["-m", "fmpbench", "--help"]),
                ("import_worker", ["-c", "import fmpbench.grid"]))
    for name, args in commands:
        start = time.perf_counter()
        subprocess.run([sys.executable, *args], check=True, capture_output=True)
        out[name] = time.perf_counter() - start
    return out


PATHS = ("old/1", "new/1", "new/2", "old/2", "cold/2")
TWO_PROCESS_PATHS = tuple(name for name in PATHS if name.endswith("/2"))


def stop_worker_server() -> None:
    """Stop the ``--jobs`` workers' fork server, as if this were a fresh process (a private function of
    ``multiprocessing``, the one its own tests use; the next pool starts a new server)."""
    from multiprocessing import forkserver

    forkserver._forkserver._stop()


def run_path(name: str, tasks: list, config: ExperimentConfig, data, results: Path) -> None:
    """One path of the docstring's five over ``tasks``; records go to ``results``."""
    from fmpbench.grid import run_grid
    from fmpbench.protocol import iter_task_outputs
    from fmpbench.results import write_record

    kind, jobs = name.split("/")
    if name == "old/1":
        for task in tasks:
            for record, predictions in iter_task_outputs(task, config, data):
                write_record(results, record, predictions)
        return
    if kind == "cold":
        stop_worker_server()
    with open(os.devnull, "w") as quiet:
        run_grid(tasks, config, data, results, stream=quiet, stack_retrains=kind != "old", jobs=int(jobs))


def gemm_gflops() -> dict[str, float]:
    """Best sustained float32 GEMM throughput of this machine at 1 and 2 threads, over the default model's
    layer shapes at batch 512 and a 5-model stack (the fastest shape is what a floor may assume)."""
    import torch

    out = {}
    previous = torch.get_num_threads()
    for threads in (1, 2):
        torch.set_num_threads(threads)
        best = 0.0
        for rows, inner, outer in ((512, 192, 256), (512, 256, 128), (2560, 192, 256), (2560, 256, 128)):
            a, b = torch.randn(rows, inner), torch.randn(inner, outer)
            for _ in range(10):
                a @ b
            reps, begin = 200, time.perf_counter()
            for _ in range(reps):
                a @ b
            best = max(best, 2 * rows * inner * outer * reps / (time.perf_counter() - begin) / 1e9)
        out[f"{threads}_thread"] = best
    torch.set_num_threads(previous)
    out["machine"] = max(out["2_thread"], 2 * out["1_thread"])  # two 1-thread processes: assumed, not measured
    return out


def retrain_gemm_seconds(records: list[dict], n_train: int, n_valid: int, gflops: float) -> float:
    """Seconds the trained retrains' matrix products take at ``gflops``: forward and backward over the
    training rows and a forward over the validation rows, every epoch."""
    flops = sum(r["flops_per_sample"] * r["epochs"] * (3 * n_train + n_valid)
                for r in records if not r.get("reused_from"))
    return flops / (gflops * 1e9)


def breakdown(records: list[dict], wall: float, processes: int) -> dict[str, float | None]:
    """Seconds of searches, retrains and selection from the records (summed over ``processes``); for one
    process the rest of the wall-clock is evaluation and record writing, for more it is not known."""
    search = sum({(r["selector"], r["seed"]): r["search_seconds"] for r in records}.values())
    retrain = sum(r["retrain_seconds"] for r in records)
    selection = sum(r["selection_seconds"] for r in records)
    rest = wall - search - retrain - selection if processes == 1 else None
    return {"wall": wall, "search": search, "retrain": retrain, "selection": selection, "evaluation_and_records": rest}


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
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch threads of the /1 paths")
    parser.add_argument("--repeats", type=int, default=2, help="runs of each path, the order reversed each time")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    import torch

    from fmpbench.data import get_dataset
    from fmpbench.grid import build_tasks, resolve_ks
    from fmpbench.protocol import ExperimentConfig
    from fmpbench.results import iter_records
    from fmpbench.training import TrainConfig

    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    data = get_dataset("avazu", n_rows=args.rows)
    prepare_seconds = time.perf_counter() - start
    config = ExperimentConfig(dataset="avazu", n_rows=args.rows,
                              train_config=TrainConfig(max_epochs=args.epochs, patience=1))
    ks = resolve_ks(None, data.num_fields)
    tasks = build_tasks(METHODS, list(range(args.seeds)), ks)
    runs: dict[str, list[float]] = {name: [] for name in PATHS}
    with tempfile.TemporaryDirectory() as tmp:
        warm = get_dataset("avazu", n_rows=2000)
        warm_config = ExperimentConfig(dataset="avazu", n_rows=2000, train_config=TrainConfig(max_epochs=1))
        for name in PATHS:
            run_path(name, build_tasks(METHODS, [0, 1], ks), warm_config, warm, Path(tmp, "warm", name))
        for repeat in range(args.repeats):
            for name in PATHS[:: 1 if repeat % 2 == 0 else -1]:
                folder = Path(tmp, name if repeat == 0 else f"{name}-{repeat}")
                begin = time.perf_counter()
                run_path(name, tasks, config, data, folder)
                runs[name].append(time.perf_counter() - begin)
                print(f"{name}: {runs[name][-1]:.1f}s", flush=True)
        every = {name: [sorted(iter_records(Path(tmp, name if r == 0 else f"{name}-{r}")), key=lambda x: x["run_id"])
                        for r in range(args.repeats)] for name in PATHS}
    records = {name: every[name][0] for name in PATHS}
    walls = {name: statistics.mean(times) for name, times in runs.items()}
    startup = startup_seconds()
    gflops = gemm_gflops()
    n_train, n_valid, n_test = len(data.train), len(data.valid), len(data.test)
    parts: dict[str, dict[str, float | None]] = {}
    for name in PATHS:
        processes = int(name.split("/")[1])
        each = [breakdown(recs, wall, processes) for recs, wall in zip(every[name], runs[name])]
        parts[name] = {part: None if each[0][part] is None else statistics.mean(e[part] for e in each)
                       for part in each[0]}
    costs = {name: per_sample(records[name], parts[name], n_train, n_test) for name in ("old/1", "new/1")}
    base = parts["old/1"]
    gemm = retrain_gemm_seconds(records["old/1"], n_train, n_valid, gflops["machine"])
    floor = (base["search"] + base["evaluation_and_records"] + gemm) / base["wall"]
    # with the searches also spread perfectly over two processes (old/2's search process-seconds / 2)
    floor_two = (parts["old/2"]["search"] / 2 + base["evaluation_and_records"] + gemm) / base["wall"]
    old_auc = {r["run_id"]: r["test_auc"] for r in records["old/1"]}
    by_row: dict[tuple, list[float]] = {}
    for r in records["old/1"]:
        by_row.setdefault((r["method"], r["k"]), []).append(r["test_auc"])
    seed_sd = statistics.mean(statistics.stdev(v) for v in by_row.values() if len(v) > 1)
    auc = {}
    for name in PATHS:
        diffs = [r["test_auc"] - old_auc[r["run_id"]] for r in records[name]]
        auc[name] = {"mean": statistics.mean(r["test_auc"] for r in records[name]),
                     "mean_diff": statistics.mean(diffs), "mean_abs_diff": statistics.mean(map(abs, diffs))}
    train_share = n_train / args.rows
    cpu_days = {name: project(costs[name], train_share, 1.0, 1.0) / 86400 for name in costs}
    balanced_days, idle = {}, {}
    for name in TWO_PROCESS_PATHS:  # the /1 projection of the same path, times the measured wall ratio
        single = "old/1" if name == "old/2" else "new/1"
        cpu_days[name] = cpu_days[single] * walls[name] / walls[single]
        # and from the path's own process-seconds shared evenly by the two processes: no worker start-up and
        # no idle tail, which at this size are a tenth of the wall and at full size a rounding error
        # (evaluation taken from the /1 path: a /2 worker's is not separated from its record writing)
        own = {**parts[name], "evaluation_and_records": parts[single]["evaluation_and_records"]}
        own_cost = per_sample(records[name], own, n_train, n_test)
        balanced_days[name] = project(own_cost, train_share, 1.0, 1.0) / 2 / 86400
        work = own["search"] + own["retrain"] + own["selection"] + own["evaluation_and_records"]
        idle[name] = 2 * walls[name] - work
    projection = {
        "cpu_days": cpu_days,
        "cpu_days_two_processes_balanced": balanced_days,
        "gpu_days_assumed": {
            "old": project(costs["old/1"], train_share, GPU_SPEEDUP_OLD, GPU_SPEEDUP_OLD) / 86400,
            "new": project(costs["new/1"], train_share, GPU_SPEEDUP_STACKED_RETRAIN, GPU_SPEEDUP_OLD) / 86400,
        },
        "gpu_speedups_assumed": {"old": GPU_SPEEDUP_OLD, "new_retrain": GPU_SPEEDUP_STACKED_RETRAIN,
                                 "search_and_eval": GPU_SPEEDUP_OLD},
    }
    out = {
        "study": {"dataset": "avazu stand-in", "rows": args.rows, "train_rows": n_train, "methods": METHODS,
                  "ks": list(ks), "seeds": args.seeds, "max_epochs": args.epochs, "threads": args.threads,
                  "runs": len(records["new/1"])},
        "wall_seconds": walls,
        "wall_seconds_each_run": runs,
        "ratio_over_old_1": {name: walls[name] / walls["old/1"] for name in PATHS},
        "ratio_new_2_over_old_2": walls["new/2"] / walls["old/2"],
        "breakdown_seconds": parts,
        "gemm_gflops": gflops,
        "retrain_gemm_floor_seconds": gemm,
        "floor_ratio_over_old_1": floor,
        "floor_ratio_over_old_1_searches_on_two_processes": floor_two,
        "startup_seconds": startup,
        "two_process_idle_and_startup_process_seconds": idle,
        "data_generation_seconds": prepare_seconds,
        "per_sample": costs,
        "reused_retrains": {name: sum(bool(r.get("reused_from")) for r in records[name]) for name in PATHS},
        "stack_sizes": {name: sorted({r.get("stack_size") or 1 for r in records[name]}) for name in PATHS},
        "test_auc": {"paths": auc, "seed_sd": seed_sd},
        "projection": projection,
    }
    print(f"\nstudy: {len(METHODS)} methods × k={list(ks)} × {args.seeds} seeds on {args.rows} Avazu-stand-in rows "
          f"({len(records['new/1'])} runs), ≤{args.epochs} epochs; /1 paths {args.threads} threads, /2 paths two "
          f"processes of 1 thread")
    for name in PATHS:
        p = parts[name]
        rest = (f"evaluation+records {p['evaluation_and_records']:.1f}s" if name.endswith("/1")
                else "summed over both processes")
        print(f"  {name}: {walls[name]:6.1f}s = {walls[name] / walls['old/1']:.2f}× old/1 (runs "
              f"{', '.join(f'{t:.1f}' for t in runs[name])}) — search {p['search']:.1f}s, "
              f"retrain {p['retrain']:.1f}s, {rest}; "
              f"{out['reused_retrains'][name]} reused, stack sizes {out['stack_sizes'][name]}; test AUC "
              f"{auc[name]['mean']:.4f} (mean |paired diff| to old/1 {auc[name]['mean_abs_diff']:.4f})")
    print(f"  new/2 / old/2 = {out['ratio_new_2_over_old_2']:.2f}; seed-to-seed sd of test AUC {seed_sd:.4f}")
    print(f"floor: GEMM {gflops['1_thread']:.0f} GFLOP/s on 1 thread, {gflops['2_thread']:.0f} on 2 (two processes "
          f"taken as 2 × 1 thread = {gflops['machine']:.0f}) → the retrains' matrix products take ≥ {gemm:.1f}s, so "
          f"with the searches one after another ({base['search']:.1f}s, the same work in every scheme; evaluation "
          f"{base['evaluation_and_records']:.1f}s) no retrain scheme gets below {floor:.2f}× old/1; with them "
          f"perfectly shared by two processes, {floor_two:.2f}×")
    print(f"start-up: import fmpbench.cli {startup['import_cli']:.1f}s, --help {startup['help']:.1f}s (once per run), "
          f"import fmpbench.grid {startup['import_worker']:.1f}s (once per --jobs worker); data generation "
          f"{prepare_seconds:.1f}s")
    print("two processes, process-seconds not spent on searches, retrains, selection or evaluation (worker "
          "start-up, idle tail): " + ", ".join(f"{name} {idle[name]:.1f}s of {2 * walls[name]:.1f}" for name in idle))
    cpu, gpu = projection["cpu_days"], projection["gpu_days_assumed"]
    print("full Criteo+Avazu study (11 methods × 5 seeds × 3 k) on this machine: "
          + ", ".join(f"{name} {cpu[name]:.1f} d" for name in PATHS)
          + " (/2 from the measured wall ratio; balanced, without start-up and tail: "
          + ", ".join(f"{name} {balanced_days[name]:.1f} d" for name in balanced_days) + ")"
          + f"; one GPU (assumed {GPU_SPEEDUP_OLD}× old, {GPU_SPEEDUP_STACKED_RETRAIN}× stacked retrains, NOT "
          f"measured) old {gpu['old']:.1f} d, new {gpu['new']:.1f} d")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
