"""Shared fixtures: tiny seeded datasets and fast trainer settings."""

from __future__ import annotations

import pytest
import torch

from fmpbench.data.synthetic import make_synthetic
from fmpbench.selectors import SearchContext
from fmpbench.training import TrainConfig

# Test models are tiny: one thread is as fast as two, and avoids oversubscribing a shared CI core.
torch.set_num_threads(1)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Every module starts at one intra-op thread, whatever a test before it set: on a shared 2-core
    machine two spinning threads make these tiny models ~5x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny_synthetic():
    """4,000 rows of the ground-truth dataset: big enough to learn, small enough for seconds."""
    return make_synthetic(n_rows=4000, seed=0)


@pytest.fixture(scope="session")
def synthetic_20k():
    return make_synthetic(n_rows=20_000, seed=0)


@pytest.fixture
def fast_context():
    """A search context with a small backbone and few epochs."""
    return SearchContext(
        seed=0,
        backbone="mlp",
        backbone_params={"embed_dim": 8, "hidden": (32, 16)},
        train_config=TrainConfig(max_epochs=5, batch_size=512, patience=2),
    )
