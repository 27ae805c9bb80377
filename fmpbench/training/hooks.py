"""The few extension points through which gate-based selectors steer training.

The trainer calls these and never asks which method it is training for. A selector that needs
nothing special uses the base class, whose every hook is a no-op.
"""

from __future__ import annotations

import torch
from torch import nn


class TrainHooks:
    """Override what a search needs; see :class:`fmpbench.training.trainer.Trainer` for call order."""

    #: Run :meth:`validation_step` every this many training steps (0 = never).
    validation_every: int = 0

    def parameter_groups(self, model: nn.Module) -> list[dict]:
        """Extra dense-optimiser groups (e.g. gate logits with their own learning rate)."""
        return []

    def architecture_parameters(self, model: nn.Module) -> list[nn.Parameter]:
        """Parameters the trainer must not optimise on training batches (bi-level methods)."""
        return []

    def extra_loss(self, model: nn.Module, step: int) -> torch.Tensor | None:
        """A term added to the training loss at this step (e.g. a sparsity Lagrangian)."""
        return None

    def lr_factor(self, epoch: int) -> float:
        """Multiplier of every optimiser's learning rate during ``epoch`` (1-based), e.g. a reduced
        rate while continued training settles on weights that are already trained."""
        return 1.0

    def after_step(self, model: nn.Module, step: int) -> None:
        """Called after each optimiser step (schedules, proximal updates, dual ascent)."""

    def validation_step(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, step: int) -> None:
        """Called with a validation batch every ``validation_every`` training steps."""
