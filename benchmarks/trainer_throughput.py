"""Trainer throughput against the compute floor, and step time against vocabulary size.

Measured in one run on a Criteo-shaped synthetic set (39 fields, power-law ids):
1. samples/s of ``Trainer.fit`` for one epoch (batch gathering, optimiser, end-of-epoch validation);
2. samples/s of the same model's training step on pre-built in-memory batches (up to 200 distinct
   batches of random rows, so the optimiser touches ids across the whole table as in training) —
   the compute floor of this model; the ratio 1/2 is the trainer's efficiency;
3. the floor's step time at total vocabulary 10 k and 1 M with the same batches (the 1 M ids are the
   10 k ids spread over a 100× larger table, so only the table size changes): sparse updates should
   make them about equal; a dense optimiser would be ~100× slower at 1 M.
Two model sizes: ERASE's default (embedding 8, MLP 16-16, BN + dropout, batch 4096 — ERASE trains
it at ~39,000 samples/s on this kind of machine) and fmpbench's default MLP.

Usage: python benchmarks/trainer_throughput.py [--rows 1000000] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
from torch import nn

from fmpbench.data.prepared import Split
from fmpbench.models import build_backbone
from fmpbench.training import SplitTensors, TrainConfig, Trainer, TrainHooks
from fmpbench.training.trainer import make_optimizers

NUM_FIELDS = 39
PREBUILT_BATCHES = 200
ERASE_SAMPLES_PER_SECOND = 39_000
MODELS = {
    "erase-size (d=8, 16-16, batch 4096)": ({"embed_dim": 8, "hidden": (16, 16), "dropout": 0.2}, 4096),
    "fmpbench default (d=16, 256-128, batch 512)": ({}, 512),
}


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


def floor_step_seconds(
    params: dict, batch_size: int, X: np.ndarray, y: np.ndarray, dims: list[int], device: torch.device
) -> float:
    """Mean seconds of one training step on pre-built batches (no data pipeline at all)."""
    torch.manual_seed(0)
    model = build_backbone("mlp", dims, **params).to(device).train()
    optimizers = make_optimizers(model, TrainConfig(), TrainHooks())
    rng = np.random.default_rng(1)
    batches = []
    for _ in range(min(PREBUILT_BATCHES, len(X) // batch_size)):
        rows = rng.choice(len(X), size=batch_size, replace=False)
        batches.append((torch.from_numpy(X[rows]).to(device), torch.from_numpy(y[rows]).to(device)))
    loss_fn = nn.BCEWithLogitsLoss()
    times = []
    for i in range(len(batches) + 5):
        x, target = batches[i % len(batches)]
        _sync(device)
        start = time.perf_counter()
        loss = loss_fn(model(x), target)
        for opt in optimizers:
            opt.zero_grad(set_to_none=True)
        loss.backward()
        for opt in optimizers:
            opt.step()
        _sync(device)
        if i >= 5:
            times.append(time.perf_counter() - start)
    return float(np.mean(times))


def trainer_samples_per_second(
    params: dict, batch_size: int, X: np.ndarray, y: np.ndarray, dims: list[int], device: torch.device
) -> float:
    n_valid = len(X) // 10
    train = SplitTensors(Split(X[n_valid:], y[n_valid:]), device)
    valid = SplitTensors(Split(X[:n_valid], y[:n_valid]), device)
    torch.manual_seed(0)
    model = build_backbone("mlp", dims, **params)
    config = TrainConfig(batch_size=batch_size, device=str(device))
    result = Trainer(config).fit(model, train, valid, max_epochs=1, early_stopping=False)
    return len(train) / result.seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--vocab", type=int, default=841_602, help="total ids of the throughput set (ERASE's)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    device = torch.device(args.device)
    X, y, dims = criteo_shaped(args.rows, args.vocab)
    X10k, _, dims10k = criteo_shaped(200_000, 10_000, seed=1)
    spread = 100
    X1m, dims1m = X10k * spread, [d * spread for d in dims10k]
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{torch.get_num_threads()} CPU threads"
    print(f"torch {torch.__version__}, {where}, {args.rows:,} rows, vocabulary {sum(dims):,}")
    results = []
    for label, (params, batch) in MODELS.items():
        floor = batch / floor_step_seconds(params, batch, X, y, dims, device)
        # best of two epochs, each with a fresh model: the machine's other load only ever slows a run down
        trainer = max(trainer_samples_per_second(params, batch, X, y, dims, device) for _ in range(2))
        step_10k = floor_step_seconds(params, batch, X10k, y, dims10k, device)
        step_1m = floor_step_seconds(params, batch, X1m, y, dims1m, device)
        row = {
            "model": label,
            "trainer_samples_per_s": round(trainer),
            "floor_samples_per_s": round(floor),
            "trainer_over_floor": round(trainer / floor, 3),
            "vs_erase_39k": round(trainer / ERASE_SAMPLES_PER_SECOND, 2),
            "step_ms_vocab_10k": round(step_10k * 1e3, 2),
            "step_ms_vocab_1m": round(step_1m * 1e3, 2),
            "step_1m_over_10k": round(step_1m / step_10k, 3),
        }
        results.append(row)
        print(json.dumps(row))
    if args.json:
        with open(args.json, "w") as handle:
            summary = {"rows": args.rows, "vocabulary": sum(dims), "device": where, "results": results}
            json.dump(summary, handle, indent=1)


if __name__ == "__main__":
    main()
