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


class PeakMemory:
    """Peak memory of successive stretches of work in this process (a task's search, each retrain).

    The process's own peak would let a run inherit the peaks of every earlier run in the same process
    (a grid worker runs many). Each :meth:`lap` returns the peak since the previous one and starts the
    next: on CUDA the allocator's peak (``torch.cuda.reset_peak_memory_stats``); on Linux CPU the peak
    resident set size (``VmHWM`` in ``/proc/self/status``, reset by writing ``5`` to
    ``/proc/self/clear_refs``: exact, and nothing runs beside the work, unlike a sampling thread).
    Where neither is available the lifetime peak (``ru_maxrss``) is all there is.
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self._reset()

    def lap(self) -> float:
        """Peak in MiB since the previous lap (or since construction), then start the next lap."""
        peak = self._peak_mb()
        self._reset()
        return peak

    def _reset(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
            return
        try:
            with open("/proc/self/clear_refs", "w", encoding="ascii") as handle:
                handle.write("5")
        except OSError:
            pass  # not Linux, or not allowed: _peak_mb falls back to the lifetime peak

    def _peak_mb(self) -> float:
        if self.device.type == "cuda":
            return torch.cuda.max_memory_allocated(self.device) / 2**20
        try:
            with open("/proc/self/status", encoding="ascii") as handle:
                for line in handle:
                    if line.startswith("VmHWM:"):
                        return int(line.split()[1]) / 1024
        except (OSError, ValueError):
            pass
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return rss / 2**20 if sys.platform == "darwin" else rss / 1024
