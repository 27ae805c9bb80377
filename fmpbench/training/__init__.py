"""Training: metrics, the hook interface for gate methods, and the trainer."""

from fmpbench.training.hooks import TrainHooks
from fmpbench.training.metrics import auc, logloss
from fmpbench.training.trainer import (
    SplitTensors,
    TrainConfig,
    Trainer,
    TrainingDiverged,
    TrainResult,
    evaluate,
    predict,
)

__all__ = [
    "SplitTensors",
    "TrainConfig",
    "TrainHooks",
    "TrainResult",
    "Trainer",
    "TrainingDiverged",
    "auc",
    "evaluate",
    "logloss",
    "predict",
]
