"""Threads against retrains on this machine: one small retrain at 1 and 2 threads, and a stack of them.

The retrains of a study are small (top-k fields, default MLP 256-128, batch 512), which is where a
second torch thread can cost more than it gains. Measured in fresh processes (OpenMP settings only
apply at start-up), on the Avazu stand-in (40 k rows, 32 k training rows), k = 12 random fields:

1. one retrain, one epoch, median of 4 after a warm-up: 1 thread; 2 threads with fmpbench's
   ``OMP_WAIT_POLICY=PASSIVE``; 2 threads spinning (``GOMP_SPINCOUNT=10000``, no wait policy) — quiet,
   and again beside a busy core (a spinning process this script starts and stops);
2. five such retrains, two epochs: one after another and as one stack
   (:func:`fmpbench.training.stacked.fit_stacked`), at 1 and 2 threads, twice each, interleaved.

Usage: python benchmarks/threads_stacking.py [--json out.json]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator

CHILD = "--child"


def _child(mode: str, threads: int) -> None:
    # isort: off
    import fmpbench  # noqa: F401 - sets the OpenMP wait policy (unless the environment set one) before torch

    # isort: on
    import numpy as np
    import torch

    from fmpbench.data import get_dataset
    from fmpbench.models import build_backbone
    from fmpbench.training import SplitTensors, TrainConfig, Trainer
    from fmpbench.training.stacked import fit_stacked

    torch.set_num_threads(threads)
    data = get_dataset("avazu", n_rows=40_000)
    rng = np.random.default_rng(0)
    sets = [np.sort(rng.choice(data.num_fields, 12, replace=False)) for _ in range(5)]
    cpu = torch.device("cpu")

    def model(fields: np.ndarray) -> torch.nn.Module:
        torch.manual_seed(0)
        return build_backbone("mlp", [data.field_dims[f] for f in fields])

    def one(fields: np.ndarray, epochs: int) -> None:
        Trainer(TrainConfig(max_epochs=epochs, patience=epochs)).fit(
            model(fields), SplitTensors(data.train, cpu, fields), SplitTensors(data.valid, cpu, fields))

    def timed(work) -> float:  # noqa: ANN001 - a callable
        begin = time.perf_counter()
        work()
        return time.perf_counter() - begin

    if mode == "single":
        one(sets[0], 1)
        print(json.dumps(sorted(timed(lambda: one(sets[0], 1)) for _ in range(4))[1:3]))
        return
    config = TrainConfig(max_epochs=2, patience=2)
    train, valid = SplitTensors(data.train, cpu), SplitTensors(data.valid, cpu)
    separate = [timed(lambda: [one(f, 2) for f in sets]) for _ in range(2)]
    stacked = [timed(lambda: fit_stacked([model(f) for f in sets], sets, train, valid, config, 0)) for _ in range(2)]
    print(json.dumps({"separate": separate, "stacked": stacked}))


def _run(mode: str, threads: int, spin: bool = False) -> object:
    """A fresh process's result; ``spin``: libgomp spins 10,000 rounds before sleeping (fmpbench then
    leaves the wait policy alone), else fmpbench's PASSIVE."""
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    if spin:
        env["GOMP_SPINCOUNT"] = "10000"
    out = subprocess.run([sys.executable, __file__, CHILD, mode, str(threads)], check=True, capture_output=True,
                         text=True, env=env)
    return json.loads(out.stdout.strip().splitlines()[-1])


@contextlib.contextmanager
def busy_core() -> Iterator[None]:
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.5)
        yield
    finally:
        spinner.kill()
        spinner.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    settings = (("1 thread", 1, False), ("2 threads, PASSIVE", 2, False), ("2 threads, spin 10000", 2, True))
    single: dict[str, dict[str, float]] = {}
    for host in ("quiet", "busy core"):
        with busy_core() if host == "busy core" else contextlib.nullcontext():
            for label, threads, spin in settings:
                median = sum(_run("single", threads, spin)) / 2  # the middle two of four
                single.setdefault(label, {})[host] = median
                print(f"one retrain, 1 epoch, {label:22} {host:9}: {median:.3f} s", flush=True)
    stack = {threads: _run("stack", threads) for threads in (1, 2)}
    for threads, times in stack.items():
        print(f"5 retrains, 2 epochs, {threads} thread(s): one after another "
              f"{', '.join(f'{t:.2f}' for t in times['separate'])} s; stacked "
              f"{', '.join(f'{t:.2f}' for t in times['stacked'])} s", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"single_retrain_s": single, "five_retrains_s": stack}, f, indent=1)
            f.write("\n")


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == CHILD:
        _child(sys.argv[2], int(sys.argv[3]))
    else:
        main()
