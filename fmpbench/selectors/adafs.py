"""``adafs``: AdaFS's controller network producing sample-wise soft field weights."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from fmpbench.data.prepared import PreparedData
from fmpbench.models import CTRModel
from fmpbench.selectors.base import SearchContext
from fmpbench.selectors.gates import FieldGate, GateSearch, GateSearchSelector, mean_importance
from fmpbench.selectors.registry import register


class AdaFSController(FieldGate):
    """BatchNorm over the flattened embeddings → MLP → softmax over fields: one weight vector per sample.

    Hidden blocks are Linear → BatchNorm → ReLU; the output layer is a bare Linear whose logits go
    straight into the softmax (no ReLU, no dropout).
    """

    def __init__(self, num_fields: int, embed_dim: int, hidden: Sequence[int]) -> None:
        super().__init__()
        in_dim = num_fields * embed_dim
        layers: list[nn.Module] = [nn.BatchNorm1d(in_dim)]
        for width in hidden:
            layers += [nn.Linear(in_dim, width), nn.BatchNorm1d(width), nn.ReLU()]
            in_dim = width
        layers.append(nn.Linear(in_dim, num_fields))
        self.net = nn.Sequential(*layers)

    def forward(self, emb: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.net(emb.flatten(1)), dim=-1)


@register
class AdaFSSelector(GateSearchSelector):
    """AdaFS — Lin, Zhao, Wang, Xu, Wu, "AdaFS: Adaptive Feature Selection in Deep Recommender
    System", KDD 2022.

    A controller maps each sample's batch-normalised, flattened field embeddings to field weights
    w = softmax(MLP(·)) and the embeddings are multiplied by w (AdaFS-soft). After
    ``warmup_epochs`` epochs of plain backbone training the controller (own learning rate
    ``gate_lr``) is trained jointly with the backbone for at most ``search_epochs`` epochs.

    Field score — neither the paper nor ERASE defines a global one, so this is fmpbench's documented
    choice: the mean of w_f over the validation split, computed in evaluation mode (BatchNorm running
    statistics, deterministic).

    Defaults: ``warmup_epochs=1`` (as the paper pre-trains the backbone before the controller),
    ``search_epochs=5`` with ``early_stopping`` (see :mod:`fmpbench.selectors.gates`),
    ``hidden=(64,)``, ``gate_lr=0.01``.

    Deviation from ERASE's code: it applies ReLU and dropout to the controller's output logits before
    the softmax, which zeroes logits at random and clips every negative preference to the same value;
    here the logits feed the softmax unchanged, as in the paper.
    """

    name = "adafs"

    def __init__(
        self,
        search_epochs: int = 5,
        early_stopping: bool = True,
        warmup_epochs: int = 1,
        hidden: tuple[int, ...] = (64,),
        gate_lr: float = 0.01,
    ) -> None:
        self.search_epochs = search_epochs
        self.early_stopping = early_stopping
        self.warmup_epochs = warmup_epochs
        self.hidden = hidden
        self.gate_lr = gate_lr

    def make_gate(self, model: CTRModel, data: PreparedData) -> AdaFSController:
        return AdaFSController(data.num_fields, model.embed_dim, self.hidden)

    def field_scores(self, search: GateSearch, context: SearchContext) -> np.ndarray:
        return mean_importance(search.model, search.gate, search.valid, context.train_config.eval_batch_size)
