"""``shark``: SHARK's first-order Taylor estimate of the loss change when a field's embedding is removed.

Also home of the two pieces the other model-based scorers share: :func:`train_full_backbone` (the
run's backbone on every field, early-stopped on validation AUC; ``permutation`` scores it too) and
:class:`UnitFieldGate` with :func:`gate_gradients` (``sfs`` scores the untrained backbone with them).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fmpbench.data.prepared import PreparedData
from fmpbench.models import CTRModel
from fmpbench.selectors.base import SearchContext, Selector
from fmpbench.selectors.registry import register
from fmpbench.training import SplitTensors, TrainResult


@dataclass
class TrainedBackbone:
    """The run's backbone trained on every field, with what the trainer measured and the splits."""

    model: CTRModel
    result: TrainResult
    train: SplitTensors
    valid: SplitTensors


def train_full_backbone(data: PreparedData, context: SearchContext) -> TrainedBackbone:
    """The run's backbone on all fields, trained by the context's trainer with early stopping.

    The same budget as a retrain (``train_config.max_epochs`` and ``patience``); the trainer restores
    the epoch with the best validation AUC.
    """
    model = context.make_model(data.field_dims, label_rate=float(np.mean(data.train.y))).to(context.device)
    train, valid = context.tensors(data)
    result = context.trainer().fit(model, train, valid)
    return TrainedBackbone(model, result, train, valid)


class UnitFieldGate(nn.Module):
    """A gate c_f = 1 on every field, there only to be differentiated.

    ∂L/∂c_f at c = 1 is Σ_d ∂L/∂e_fd · e_fd: the first-order Taylor term of the loss change when
    e_f is replaced by zero (SHARK), and the connection sensitivity of field f (SFS). The gate also
    scales first-order (wide) terms, so removing a field removes all of it.
    """

    def __init__(self, num_fields: int) -> None:
        super().__init__()
        self.c = nn.Parameter(torch.ones(num_fields))

    def forward(self, emb: torch.Tensor) -> torch.Tensor:
        return self.c


def gate_gradients(model: CTRModel, split: SplitTensors, batch_size: int, max_batches: int, seed: int) -> np.ndarray:
    """∂L/∂c_f of the mean BCE of each of ``max_batches`` seeded shuffled batches, ``[batches, F]``.

    In evaluation mode (no dropout, batch norm on its running statistics), so the gradients are a
    deterministic function of the weights and the batches; the weights themselves get no gradient.
    """
    if max_batches < 1:
        raise ValueError(f"max_batches must be >= 1, got {max_batches}")
    gate = UnitFieldGate(model.num_fields).to(next(model.parameters()).device)
    previous, was_training = model.field_gate, model.training
    model.field_gate = gate
    model.eval()
    grads = []
    try:
        generator = torch.Generator().manual_seed(seed)
        for x, y in split.shuffled_batches(batch_size, generator):
            loss = F.binary_cross_entropy_with_logits(model(x), y)
            (grad,) = torch.autograd.grad(loss, [gate.c])
            grads.append(grad.detach().double().cpu().numpy())
            if len(grads) == max_batches:
                break
    finally:
        model.field_gate = previous
        model.train(was_training)
    return np.stack(grads)


@register
class SharkSelector(Selector):
    """SHARK — X. Zhang, H. Li, Z. Wang et al., "SHARK: A Lightweight Model Compression Approach for
    Large-scale Recommender Systems", KDD 2023 (the feature-selection part, "F-Permutation"'s
    Taylor-expansion replacement).

    The run's backbone is trained on every field (:func:`train_full_backbone`: its trainer, early
    stopping on validation AUC). Field f's importance is the first-order Taylor estimate of the loss
    change when its embedding e_f is set to zero, |Σ_rows ∂L/∂e_f · e_f|, computed on **training**
    batches (never validation or test): per batch of ``batch_size`` rows through one unit gate per
    field (:class:`UnitFieldGate`), so one backward pass scores every field of a whole batch.
    Score = the mean over ``max_batches`` seeded shuffled training batches of that absolute value.

    Defaults: ``max_batches=100`` (51,200 rows at ``batch_size=None`` = the run's 512), the model in
    evaluation mode while scoring (no dropout: the score is a function of the trained weights only).

    Deviations, and why:

    * The absolute value is taken per batch and then averaged (the Taylor criterion of Molchanov et
      al., ICLR 2017, that SHARK builds on). Summed over the whole training set first, the signed
      term tends to 0 for *every* field, since scaling a field's embeddings is a direction the trainer
      has already optimised; per batch it measures how much the loss depends on the field.
    * Vectorised over rows; ERASE's implementation loops over single samples (batch size 1), which
      gives the same per-sample terms at hundreds of times the cost.
    """

    name = "shark"
    search_cost = 1.2

    def __init__(self, max_batches: int = 100, batch_size: int | None = None) -> None:
        self.max_batches = max_batches
        self.batch_size = batch_size

    def fit(self, data: PreparedData, context: SearchContext | None = None) -> SharkSelector:
        context = context or SearchContext()
        trained = train_full_backbone(data, context)
        batch_size = self.batch_size or context.train_config.batch_size
        grads = gate_gradients(trained.model, trained.train, batch_size, self.max_batches, context.seed)
        self._set_scores(data, np.abs(grads).mean(0))
        self.search_info_ = training_info(trained.result) | {"scored_batches": len(grads), "batch_size": batch_size}
        return self

    def describe(self) -> dict[str, Any]:
        return dict(self.search_info_)


def training_info(result: TrainResult) -> dict[str, Any]:
    """What the full-field training of a model-based scorer did, for ``describe()``."""
    return {
        "search_epochs_run": result.epochs,
        "search_best_epoch": result.best_epoch,
        "search_steps": result.steps,
        "search_train_seconds": result.seconds,
        "search_valid_auc": list(result.valid_auc_history),
    }
