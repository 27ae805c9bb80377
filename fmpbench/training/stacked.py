"""Train several MLP retrains of one dataset and seed as one stacked model.

The top-k retrains of different methods at the same k share everything but their field sets: same
backbone, widths, k, training settings and seed. Trained one after another, each reads the whole
training split every epoch and runs small GEMMs whose fixed costs (Python, kernel launches, the
optimiser loop) dominate at batch 512. Stacked, each batch is gathered once and fed to all M
models: their dense layers are ``[M, in, out]`` tensors multiplied with one ``baddbmm`` per layer,
their embedding tables are the row blocks of one table (one offset per model and field) updated by
the same row-sparse Adam as a single model's, and the loss is the sum of the M mean losses, so each
model's gradient — and, Adam being elementwise, each update — is exactly what it would get alone.

What matches separate training: initial weights (each model is built by the caller as it would be
for a separate retrain), the shuffled batch order (one generator seeded like ``Trainer``'s, and a
separate retrain of the same seed draws the same order), the optimisers and the early-stopping rule,
applied per model. What does not: dropout masks are drawn from the global generator in a different
order, and batched GEMMs sum in another order, so a stacked model is a different draw from the same
distribution, not the same numbers (with dropout 0 they agree to float rounding; tests check both).

A model whose validation AUC has not improved for ``patience`` epochs leaves the stack: its best
weights are written back, its dense slices are cut out of the stacked tensors (and their Adam
moments), and its ids are no longer looked up, so nothing of it changes afterwards and the others
run on without its cost.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fmpbench.models.backbones import MLP, CTRModel, word_dropout
from fmpbench.training.metrics import auc
from fmpbench.training.optim import RowSparseAdam
from fmpbench.training.threads import ThreadGovernor
from fmpbench.training.trainer import (
    EarlyStopping,
    SplitTensors,
    TrainConfig,
    TrainingDiverged,
    TrainResult,
    _sync,
    epoch_log,
)


def unstackable_reason(model: CTRModel) -> str | None:
    """Why ``model`` cannot join a stack (``None`` when it can): only the plain MLP backbone stacks.

    DeepFM, Wide&Deep, DCN(v2) and AutoInt, batch norm and field gates train separately.
    """
    if type(model) is not MLP:
        return f"backbone '{model.name}' is not stacked (only 'mlp' is)"
    if model.field_gate is not None:
        return "a model with a field gate is not stacked"
    if any(isinstance(m, nn.BatchNorm1d) for m in model.mlp):
        return "batch norm is not stacked"
    return None


def stackable_backbone(backbone: str, params: dict) -> bool:
    """Whether a grid's retrains can stack at all (what :func:`unstackable_reason` says of each model): a
    grid of other backbones gains nothing from running a seed's tasks together, only loses parallelism."""
    return backbone == "mlp" and not params.get("batch_norm", False)


def stack_shape(model: MLP) -> tuple:
    """What models must share to train in one stack: fields per model, embedding size, widths, dropout."""
    dropouts = [m.p for m in model.mlp if isinstance(m, nn.Dropout)]
    return model.num_fields, model.embed_dim, tuple(model.hidden), tuple(dropouts)


def _linears(model: MLP) -> list[nn.Linear]:
    return [m for m in model.mlp if isinstance(m, nn.Linear)] + [model.head]


