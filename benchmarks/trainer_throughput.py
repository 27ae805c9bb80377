"""Trainer throughput against the compute floor, under contention, and against the GEMM bound.

Measured in one run on a Criteo-shaped synthetic set (39 fields, power-law ids):
1. samples/s of ``Trainer.fit`` for whole epochs of at least ``FIT_STEPS`` steps (batch gathering,
   optimiser, end-of-epoch validation; one epoch until session 9: the ERASE size's 44 steps, of
   which the thread governor's warm-up and first probe took 20, put trainer / floor at 0.65-0.83);
2. samples/s of the same model's training step on pre-built in-memory batches (up to 200 distinct
   batches of random rows, so the optimiser touches ids across the whole table as in training) —
   the compute floor of this model; the ratio 1/2 is the trainer's efficiency;
3. the floor's step time at total vocabulary 10 k and 1 M with the same batches (the 1 M ids are the
   10 k ids spread over a 100× larger table, so only the table size changes): sparse updates should
   make them about equal, up to cache misses (a 10 k table stays in cache; a row-traffic-bound step
   such as the ERASE size's feels that); a dense optimiser would be ~100× slower at 1 M. 1-3
   alternate in ``HEADLINE_ROUNDS`` rounds, and their ratios are the medians of the rounds';
4. at 1 and 2 threads, quiet and while a second process (a busy loop this script starts and stops)
   keeps one core busy: the floor's step at a fixed thread count, and ``Trainer.fit``'s samples/s
   over at least ``FIT_STEPS`` steps, whose thread governor runs a 2-thread fit at whichever of 1
   and 2 threads is faster — on a shared host the 2-thread trainer must not be slower than the
   1-thread one: each pair's 2 / 1 ratio, and the 95 % interval of their geometric mean (whether a
   difference is more than the host's drift). A child process repeats the
   busy 2-thread default step with libgomp's spinning wait (``GOMP_SPINCOUNT=300000``, what torch
   does without fmpbench's ``OMP_WAIT_POLICY=PASSIVE``);
5. for the default model, where its quiet 1-thread step goes (forward + loss, backward, row-sparse
   Adam, dense Adam) and its GEMM bound: the MLP's dense forward and backward matmuls alone at that
   batch, timed in the same run; bound / step is how close the step is to its floor — also with
   torch's own dropout masks (``TrainConfig(fast_dropout=False)``; the committed study also ran the
   unfused dense Adam, ``fused_adam=False``).
   Beside it the rows' memory traffic alone (``row_traffic_seconds``), and (GEMM + rows) / step.
   Step and bounds alternate in ``BOUND_ROUNDS`` rounds and the ratio is the median of the rounds'
   (measured one after the other, as until session 7, a noisy patch of the host's hit one of them).
Two model sizes: ERASE's default (embedding 8, MLP 16-16, dropout 0.2, batch 4096 — ERASE trains it
at ~39,000 samples/s on this kind of machine) and fmpbench's default MLP. Shared machines are noisy:
read the ratios of one run, not absolute figures across runs.

Usage: python benchmarks/trainer_throughput.py [--rows 1000000] [--quick] [--json out.json]
"""

from __future__ import annotations

# isort: off
import fmpbench  # noqa: F401 - first: sets the OpenMP wait policy before torch loads libgomp

# isort: on

import argparse
import contextlib
import json
import math
import os
import subprocess
import sys
import time
from collections.abc import Iterator

import numpy as np
import torch
from scipy import stats
from torch import nn

from fmpbench.data.prepared import Split
from fmpbench.models import build_backbone
from fmpbench.models.backbones import Dropout
from fmpbench.training import SplitTensors, TrainConfig, Trainer, TrainHooks
from fmpbench.training.optim import merge_duplicate_rows, widest_view
from fmpbench.training.trainer import make_optimizers

