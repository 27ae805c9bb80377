"""The thread governor picks the faster thread count by measurement, and thread counts never change results."""

from __future__ import annotations

import hashlib

import pytest
import torch

from fmpbench.data import get_dataset
from fmpbench.models import build_backbone
from fmpbench.training import SplitTensors, TrainConfig, Trainer
from fmpbench.training.threads import ThreadGovernor


@pytest.fixture
def two_threads():
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(previous)


class FakeClock:
    """A clock whose steps take ``cost[threads]`` seconds at the thread count set when they start."""

    def __init__(self, cost: dict[int, float]) -> None:
        self.cost, self.now, self._started = cost, 0.0, False

    def __call__(self) -> float:
        if self._started:  # the step's end: it lasted what its thread count costs
            self.now += self.cost[torch.get_num_threads()]
        self._started = not self._started
        return self.now


def _run(governor: ThreadGovernor, steps: int, between: list[int] | None = None) -> list[int]:
    counts = []
    with governor:
        for _ in range(steps):
            with governor.step():
                counts.append(torch.get_num_threads())
            if between is not None:  # what validation and hooks between steps run at
                between.append(torch.get_num_threads())
    return counts


@pytest.mark.parametrize(("cost", "chosen"), [({1: 0.020, 2: 0.024}, 1), ({1: 0.020, 2: 0.017}, 2)])
def test_the_governor_runs_the_faster_count_between_probes(two_threads, cost, chosen):
    governor = ThreadGovernor(every=50, probe=6, warmup=2, clock=FakeClock(cost))
    between: list[int] = []
    counts = _run(governor, 120, between)
    assert counts[:2] == [2, 2]  # warm-up at the configured count
    assert counts[2:8] == [2, 1, 2, 1, 2, 1]  # the probe alternates
    assert set(counts[8:52]) == {chosen}  # then the faster one, until the next probe
    assert counts[52:58] == [2, 1, 2, 1, 2, 1]
    assert between[:7] == [2] * 7 and set(between[7:52]) == {chosen}  # never a probe's count between steps
    assert torch.get_num_threads() == 2  # the count is restored at the end


def test_the_governor_follows_a_change_of_load(two_threads):
    clock = FakeClock({1: 0.020, 2: 0.024})  # a busy neighbour: one thread is faster
    governor = ThreadGovernor(every=20, probe=4, warmup=0, clock=clock)
    with governor:
        for step in range(60):
            if step == 20:
                clock.cost = {1: 0.020, 2: 0.015}  # the neighbour has gone
            with governor.step():
                pass
            if step == 10:
                assert governor.chosen == 1
    assert governor.chosen == 2


def test_the_governor_restores_the_count_when_a_step_raises(two_threads):
    governor = ThreadGovernor(every=10, probe=4, warmup=0, clock=FakeClock({1: 0.01, 2: 0.02}))
    with pytest.raises(RuntimeError), governor:
        for _ in range(3):
            with governor.step():
                if torch.get_num_threads() == 1:
                    raise RuntimeError("diverged")
    assert torch.get_num_threads() == 2


@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_the_governor_is_a_no_op_at_one_thread_and_on_cuda(device):
    previous = torch.get_num_threads()
    torch.set_num_threads(1 if device == "cpu" else 2)
    try:
        governor = ThreadGovernor(device, every=10, probe=4, warmup=0, clock=FakeClock({1: 0.03, 2: 0.01}))
        expected = torch.get_num_threads()
        assert not governor.enabled and set(_run(governor, 12)) == {expected}
    finally:
        torch.set_num_threads(previous)


def _trained_hash(threads: int) -> str:
    data = get_dataset("synthetic", n_rows=3000)
    cpu = torch.device("cpu")
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        torch.manual_seed(0)
        model = build_backbone("mlp", data.field_dims)
        result = Trainer(TrainConfig(max_epochs=2, batch_size=128), seed=0).fit(
            model, SplitTensors(data.train, cpu), SplitTensors(data.valid, cpu))
    finally:
        torch.set_num_threads(previous)
    digest = hashlib.sha256(repr(result.valid_auc_history).encode())
    for tensor in model.state_dict().values():
        digest.update(tensor.numpy().tobytes())
    return digest.hexdigest()


def test_training_is_bit_identical_at_one_and_two_threads():
    # what lets the governor (and the optimisers' one-thread regions) switch counts mid-run: if a
    # torch build's kernels round differently per thread count, this fails and the governor must go
    assert _trained_hash(1) == _trained_hash(2)
