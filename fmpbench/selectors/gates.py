"""Shared machinery of the gate-based selectors (AutoField, AdaFS, LPFS, MvFS, OptFS, ShuffleGate).

A gate search builds the run's backbone, plugs a :class:`FieldGate` into its ``field_gate`` slot, trains
both through the ordinary trainer (everything method-specific goes through :class:`GateHooks`) and
turns the trained gate into one score per field. :class:`ValidationGateHooks` is the bi-level variant
(AutoField, ShuffleGate): the gate steps on validation batches only.

Search budget: at most ``search_epochs`` epochs (default 5; capped by the run's
``train_config.max_epochs`` so that a global epoch limit also bounds searches), with the trainer's
early stopping on validation AUC (its ``patience``), which restores the weights — gate included — of
the best epoch. Schedules (temperatures, ε) are laid out over that whole budget, so a search that
stops early ends part-way along them. Why early stopping: once the backbone starts to overfit, gates
trained jointly on training batches learn to favour the fields whose rare ids it memorises
(high-cardinality noise); on ``synthetic`` (20 k rows) that happened from about the third epoch and
cost the per-sample gates (AdaFS, MvFS) the planted fields. ``early_stopping=False`` gives the fixed
budget of the papers instead (AutoField's default, whose gate learns on validation batches only, and
OptFS's, whose penalty reaches every value at every step).

Schedules advance in :meth:`GateHooks.after_step`, i.e. on training steps only; evaluation passes
(the trainer's per-epoch validation AUC, ``evaluate``/``predict``) never move them, and every gate is
deterministic when ``model.training`` is False.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fmpbench.data.prepared import PreparedData
from fmpbench.models import CTRModel
from fmpbench.selectors.base import SearchContext, Selector
from fmpbench.training import SplitTensors, TrainHooks, TrainResult


def linear_schedule(start: float, end: float, progress: float) -> float:
    """Value at ``progress`` ∈ [0, 1] of a straight line from ``start`` to ``end``."""
    return start + (end - start) * min(max(progress, 0.0), 1.0)


def geometric_schedule(start: float, end: float, progress: float) -> float:
    """Value at ``progress`` ∈ [0, 1] of a geometric (log-linear) path from ``start`` to ``end``."""
    return start * (end / start) ** min(max(progress, 0.0), 1.0)


class FieldGate(nn.Module):
    """A module mapping embeddings ``[B, F, d]`` to field weights broadcastable to ``[B, F]``.

    ``advance`` sets the schedule state from the search progress; only :class:`GateHooks` calls it,
    after training steps. ``importance`` is what a selector averages into field scores.
    """

    def advance(self, progress: float) -> None:
        """Set schedule values (temperatures, ε) for ``progress`` ∈ [0, 1] of the search."""

    def schedule_state(self) -> dict[str, float]:
        """Current schedule values, recorded in ``describe()``."""
        return {}

    def importance(self, emb: torch.Tensor) -> torch.Tensor:
        """Per-sample field importance ``[B, F]`` used for scoring (the gate weights by default)."""
        weights = self(emb)
        return weights.expand(emb.shape[0], emb.shape[1])


class GateHooks(TrainHooks):
    """Trains the gate with its own learning rate and advances its schedule on training steps."""

    def __init__(self, gate: FieldGate, total_steps: int, gate_lr: float) -> None:
        self.gate = gate
        self.total_steps = max(total_steps, 1)
        self.gate_lr = gate_lr
        self.steps_taken = 0

    def parameter_groups(self, model: nn.Module) -> list[dict]:
        params = [p for p in self.gate.parameters() if p.requires_grad]
        return [{"params": params, "lr": self.gate_lr}] if params else []

    def after_step(self, model: nn.Module, step: int) -> None:
        self.steps_taken += 1
        self.gate.advance(self.steps_taken / self.total_steps)

    def describe(self) -> dict[str, Any]:
        """What the search did beyond its schedule (e.g. number of architecture updates)."""
        return {}


class ValidationGateHooks(GateHooks):
    """Bi-level search (first-order DARTS): the gate's ``params`` are architecture parameters, left out
    of the trainer's optimisers, and take their own Adam step (``gate_lr``) on a validation batch every
    ``update_every`` training steps, minimising BCE + :meth:`validation_penalty`.

    The validation step runs the model in training mode (the gate's noise or shuffling, dropout, batch
    statistics), as DARTS does; only ``params`` receive its gradient. Why validation batches: there a
    backbone's memorised training rows carry nothing, so the gates cannot learn to favour the fields
    whose rare ids it memorises (AutoField, ShuffleGate).
    """

    def __init__(
        self, gate: FieldGate, params: list[nn.Parameter], total_steps: int, gate_lr: float, update_every: int
    ) -> None:
        super().__init__(gate, total_steps, gate_lr)
        self.params = list(params)
        self.validation_every = update_every
        self.gate_optimizer = torch.optim.Adam(self.params, lr=gate_lr)
        self.gate_updates = 0

    def parameter_groups(self, model: nn.Module) -> list[dict]:
        return []

    def architecture_parameters(self, model: nn.Module) -> list[nn.Parameter]:
        return list(self.params)

    def validation_penalty(self) -> torch.Tensor | None:
        """A term added to the validation BCE (a sparsity pressure); None adds nothing."""
        return None

    def after_step(self, model: nn.Module, step: int) -> None:
        # the training batch's gradient on the gate must not leak into the validation step
        for param in self.params:
            param.grad = None
        super().after_step(model, step)

    def validation_step(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, step: int) -> None:
        loss = F.binary_cross_entropy_with_logits(model(x), y)
        penalty = self.validation_penalty()
        if penalty is not None:
            loss = loss + penalty
        for param, grad in zip(self.params, torch.autograd.grad(loss, self.params)):
            param.grad = grad
        self.gate_optimizer.step()
        for param in self.params:
            param.grad = None
        self.gate_updates += 1

    def describe(self) -> dict[str, Any]:
        return {"gate_updates": self.gate_updates}


@dataclass
class GateSearch:
    """A finished search: the gated model, its gate and hooks, what training measured, the validation split."""

    model: CTRModel
    gate: FieldGate
    hooks: GateHooks
    results: list[TrainResult]
    valid: SplitTensors


@torch.no_grad()
def mean_importance(model: CTRModel, gate: FieldGate, split: SplitTensors, batch_size: int) -> np.ndarray:
    """Mean of ``gate.importance`` over a whole split, in evaluation mode (deterministic)."""
    was_training = model.training
    model.eval()
    total = torch.zeros(model.num_fields, dtype=torch.float64)
    for x, _ in split.batches(batch_size):
        total += gate.importance(model.embedding(x)).double().sum(0).cpu()
    model.train(was_training)
    return (total / max(len(split), 1)).numpy()


class GateSearchSelector(Selector):
    """Base class: a gate trained jointly with the backbone for at most ``search_epochs`` epochs.

    Subclasses store ``search_epochs``, ``early_stopping`` and ``gate_lr`` (plus their own
    hyper-parameters) and implement :meth:`make_gate` and :meth:`field_scores`; :meth:`make_hooks`
    covers methods with extra training logic, and ``warmup_epochs`` > 0 trains the plain backbone
    that many epochs before the gate is attached. Randomness (initial weights, gate initialisation,
    Gumbel noise, dropout, batch order) derives from ``context.seed``: ``context.make_model`` seeds the
    global generator before the backbone and gate are built, and the trainer's batch generator uses
    the same seed.
    """

    search_epochs: int
    gate_lr: float
    early_stopping: bool
    warmup_epochs: int = 0
    search_cost = 2.0

    def make_gate(self, model: CTRModel, data: PreparedData) -> FieldGate:
        raise NotImplementedError

    def make_hooks(self, gate: FieldGate, total_steps: int, context: SearchContext) -> GateHooks:
        return GateHooks(gate, total_steps, self.gate_lr)

    def field_scores(self, search: GateSearch, context: SearchContext) -> np.ndarray:
        """One score per field (higher = keep) from a finished search."""
        raise NotImplementedError

    def budget_epochs(self, context: SearchContext) -> int:
        """Epochs the schedules are laid out over: ``search_epochs``, capped by the run's max_epochs."""
        return max(1, min(self.search_epochs, context.train_config.max_epochs))

    def search(self, data: PreparedData, context: SearchContext | None = None) -> GateSearch:
        """Train backbone and gate; returns the gated model (``fit`` keeps only the scores)."""
        context = context or SearchContext()
        if self.search_epochs < 1:
            raise ValueError(f"{self.name}: search_epochs must be >= 1, got {self.search_epochs}")
        label_rate = float(np.mean(data.train.y))
        model = context.make_model(data.field_dims, label_rate=label_rate).to(context.device)
        train, valid = context.tensors(data)
        results: list[TrainResult] = []
        if self.warmup_epochs > 0:
            results.append(
                context.trainer().fit(model, train, valid, max_epochs=self.warmup_epochs, early_stopping=False)
            )
        gate = self.make_gate(model, data).to(context.device)
        model.field_gate = gate
        epochs = self.budget_epochs(context)
        hooks = self.make_hooks(gate, epochs * math.ceil(len(train) / context.train_config.batch_size), context)
        results.append(
            context.trainer(hooks).fit(model, train, valid, max_epochs=epochs, early_stopping=self.early_stopping)
        )
        return GateSearch(model, gate, hooks, results, valid)

    def fit(self, data: PreparedData, context: SearchContext | None = None) -> GateSearchSelector:
        context = context or SearchContext()
        search = self.search(data, context)
        self.set_scores(data, self.field_scores(search, context))
        self.search_info_ = {
            "warmup_epochs": self.warmup_epochs,
            "search_epochs_run": search.results[-1].epochs,
            "search_best_epoch": search.results[-1].best_epoch,
            "search_steps": search.hooks.steps_taken,
            "search_train_seconds": sum(r.seconds for r in search.results),
            "search_valid_auc": [auc for r in search.results for auc in r.valid_auc_history],
            **{f"final_{k}": v for k, v in search.gate.schedule_state().items()},
            **search.hooks.describe(),
        }
        return self

    def describe(self) -> dict[str, Any]:
        return dict(self.search_info_)
