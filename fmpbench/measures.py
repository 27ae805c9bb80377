"""Efficiency measures of a trained model: parameters, FLOPs, inference latency, peak memory."""

from __future__ import annotations

import resource
import sys
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from fmpbench.models import CTRModel


def flops_per_sample(model: CTRModel, batch: torch.Tensor) -> float:
    """Forward FLOPs per sample counted by ``torch.utils.flop_counter`` (matmuls, convs).

    Embedding lookups are memory reads, not FLOPs; they are reported separately by
    :func:`embedding_lookups_per_sample`.
    """
    was_training = model.training
    model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(batch)
    model.train(was_training)
    return counter.get_total_flops() / batch.shape[0]


def embedding_lookups_per_sample(model: CTRModel) -> int:
    """Floats gathered from embedding tables per sample (one row per field per table)."""
    return sum(model.num_fields * m.embedding_dim for m in model.embedding_modules())


def inference_ms_per_1000(model: CTRModel, batch: torch.Tensor, repeats: int = 3) -> float:
    """Best-of-``repeats`` forward latency, scaled to 1,000 samples."""
    was_training = model.training
    model.eval()
    best = float("inf")
    with torch.no_grad():
        model(batch)
        for _ in range(repeats):
            if batch.is_cuda:
                torch.cuda.synchronize(batch.device)
            start = time.perf_counter()
            model(batch)
            if batch.is_cuda:
                torch.cuda.synchronize(batch.device)
            best = min(best, time.perf_counter() - start)
    model.train(was_training)
    return best * 1000.0 * 1000.0 / batch.shape[0]


def peak_memory_mb(device: torch.device) -> float:
    """Peak memory of this process so far: CUDA allocator peak on GPU, resident set size on CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 1024
