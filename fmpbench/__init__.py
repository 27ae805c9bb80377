"""fmpbench: a benchmark suite for feature selection and model pruning in deep CTR models."""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["FieldSelector", "__version__"]


def __getattr__(name: str) -> Any:
    # imported on first use: `python -m fmpbench --help` must not pay for torch and scikit-learn
    if name == "FieldSelector":
        from fmpbench.selectors.sklearn_api import FieldSelector

        return FieldSelector
    raise AttributeError(f"module 'fmpbench' has no attribute {name!r}")