NUM_FIELDS = 39
PREBUILT_BATCHES = 200
ERASE_SAMPLES_PER_SECOND = 39_000
ERASE, DEFAULT = "erase-size (d=8, 16-16, batch 4096)", "fmpbench default (d=16, 256-128, batch 512)"
MODELS = {
    ERASE: ({"embed_dim": 8, "hidden": (16, 16), "dropout": 0.2}, 4096),
    DEFAULT: ({}, 512),
}
PHASES = ("forward_loss", "backward", "sparse_adam", "dense_adam")
#: fits per thread count and host state in the contention figures (a busy host's runs vary ±15 %); 9
#: pairs put the 95 % interval of their 2 / 1 ratio at about ±5 % (5 pairs: ±10 %, session 9)
FIT_REPEATS = 9
#: steps of each of those fits at least (whole epochs): the governor's warm-up and first probe take 20
#: steps, half of them at the slower count — ~5 % of the ERASE size's one-epoch, 44-step fit until
#: session 8, against 8 of every 500 steps in a real epoch of thousands
FIT_STEPS = 160
#: rounds of the default model's step phases and GEMM bound (alternating, so drift hits both alike)
BOUND_ROUNDS = 5
#: rounds of floor, trainer and the 10 k / 1 M steps (alternating; ratios are medians of each round's)
HEADLINE_ROUNDS = 3


def criteo_shaped(rows: int, total_vocab: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """Ids with Criteo-like skew: field sizes spread log-uniformly, power-law id frequencies."""
    rng = np.random.default_rng(seed)
    weights = np.exp(rng.uniform(np.log(4), np.log(total_vocab / 4), NUM_FIELDS))
    dims = np.maximum(2, (weights / weights.sum() * total_vocab).astype(np.int64))
    X = np.empty((rows, NUM_FIELDS), dtype=np.int32)
    for f, dim in enumerate(dims):
        X[:, f] = np.minimum((dim * rng.random(rows) ** 2.5).astype(np.int64), dim - 1)
    y = (rng.random(rows) < 0.25).astype(np.float32)
    return X, y, dims.tolist()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@contextlib.contextmanager
def busy_core(busy: bool) -> Iterator[None]:
    """A second process spinning on one core for the duration (nothing when ``busy`` is false)."""
    if not busy:
        yield
        return
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.2)  # let it start spinning before the clock starts
        yield
    finally:
        spinner.kill()
        spinner.wait()


