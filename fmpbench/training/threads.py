"""Intra-op thread policies of the CPU trainers: one thread for small regions, and a measured choice
between one and all threads for whole training steps.

Results do not depend on them: on this torch build, training at 1 and 2 threads gives bit-identical
weights (``tests/test_trainer.py`` checks it), so a thread count can follow the host's load.
"""

from __future__ import annotations

import contextlib
import statistics
import time
from collections.abc import Callable, Iterator

import torch


@contextlib.contextmanager
def one_thread(enabled: bool = True) -> Iterator[None]:
    """Run the enclosed CPU ops on one intra-op thread (no effect on CUDA kernels).

    An optimiser step is a few dozen small parallel regions (memory-latency-bound index ops on
    ~20 k ids, or the dense Adam's per-tensor updates): a second thread gained nothing on a quiet
    host (sparse 6.5 against 6.6 ms, dense 0.9 against 1.0 ms), and beside a busy process every
    region waits for a descheduled sibling. ``torch.set_num_threads`` is process-wide but cheap
    (~0.3 µs a switch); other Python threads running torch ops meanwhile would also get one thread.
    """
    previous = torch.get_num_threads()
    if previous == 1 or not enabled:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


class ThreadGovernor:
    """Runs training steps at whichever of 1 and ``n`` threads is faster now, re-measured as it goes.

    With ``n`` > 1 threads, every ``every`` steps (after ``warmup`` steps) ``probe`` steps alternate
    between ``n`` and 1 thread; the count with the lower median step time runs until the next probe,
    and is also the count left set between steps (validation, hooks). ATen splits a GEMM statically
    between its threads, so when another process keeps one of two cores busy, the thread that shares
    that core holds every region back: a fixed 2-thread step was 11-14 % slower than a 1-thread one
    there (``benchmarks/trainer_throughput.py``, session 6), while on a quiet host 2 threads were
    1.27x faster for ERASE's model size and, that run, 0.83x for the default model (1.16x in an
    earlier run). Half of each probe runs at the slower count: 8 of every 500 steps (1.6 %) by
    default. A no-op on CUDA and at one thread.
    """

    def __init__(
        self,
        device: torch.device | str = "cpu",
        *,
        every: int = 500,
        probe: int = 16,
        warmup: int = 4,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.threads = torch.get_num_threads()
        self.enabled = torch.device(device).type == "cpu" and self.threads > 1
        self.every, self.probe, self.warmup, self.clock = every, probe, warmup, clock
        self.chosen = self.threads
        self.steps = 0
        self._times: dict[int, list[float]] = {}

    def _probe_position(self, step: int) -> int | None:
        """Where ``step`` falls in a probe (0 .. ``probe`` - 1), or None outside one."""
        position = (step - self.warmup) % self.every
        return None if step < self.warmup or position >= self.probe else position

    @contextlib.contextmanager
    def step(self) -> Iterator[None]:
        """One training step, at the count the policy gives it; a probe step's time feeds the next choice."""
        if not self.enabled:
            yield
            return
        position = self._probe_position(self.steps)
        self.steps += 1
        if position is None:
            torch.set_num_threads(self.chosen)
            yield
            return
        count = self.threads if position % 2 == 0 else 1
        torch.set_num_threads(count)
        start = self.clock()
        yield
        self._times.setdefault(count, []).append(self.clock() - start)
        if position == self.probe - 1:
            medians = {n: statistics.median(times) for n, times in self._times.items()}
            self.chosen = min(medians, key=lambda n: (medians[n], -n))  # ties: more threads
            self._times.clear()
        torch.set_num_threads(self.chosen)  # what runs between steps gets the chosen count, not a probe's

    def __enter__(self) -> ThreadGovernor:
        return self

    def __exit__(self, *exc: object) -> None:
        torch.set_num_threads(self.threads)
