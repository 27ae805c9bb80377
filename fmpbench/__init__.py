"""fmpbench: a benchmark suite for feature selection and model pruning in deep CTR models."""

__version__ = "0.1.0"
