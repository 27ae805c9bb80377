"""fmpbench: a benchmark suite for feature selection and model pruning in deep CTR models."""

from __future__ import annotations

import os
from typing import Any

# Before torch loads OpenMP (libgomp reads this once): idle OpenMP threads sleep instead of spinning.
# Spinning threads of a 2-thread step on a host where another process keeps a core busy made the
# default step 5-14x slower than at 1 thread (each small parallel region waited for a descheduled
# sibling); sleeping ones are ~1-thread speed there. A user's own setting wins.
if "OMP_WAIT_POLICY" not in os.environ and "GOMP_SPINCOUNT" not in os.environ:
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
# Before torch's first allocation (c10 reads this once): CPU tensors of 2 MB and more are 2 MB-aligned
# and advised onto transparent huge pages. The embedding table and its Adam moments are read and
# written at a batch's random rows; with 4 KB pages nearly every row costs a TLB miss as well as a
# cache miss. Measured (`benchmarks/trainer_throughput.py`'s phases, 5 alternating process pairs,
# 841 k-row table, medians): the default model's row-sparse Adam 6.3 -> 4.8 ms (step 22.2 -> 18.0),
# ERASE's size 28.3 -> 23.6 ms. No effect where the kernel's THP mode is "never"; a user's own
# setting ("0") wins.
os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")

__version__ = "0.1.0"
__all__ = ["FieldSelector", "__version__"]


def __getattr__(name: str) -> Any:
    # imported on first use: `python -m fmpbench --help` must not pay for torch and scikit-learn
    if name == "FieldSelector":
        from fmpbench.selectors.sklearn_api import FieldSelector

        return FieldSelector
    raise AttributeError(f"module 'fmpbench' has no attribute {name!r}")