class _Stack:
    """The live state of the models still training: one embedding table and ``[M, ...]`` dense tensors."""

    def __init__(
        self, models: Sequence[MLP], field_sets: Sequence[np.ndarray], device: torch.device,
        fast_dropout: bool = True,
    ) -> None:
        self.members = list(range(len(models)))  # indices (into the caller's list) of the models still here
        sizes = [m.embedding.table.weight.shape[0] for m in models]
        self.table_start = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
        self.table_stop = self.table_start + np.asarray(sizes)
        with torch.no_grad():
            self.table = nn.Parameter(torch.cat([m.embedding.table.weight.detach() for m in models]).to(device))
            offsets = torch.stack([m.embedding.offsets.to(device) for m in models])
            self.id_offsets = offsets + torch.as_tensor(self.table_start, device=device)[:, None]  # [M, k]
            self.fields = torch.as_tensor(np.stack(field_sets), dtype=torch.long, device=device)  # [M, k]
            # weights as [M, in, out] (Linear stores [out, in]); biases as [M, 1, out] for baddbmm
            self.dense: list[nn.Parameter] = []
            for layers in zip(*(_linears(m) for m in models)):
                weight = torch.stack([lin.weight.detach().t() for lin in layers])
                self.dense.append(nn.Parameter(weight.to(device).contiguous()))
                self.dense.append(nn.Parameter(torch.stack([lin.bias.detach()[None] for lin in layers]).to(device)))
        self.dropout = next((m.p for m in models[0].mlp if isinstance(m, nn.Dropout)), 0.0)
        self.fast_dropout = fast_dropout  # False: torch's own masks, as TrainConfig(fast_dropout=False)
        self.embed_dim = models[0].embed_dim

    def forward(self, x: torch.Tensor, training: bool) -> torch.Tensor:
        """Logits ``[M, B]`` for a batch of full-width rows ``x`` ``[B, F]``."""
        count, k = self.fields.shape
        ids = x[:, self.fields.flatten()].view(x.shape[0], count, k).transpose(0, 1).long() + self.id_offsets[:, None]
        h = F.embedding(ids, self.table, sparse=True).flatten(2)  # [M, B, k·d]
        weights, biases = self.dense[0::2], self.dense[1::2]
        for w, b in zip(weights[:-1], biases[:-1]):
            h = torch.relu(torch.baddbmm(b, h, w))
            if training and self.dropout > 0:
                h = word_dropout(h, self.dropout) if self.fast_dropout else F.dropout(h, self.dropout)
        # the one-logit head as a product and a sum: bmm with one output column ran 7x slower than
        # the same FLOPs as separate matmuls (1.3 against 0.18 ms a step for 5 members, forward and backward)
        w, b = weights[-1], biases[-1]
        return (h * w.transpose(1, 2)).sum(-1) + b[:, :, 0]

    def state_of(self, position: int) -> list[torch.Tensor]:
        """A copy of one member's weights: its table rows, then each dense tensor's slice."""
        member = self.members[position]
        rows = self.table.detach()[self.table_start[member] : self.table_stop[member]]
        return [rows.clone()] + [p.detach()[position].clone() for p in self.dense]

    def drop(self, positions: set[int], dense_opt: torch.optim.Adam) -> torch.optim.Adam:
        """Remove members (by position in the stack), with their Adam moments; returns the new optimiser."""
        keep = [i for i in range(len(self.members)) if i not in positions]
        index = torch.as_tensor(keep, dtype=torch.long, device=self.fields.device)
        self.members = [self.members[i] for i in keep]
        self.fields, self.id_offsets = self.fields[index], self.id_offsets[index]
        old = self.dense
        self.dense = [nn.Parameter(p.detach()[index].clone()) for p in old]
        group = dense_opt.param_groups[0]
        opt = dense_adam(self.dense, group["lr"], group["weight_decay"])
        for before, after in zip(old, self.dense):
            state = dense_opt.state.get(before)
            if state:
                opt.state[after] = {key: v[index].clone() if v.dim() else v.clone() for key, v in state.items()}
        return opt


def dense_adam(params: list[nn.Parameter], lr: float, weight_decay: float) -> torch.optim.Adam:
    """Adam for the stacked dense tensors, fused into one kernel.

    The stack's six ``[M, ...]`` tensors make the default per-tensor (foreach) step a fifth of a
    stacked CPU step's non-GEMM time: 2.2 ms against 0.4 ms fused for M = 5 default MLPs on one core.
    Fused Adam rounds differently (≤ 1 ulp a step), which a stack, already another draw, may do.
    """
    return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay, fused=True)


def _write_back(model: MLP, state: list[torch.Tensor]) -> None:
    with torch.no_grad():
        model.embedding.table.weight.copy_(state[0])
        for layer, w, b in zip(_linears(model), state[1::2], state[2::2]):
            layer.weight.copy_(w.t())
            layer.bias.copy_(b[0])


@dataclass
class _Progress:
    """One member's early stopping (``Trainer``'s rule), its best weights, and its share of the time."""

    stopping: EarlyStopping
    best_state: list[torch.Tensor] | None = None
    seconds: float = 0.0
    steps: int = 0


@torch.no_grad()
def _valid_aucs(stack: _Stack, valid: SplitTensors, batch_size: int) -> list[float]:
    chunks = [torch.sigmoid(stack.forward(x, training=False)).float() for x, _ in valid.batches(batch_size)]
    probs = torch.cat(chunks, dim=1)  # [M, n], on the device: each AUC is computed there
    return [auc(valid.y, p) for p in probs]


