"""``autofield``: AutoField's differentiable keep/drop gate per field, searched bi-level."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fmpbench.data.prepared import PreparedData
from fmpbench.models import CTRModel
from fmpbench.selectors.base import SearchContext
from fmpbench.selectors.gates import FieldGate, GateSearch, GateSearchSelector, ValidationGateHooks, linear_schedule
from fmpbench.selectors.registry import register

KEEP = 1  # column of the (drop, keep) logit pair


class AutoFieldGate(FieldGate):
    """Per-field (drop, keep) logits; one Gumbel-softmax keep-gate per field and batch while training.

    In evaluation mode the gate is the keep-probability softmax(logits)[keep] — the expectation of the
    hard sample as τ → 0 — with no noise, so evaluation is deterministic.
    """

    def __init__(self, num_fields: int, tau_start: float, tau_end: float) -> None:
        super().__init__()
        # equal logits: every field starts at keep-probability 1/2, as in the paper
        self.logits = nn.Parameter(torch.zeros(num_fields, 2))
        self.tau_start, self.tau_end = tau_start, tau_end
        self.tau = tau_start

    def advance(self, progress: float) -> None:
        self.tau = linear_schedule(self.tau_start, self.tau_end, progress)

    def schedule_state(self) -> dict[str, float]:
        return {"tau": self.tau}

    def keep_probability(self) -> torch.Tensor:
        return torch.softmax(self.logits, dim=-1)[:, KEEP]

    def forward(self, emb: torch.Tensor) -> torch.Tensor:
        if self.training:
            return F.gumbel_softmax(self.logits, tau=self.tau, hard=False, dim=-1)[:, KEEP]
        return self.keep_probability()


class AutoFieldHooks(ValidationGateHooks):
    """First-order DARTS: gate logits are architecture parameters, stepped on validation batches only (BCE)."""

    def __init__(self, gate: AutoFieldGate, total_steps: int, gate_lr: float, update_every: int) -> None:
        super().__init__(gate, [gate.logits], total_steps, gate_lr, update_every)


@register
class AutoFieldSelector(GateSearchSelector):
    """AutoField — Wang, Zhao, Xu, Wu, "AutoField: Automating Feature Selection in Deep Recommender
    Systems", WWW 2022.

    Each field has a (drop, keep) logit pair; during the search the field embedding is multiplied by
    the keep entry of a Gumbel-softmax sample at temperature τ (one sample per field and batch, shared
    by its rows). Bi-level, first-order DARTS: backbone and embeddings step on training batches with
    the trainer's optimisers; the logits are architecture parameters, excluded from those, and take an
    Adam step (``gate_lr``) on a validation batch every ``update_every`` training steps.
    Score = softmax(logits_f)[keep].

    Defaults: a fixed budget of ``search_epochs=5`` (``early_stopping=False``), ``update_every=10``,
    ``gate_lr=0.01`` (Adam on the logits), τ 1.0 → 0.01. Unlike the jointly trained gates, the logits
    only ever see validation batches, so an overfitting backbone cannot teach them to favour memorised
    ids; restoring an early best epoch would instead leave them with a handful of updates and τ
    half-annealed (on synthetic 20 k rows, 3–6 updates and worse recall of the planted fields).

    Deviations, and why:

    * τ decreases linearly from ``tau_start`` to ``tau_end`` over the search budget. The paper uses
      the same linear form with a fixed slope (τ = max(0.01, 1 − 5e-5·t)); tying the slope to the
      budget makes the anneal complete on any dataset size.
    * τ advances on training steps only and evaluation is noise-free; ERASE's code also anneals on
      evaluation passes and draws Gumbel noise at evaluation, which makes scores depend on how often
      one evaluates.
    * The validation step runs the model in training mode (Gumbel sample, dropout, batch statistics),
      as DARTS does; only the logits receive its gradient.
    """

    name = "autofield"

    def __init__(
        self,
        search_epochs: int = 5,
        early_stopping: bool = False,
        update_every: int = 10,
        gate_lr: float = 0.01,
        tau_start: float = 1.0,
        tau_end: float = 0.01,
    ) -> None:
        self.search_epochs = search_epochs
        self.early_stopping = early_stopping
        self.update_every = update_every
        self.gate_lr = gate_lr
        self.tau_start = tau_start
        self.tau_end = tau_end

    def make_gate(self, model: CTRModel, data: PreparedData) -> AutoFieldGate:
        return AutoFieldGate(data.num_fields, self.tau_start, self.tau_end)

    def make_hooks(self, gate: FieldGate, total_steps: int, context: SearchContext) -> AutoFieldHooks:
        if self.update_every < 1:
            raise ValueError(f"autofield: update_every must be >= 1, got {self.update_every}")
        assert isinstance(gate, AutoFieldGate)
        return AutoFieldHooks(gate, total_steps, self.gate_lr, self.update_every)

    def field_scores(self, search: GateSearch, context: SearchContext) -> np.ndarray:
        assert isinstance(search.gate, AutoFieldGate)
        with torch.no_grad():
            return search.gate.keep_probability().double().cpu().numpy()