@contextlib.contextmanager
def threads(n: int) -> Iterator[None]:
    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def prebuilt_batches(
    X: np.ndarray, y: np.ndarray, batch_size: int, device: torch.device
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Up to ``PREBUILT_BATCHES`` batches of random rows (the same ones for every measurement)."""
    rng = np.random.default_rng(1)
    batches = []
    for _ in range(min(PREBUILT_BATCHES, len(X) // batch_size)):
        rows = rng.choice(len(X), size=batch_size, replace=False)
        batches.append((torch.from_numpy(X[rows]).to(device), torch.from_numpy(y[rows]).to(device)))
    return batches


def phase_seconds(
    params: dict, batch_size: int, X: np.ndarray, y: np.ndarray, dims: list[int], device: torch.device, steps: int,
    fast_dropout: bool = True,
) -> np.ndarray:
    """Seconds of each phase (``PHASES``) of ``steps`` training steps on pre-built batches, [steps, 4]."""
    torch.manual_seed(0)
    model = build_backbone("mlp", dims, **params).to(device).train()
    if fast_dropout:  # what Trainer does with TrainConfig(fast_dropout=True), the default
        masks = torch.Generator(device).manual_seed(0)
        for module in model.modules():
            if isinstance(module, Dropout):
                module.generator = masks
    sparse_opt, dense_opt = make_optimizers(model, TrainConfig(), TrainHooks())
    batches = prebuilt_batches(X, y, batch_size, device)
    loss_fn = nn.BCEWithLogitsLoss()
    warmup = 5
    times = np.zeros((steps, len(PHASES)))
    for i in range(steps + warmup):
        x, target = batches[i % len(batches)]
        marks = [time.perf_counter()]
        loss = loss_fn(model(x), target)
        _sync(device)
        marks.append(time.perf_counter())
        sparse_opt.zero_grad(set_to_none=True)
        dense_opt.zero_grad(set_to_none=True)
        loss.backward()
        _sync(device)
        marks.append(time.perf_counter())
        sparse_opt.step()
        _sync(device)
        marks.append(time.perf_counter())
        dense_opt.step()
        _sync(device)
        marks.append(time.perf_counter())
        if i >= warmup:
            times[i - warmup] = np.diff(marks)
    return times


def step_seconds(*args: object, **kwargs: object) -> float:
    """Median seconds of one whole step (median: a busy host's stalls hit single steps)."""
    return float(np.median(phase_seconds(*args, **kwargs).sum(1)))


def gemm_bound_seconds(params: dict, batch_size: int, num_fields: int, repeats: int = 30) -> float:
    """Seconds of the MLP's dense matmuls alone for one step: forward, and backward to weights and inputs."""
    embed, hidden = params.get("embed_dim", 16), list(params.get("hidden", (256, 128)))
    widths = [num_fields * embed] + hidden + [1]
    gen = torch.Generator().manual_seed(0)
    layers = [
        (torch.randn(batch_size, i, generator=gen), torch.randn(o, i, generator=gen),
         torch.randn(batch_size, o, generator=gen))
        for i, o in zip(widths[:-1], widths[1:])
    ]

    def matmuls() -> None:
        for x, w, grad_out in layers:
            x @ w.T  # forward
            grad_out.T @ x  # weight gradient
            grad_out @ w  # input gradient (the first layer's feeds the embeddings)

    matmuls()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        matmuls()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def row_traffic_seconds(
    params: dict, batch_size: int, X: np.ndarray, y: np.ndarray, dims: list[int], device: torch.device, steps: int,
) -> float:
    """Median seconds a step of the embedding rows' memory traffic alone: the forward's gather of the
    batch's ids, and the lazy Adam's gather and write-back of each distinct row's weight and both
    moments (side by side in one table, as ``RowSparseAdam`` keeps them, written as wide elements) — what
    a row-wise update cannot avoid, its rows scattered over a table many times the size of the cache."""
    embedding = build_backbone("mlp", dims, **params).embedding
    table = torch.zeros((embedding.table.weight.shape[0], 3, embedding.dim), device=device)
    weight, wide = table[:, 0], widest_view(table.view(table.shape[0], -1))
    slot = torch.empty(table.shape[0], dtype=torch.long, device=device)
    work = []
    for x, _ in prebuilt_batches(X, y, batch_size, device):
        ids = (x.long() + embedding.offsets.to(device)).flatten()
        work.append((ids, merge_duplicate_rows(ids, weight.new_zeros(ids.numel(), 1), slot)[0]))
    times = []
    for i in range(steps + 5):
        ids, rows = work[i % len(work)]
        start = time.perf_counter()
        weight.index_select(0, ids)
        gathered = table.index_select(0, rows)
        wide.index_copy_(0, rows, gathered.view(rows.numel(), -1).view(wide.dtype))
        _sync(device)
        if i >= 5:
            times.append(time.perf_counter() - start)
    return float(np.median(times))


def ratio_interval(ratios: np.ndarray, confidence: float = 0.95) -> list[float]:
    """Student-t interval of the geometric mean of paired ratios: whether 2 threads are slower than 1
    beyond the host's drift, which a single ratio cannot tell (pairs ran 0.87-1.10 within one run)."""
    logs = np.log(ratios)
    low, high = stats.t.interval(confidence, len(logs) - 1, loc=logs.mean(), scale=stats.sem(logs))
    return [round(float(np.exp(low)), 3), round(float(np.exp(high)), 3)]


def median_ratio(numerators: object, denominators: object) -> float:
    """The median of per-round ratios (rounded): drift within a round hits both sides alike."""
    return round(float(np.median(np.divide(numerators, denominators))), 3)


def bound_rounds(
    params: dict, batch: int, X: np.ndarray, y: np.ndarray, dims: list[int], device: torch.device, steps: int,
) -> dict[str, object]:
    """The quiet 1-thread step's phases, the same step with torch's dropout masks, the GEMM bound and
    the rows' traffic, measured in ``BOUND_ROUNDS`` rounds of all four (a few seconds each), so that
    the host's drift hits step and bounds alike: medians over rounds, and bound / step as the median
    of each round's ratio."""
    phases, torch_steps, bounds, traffic = [], [], [], []
    with threads(1):
        for _ in range(BOUND_ROUNDS):
            phases.append(np.median(phase_seconds(params, batch, X, y, dims, device, steps), axis=0))
            torch_masks = phase_seconds(params, batch, X, y, dims, device, steps, fast_dropout=False)
            torch_steps.append(float(np.median(torch_masks.sum(1))))
            bounds.append(gemm_bound_seconds(params, batch, NUM_FIELDS))
            traffic.append(row_traffic_seconds(params, batch, X, y, dims, device, steps))
    steps_s = [float(p.sum()) for p in phases]
    both = np.add(bounds, traffic)
    return {
        "quiet_1t_phase_ms": {name: round(float(t) * 1e3, 2) for name, t in zip(PHASES, np.median(phases, axis=0))},
        "gemm_bound_ms_1t": round(float(np.median(bounds)) * 1e3, 2),
        "gemm_bound_over_step_1t": median_ratio(bounds, steps_s),
        "gemm_bound_over_step_1t_each_round": [round(b / t, 3) for b, t in zip(bounds, steps_s)],
        "row_traffic_ms_1t": round(float(np.median(traffic)) * 1e3, 2),
        "gemm_and_rows_bound_over_step_1t": median_ratio(both, steps_s),
        "step_ms_1t_quiet_torch_dropout": round(float(np.median(torch_steps)) * 1e3, 2),
        "gemm_bound_over_step_1t_torch_dropout": median_ratio(bounds, torch_steps),
    }


def trainer_samples_per_second(
    params: dict, batch_size: int, X: np.ndarray, y: np.ndarray, dims: list[int], device: torch.device,
    min_steps: int = 1,
) -> float:
    """Training samples/s of a ``Trainer.fit`` (validation included) of enough epochs for ``min_steps``."""
    n_valid = len(X) // 10
    train = SplitTensors(Split(X[n_valid:], y[n_valid:]), device)
    valid = SplitTensors(Split(X[:n_valid], y[:n_valid]), device)
    torch.manual_seed(0)
    model = build_backbone("mlp", dims, **params)
    config = TrainConfig(batch_size=batch_size, device=str(device))
    epochs = max(1, math.ceil(min_steps / math.ceil(len(train) / batch_size)))
    result = Trainer(config).fit(model, train, valid, max_epochs=epochs, early_stopping=False)
    return epochs * len(train) / result.seconds


def spinning_child_step_ms(rows: int, vocab: int, steps: int) -> float | None:
    """The busy 2-thread default step in a child whose OpenMP threads spin (libgomp's default)."""
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    env["GOMP_SPINCOUNT"] = "300000"
    command = [sys.executable, __file__, "--spinning-child", "--rows", str(rows), "--vocab", str(vocab),
               "--steps", str(steps)]
    out = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    return float(out.stdout.split()[-1]) if out.returncode == 0 and out.stdout.split() else None


def contention(
    params: dict, batch: int, X: np.ndarray, y: np.ndarray, dims: list[int], device: torch.device, steps: int,
    trainer_rows: int,
) -> dict[str, object]:
    """At 1 and 2 threads, quiet and beside a busy core: the floor's step ms at a fixed thread count,
    and ``Trainer.fit``'s samples/s (``trainer_rows`` rows, ≥ ``FIT_STEPS`` steps, median of ``FIT_REPEATS``),
    whose ``ThreadGovernor`` runs a 2-thread fit at whichever count is faster. 1 and 2 threads
    alternate (1, 2, 2, 1, ...), so drift hits both."""
    out: dict[str, object] = {}
    Xt, yt = X[:trainer_rows], y[:trainer_rows]
    for busy in (False, True):
        state = "busy" if busy else "quiet"
        with busy_core(busy):
            for n in (1, 2):
                with threads(n):
                    step = step_seconds(params, batch, X, y, dims, device, steps)
                    out[f"step_ms_{n}t_{state}"] = round(step * 1e3, 2)
            fits: dict[int, list[float]] = {1: [], 2: []}
            for n in (1, 2, 2, 1) * (FIT_REPEATS // 2) + (1, 2) * (FIT_REPEATS % 2):
                with threads(n):
                    fits[n].append(trainer_samples_per_second(params, batch, Xt, yt, dims, device, FIT_STEPS))
            for n, rates in fits.items():
                out[f"trainer_samples_per_s_{n}t_{state}"] = round(float(np.median(rates)))
            # each alternation's 2 / 1 ratio (fits k of each count ran next to each other): the run's spread
            pairs = np.divide(fits[2], fits[1])
            out[f"2t_over_1t_trainer_{state}_each_pair"] = np.round(pairs, 3).tolist()
            out[f"2t_over_1t_trainer_{state}_ci95"] = ratio_interval(pairs)
    for state in ("quiet", "busy"):
        out[f"2t_over_1t_step_{state}"] = round(out[f"step_ms_1t_{state}"] / out[f"step_ms_2t_{state}"], 3)
        out[f"2t_over_1t_trainer_{state}"] = round(
            out[f"trainer_samples_per_s_2t_{state}"] / out[f"trainer_samples_per_s_1t_{state}"], 3)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--vocab", type=int, default=841_602, help="total ids of the throughput set (ERASE's)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--steps", type=int, default=60, help="timed steps per floor measurement")
    parser.add_argument("--quick", action="store_true", help="200k rows, 30 steps, one trainer epoch per model")
    parser.add_argument("--json", default=None)
    parser.add_argument("--spinning-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick:
        args.rows, args.steps = min(args.rows, 200_000), min(args.steps, 30)
    device = torch.device(args.device)
    X, y, dims = criteo_shaped(args.rows, args.vocab)
    params, batch = MODELS[DEFAULT]
    if args.spinning_child:
        with busy_core(True), threads(2):
            print(step_seconds(params, batch, X, y, dims, device, args.steps) * 1e3)
        return
    X10k, _, dims10k = criteo_shaped(200_000, 10_000, seed=1)
    spread = 100
    X1m, dims1m = X10k * spread, [d * spread for d in dims10k]
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{torch.get_num_threads()} CPU threads"
    print(f"torch {torch.__version__}, {where}, {args.rows:,} rows, vocabulary {sum(dims):,}, "
          f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}")
    results = []
    for label, (params, batch) in MODELS.items():
        # floor, trainer and the two vocabularies' steps alternate in rounds: measured once each, one after
        # the other (until session 8), the host's drift put trainer / floor anywhere in 0.80-1.16
        rounds = np.array([
            (batch / step_seconds(params, batch, X, y, dims, device, args.steps),
             trainer_samples_per_second(params, batch, X, y, dims, device, FIT_STEPS),
             step_seconds(params, batch, X10k, y, dims10k, device, args.steps),
             step_seconds(params, batch, X1m, y, dims1m, device, args.steps))
            for _ in range(HEADLINE_ROUNDS)
        ])
        floor, trainer, step_10k, step_1m = np.median(rounds, axis=0)
        row = {
            "model": label,
            "trainer_samples_per_s": round(trainer),
            "floor_samples_per_s": round(floor),
            "trainer_over_floor": median_ratio(rounds[:, 1], rounds[:, 0]),
            "trainer_over_floor_each_round": np.round(rounds[:, 1] / rounds[:, 0], 3).tolist(),
            "vs_erase_39k": round(trainer / ERASE_SAMPLES_PER_SECOND, 2),
            "step_ms_vocab_10k": round(step_10k * 1e3, 2),
            "step_ms_vocab_1m": round(step_1m * 1e3, 2),
            "step_1m_over_10k": median_ratio(rounds[:, 3], rounds[:, 2]),
            "step_1m_over_10k_each_round": np.round(rounds[:, 3] / rounds[:, 2], 3).tolist(),
        }
        if device.type == "cpu":
            row.update(contention(params, batch, X, y, dims, device, args.steps, min(args.rows, 200_000)))
        if device.type == "cpu" and label == DEFAULT:
            row.update(bound_rounds(params, batch, X, y, dims, device, args.steps))
            spinning = spinning_child_step_ms(args.rows, args.vocab, min(args.steps, 10))  # ~1-2 s a step
            row["step_ms_2t_busy_spinning_openmp"] = None if spinning is None else round(spinning, 2)
        results.append(row)
        print(json.dumps(row))
    if args.json:
        with open(args.json, "w") as handle:
            summary = {"rows": args.rows, "vocabulary": sum(dims), "device": where, "results": results}
            json.dump(summary, handle, indent=1)


if __name__ == "__main__":
    main()