def fit_stacked(
    models: Sequence[CTRModel],
    field_sets: Sequence[np.ndarray],
    train: SplitTensors,
    valid: SplitTensors,
    config: TrainConfig,
    seed: int,
    max_epochs: int | None = None,
) -> list[TrainResult | TrainingDiverged]:
    """Train ``models`` (model i reads columns ``field_sets[i]`` of the full-width splits) to early stopping.

    Each model ends with its best weights loaded, as after ``Trainer.fit``. The result of model i is
    its ``TrainResult`` — ``seconds`` is its share of the stack's wall-clock (each epoch's time split
    evenly among the models still training), so the shares sum to the group's time — or the
    ``TrainingDiverged`` that stopped it alone. ``train`` and ``valid`` must hold every field.
    """
    if not models:
        return []
    for model in models:
        reason = unstackable_reason(model)
        if reason is not None:
            raise ValueError(reason)
    shapes = {stack_shape(m) for m in models}
    if len(shapes) > 1:
        raise ValueError(f"stacked models must share one shape (fields, embed_dim, hidden, dropout); got {shapes}")
    if len(models) != len(field_sets) or any(len(f) != models[0].num_fields for f in field_sets):
        raise ValueError("need one field set per model, each with as many fields as the model")
    device = torch.device(config.device)
    max_epochs = config.max_epochs if max_epochs is None else max_epochs
    stack = _Stack(models, field_sets, device, config.fast_dropout)
    sparse_opt = RowSparseAdam([stack.table], lr=config.embed_lr, weight_decay=config.embed_weight_decay)
    dense_opt = dense_adam(stack.dense, config.lr, config.weight_decay)
    generator = torch.Generator().manual_seed(seed)
    progress = [_Progress(EarlyStopping(config.patience, config.min_delta)) for _ in models]
    outcomes: list[TrainResult | TrainingDiverged | None] = [None] * len(models)
    eval_batch = max(config.batch_size, config.eval_batch_size // len(models))
    epochs = 0

    def finish(position: int, epoch: int) -> None:
        member = stack.members[position]
        p = progress[member]
        improved_once = p.best_state is not None  # if not (e.g. NaN AUC): the last weights, as Trainer keeps
        _write_back(models[member], p.best_state if improved_once else stack.state_of(position))
        outcomes[member] = p.stopping.result(epoch, p.steps, p.seconds, improved_once)
        p.best_state = None

    def member_losses(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Each member's mean training loss on the batch, ``[M]``."""
        logits = stack.forward(x, training=True)
        return F.binary_cross_entropy_with_logits(logits, y.expand_as(logits), reduction="none").mean(1)

    _sync(device)
    with ThreadGovernor(device) as governor:
        for epoch in range(1, max_epochs + 1):
            start = time.perf_counter()
            for x, y in train.shuffled_batches(config.batch_size, generator):
                with governor.step():
                    losses = member_losses(x, y)
                    finite = torch.isfinite(losses)
                    if not bool(finite.all()):
                        bad = {int(i) for i in torch.nonzero(~finite).flatten()}
                        for position in sorted(bad):
                            member = stack.members[position]
                            outcomes[member] = TrainingDiverged(
                                f"loss became {losses[position].item()} at step {progress[member].steps} "
                                f"(epoch {epoch})"
                            )
                        dense_opt = stack.drop(bad, dense_opt)
                        if not stack.members:
                            break
                        losses = member_losses(x, y)
                    sparse_opt.zero_grad(set_to_none=True)
                    dense_opt.zero_grad(set_to_none=True)
                    losses.sum().backward()
                    sparse_opt.step()
                    dense_opt.step()
                for member in stack.members:
                    progress[member].steps += 1
            if not stack.members:
                break
            epochs = epoch
            aucs = _valid_aucs(stack, valid, eval_batch)
            _sync(device)
            share = (time.perf_counter() - start) / len(stack.members)
            epoch_log.info("epoch %d/%d: validation AUC %.4f (best of %d stacked)", epoch, max_epochs, max(aucs),
                           len(aucs), extra={"epoch": epoch, "max_epochs": max_epochs, "valid_auc": max(aucs)})
            done: set[int] = set()
            for position, (member, valid_auc) in enumerate(zip(stack.members, aucs)):
                p = progress[member]
                p.seconds += share
                improved, stop = p.stopping.update(epoch, valid_auc)
                if improved:
                    p.best_state = stack.state_of(position)
                elif stop:
                    done.add(position)
            for position in sorted(done):
                finish(position, epoch)
            if done:
                dense_opt = stack.drop(done, dense_opt)
            if not stack.members:
                break
        for position in range(len(stack.members)):
            finish(position, epochs)
    return [outcome for outcome in outcomes if outcome is not None]  # every member has finished or diverged
