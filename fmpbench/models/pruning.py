"""Gated backbones and their physical pruning (the model side of Light-FMP).

:func:`add_gates` puts hard-concrete gates on a backbone built by ``build_backbone``: one per field (in
the ``field_gate`` slot), one per hidden unit after each activation of the MLP tower, and optionally one
per embedding dimension. :func:`prune` then builds a *plain* backbone of the kept sizes whose weights
are sliced from the gated one with the deterministic gate values folded in, so that in evaluation mode
it computes exactly what the gated network computes once the dropped gates are shut
(:func:`shut_dropped_gates`): the pruned model is smaller for real and needs no gate at inference.

Folding, for a field f kept with gate z_f and embedding dimension j kept with gate z_j: the field's
embedding rows are multiplied by z_f·z_j (and DeepFM/Wide&Deep's first-order rows by z_f). A hidden
unit's gate z ≥ 0 multiplies ReLU(BN(·)) and dropout is elementwise, so z moves into the input column of
the next layer (the next Linear, or the head). BatchNorm entries (affine parameters and running
statistics) are sliced unit by unit, which keeps evaluation-mode BN exact.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from fmpbench.models.backbones import MLP, CTRModel, DeepFM, WideDeep, build_backbone
from fmpbench.models.embedding import FieldEmbedding
from fmpbench.models.hard_concrete import HardConcrete

#: backbones whose field pruning is exact; DCN's cross layers add a bias at every input position,
#: so a dropped field's positions stay non-zero in the gated network and cannot be removed exactly
PRUNABLE_BACKBONES: tuple[type[CTRModel], ...] = (MLP, DeepFM, WideDeep)


class FieldHardConcreteGate(nn.Module):
    """The ``field_gate`` slot of a backbone: ``[B, F]`` gate draws in training, ``[F]`` at evaluation."""

    def __init__(self, num_fields: int, init_log_alpha: float) -> None:
        super().__init__()
        self.gate = HardConcrete(num_fields, init_log_alpha)

    def forward(self, emb: torch.Tensor) -> torch.Tensor:
        return self.gate(emb.shape[0])


class UnitGate(nn.Module):
    """Multiplies the ``[B, width]`` activations of one hidden layer by their hard-concrete gates."""

    def __init__(self, width: int, init_log_alpha: float) -> None:
        super().__init__()
        self.gate = HardConcrete(width, init_log_alpha)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h * self.gate(h.shape[0])


class DimGatedEmbedding(nn.Module):
    """A :class:`FieldEmbedding` whose output dimensions are gated (the same gate for every field)."""

    def __init__(self, embedding: FieldEmbedding, init_log_alpha: float) -> None:
        super().__init__()
        self.inner = embedding
        self.gate = HardConcrete(embedding.dim, init_log_alpha)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        emb = self.inner(x)
        return emb * self.gate(emb.shape[0]).unsqueeze(-2)


@dataclass(frozen=True)
class TowerLayer:
    """One block of an MLP tower as the pruner sees it."""

    linear: nn.Linear
    batch_norm: nn.BatchNorm1d | None
    gate: UnitGate | None
    dropout: float


def tower_layers(tower: nn.Sequential) -> list[TowerLayer]:
    """Split a Linear → [BN] → ReLU → [UnitGate] → [Dropout] tower into its blocks."""
    blocks: list[list[nn.Module]] = []
    for module in tower:
        if isinstance(module, nn.Linear):
            blocks.append([])
        if not blocks:
            raise ValueError(f"MLP tower must start with a Linear layer, found {type(module).__name__}")
        blocks[-1].append(module)
    layers = []
    for block in blocks:
        bn = next((m for m in block if isinstance(m, nn.BatchNorm1d)), None)
        gate = next((m for m in block if isinstance(m, UnitGate)), None)
        drop = next((m.p for m in block if isinstance(m, nn.Dropout)), 0.0)
        layers.append(TowerLayer(block[0], bn, gate, drop))
    return layers


def add_gates(
    model: CTRModel, *, hidden: bool = True, embedding_dims: bool = False, init_log_alpha: float = 3.0
) -> CTRModel:
    """Attach hard-concrete gates to ``model`` in place (fields always; hidden units, embedding dims on request).

    Unit gates go right after each ReLU of ``model.mlp``; the backbone's forward is unchanged, so any
    backbone with an ``mlp`` tower can be searched (only :data:`PRUNABLE_BACKBONES` can be pruned).
    """
    if model.field_gate is not None:
        raise ValueError("model already has a field gate")
    model.field_gate = FieldHardConcreteGate(model.num_fields, init_log_alpha)
    if hidden and hasattr(model, "mlp"):
        gated: list[nn.Module] = []
        width = 0
        for module in model.mlp:
            gated.append(module)
            if isinstance(module, nn.Linear):
                width = module.out_features
            if isinstance(module, nn.ReLU):
                gated.append(UnitGate(width, init_log_alpha))
        model.mlp = nn.Sequential(*gated)
    if embedding_dims:
        model.embedding = DimGatedEmbedding(model.embedding, init_log_alpha)
    return model


def gate_groups(model: CTRModel) -> dict[str, HardConcrete]:
    """The gates of a gated model by group name: ``fields``, ``hidden_1``, ``hidden_2``, …, ``embed_dims``."""
    if not isinstance(model.field_gate, FieldHardConcreteGate):
        raise ValueError("model has no hard-concrete field gate (call add_gates first)")
    groups = {"fields": model.field_gate.gate}
    if hasattr(model, "mlp"):
        for i, layer in enumerate(tower_layers(model.mlp), start=1):
            if layer.gate is not None:
                groups[f"hidden_{i}"] = layer.gate.gate
    if isinstance(model.embedding, DimGatedEmbedding):
        groups["embed_dims"] = model.embedding.gate
    return groups


def top_indices(scores: torch.Tensor | np.ndarray, m: int) -> np.ndarray:
    """Ascending indices of the ``m`` highest scores; ties go to the lower index (as ``Selector.ranking``)."""
    values = np.asarray(torch.as_tensor(scores).detach().cpu(), dtype=np.float64)
    return np.sort(np.lexsort((np.arange(len(values)), -values))[:m])


def kept_count(ratio: float, width: int) -> int:
    """``round(ratio · width)`` (halves up), at least 1: a layer is never removed entirely."""
    return min(width, max(1, int(ratio * width + 0.5)))


@dataclass(frozen=True)
class PrunePlan:
    """What survives pruning: field indices, kept units per hidden layer, kept embedding dims (ascending)."""

    fields: np.ndarray
    units: tuple[np.ndarray, ...]
    dims: np.ndarray

    @property
    def hidden(self) -> list[int]:
        return [len(u) for u in self.units]


def prune_plan(
    model: CTRModel,
    k: int,
    keep_ratio: float = 0.5,
    embed_keep_ratio: float = 1.0,
    fields: np.ndarray | None = None,
) -> PrunePlan:
    """Top-k fields and top-``round(keep_ratio·width)`` units per gated layer by log α.

    Layers without unit gates keep every unit; embedding dims are cut to ``embed_keep_ratio`` only when
    they are gated. ``fields`` overrides the field choice (e.g. a selector's ``get_support(k)``).
    """
    groups = gate_groups(model)
    if not 1 <= k <= model.num_fields:
        raise ValueError(f"k must be between 1 and {model.num_fields}, got {k}")
    chosen = top_indices(groups["fields"].log_alpha, k) if fields is None else np.sort(np.asarray(fields))
    units = []
    for i, layer in enumerate(tower_layers(model.mlp), start=1):
        width = layer.linear.out_features
        gate = groups.get(f"hidden_{i}")
        units.append(np.arange(width) if gate is None else top_indices(gate.log_alpha, kept_count(keep_ratio, width)))
    dims = np.arange(model.embed_dim)
    if "embed_dims" in groups:
        dims = top_indices(groups["embed_dims"].log_alpha, kept_count(embed_keep_ratio, model.embed_dim))
    return PrunePlan(chosen, tuple(units), dims)


def shut_dropped_gates(model: CTRModel, plan: PrunePlan) -> None:
    """Set the gate masks of ``model`` so that only what ``plan`` keeps stays open (in place)."""
    groups = gate_groups(model)
    kept = {"fields": plan.fields, "embed_dims": plan.dims}
    kept |= {f"hidden_{i}": u for i, u in enumerate(plan.units, start=1)}
    for name, gate in groups.items():
        mask = torch.zeros_like(gate.mask)
        mask[_index(kept[name], mask)] = 1.0
        gate.mask.copy_(mask)


def _field_embedding(model: CTRModel) -> FieldEmbedding:
    emb = model.embedding
    return emb.inner if isinstance(emb, DimGatedEmbedding) else emb


def _index(indices: np.ndarray, like: torch.Tensor) -> torch.Tensor:
    return torch.as_tensor(indices, dtype=torch.long, device=like.device)


def _gate_values(gate: HardConcrete | None, n: int, like: torch.Tensor) -> torch.Tensor:
    if gate is None:
        return torch.ones(n, dtype=like.dtype, device=like.device)
    return gate.deterministic().detach().to(like)


def _sliced_rows(embedding: FieldEmbedding, fields: np.ndarray, cols: np.ndarray, scale: torch.Tensor) -> torch.Tensor:
    """Rows of the kept fields (in order), kept columns, each field's rows times its gate value."""
    weight = embedding.table.weight.detach()
    parts = [weight[embedding.field_rows(int(f))][:, _index(cols, weight)] * scale[i] for i, f in enumerate(fields)]
    return torch.cat(parts, 0)


def pruned_architecture(model: CTRModel, plan: PrunePlan) -> CTRModel:
    """A freshly initialised plain backbone of the kept sizes (same class and settings as ``model``)."""
    if not isinstance(model, PRUNABLE_BACKBONES):
        supported = ", ".join(cls.name for cls in PRUNABLE_BACKBONES)
        raise ValueError(
            f"physical pruning supports the backbones {supported}, not '{model.name}' "
            "(its cross layers keep dropped input positions alive)"
        )
    layers = tower_layers(model.mlp)
    field_dims = [model.field_dims[int(f)] for f in plan.fields]
    return build_backbone(
        model.name,
        field_dims,
        embed_dim=len(plan.dims),
        hidden=tuple(plan.hidden),
        dropout=max((layer.dropout for layer in layers), default=0.0),
        batch_norm=any(layer.batch_norm is not None for layer in layers),
    )


@torch.no_grad()
def prune(model: CTRModel, plan: PrunePlan) -> CTRModel:
    """A plain backbone holding only what ``plan`` keeps, with the deterministic gates folded in.

    In evaluation mode ``prune(model, plan)(x[:, plan.fields])`` equals ``model(x)`` after
    :func:`shut_dropped_gates(model, plan)`; ``model`` itself is left unchanged.
    """
    groups = gate_groups(model)
    pruned = pruned_architecture(model, plan).to(groups["fields"].log_alpha.device)
    source = _field_embedding(model)
    weight = source.table.weight
    field_z = _gate_values(groups["fields"], model.num_fields, weight)[_index(plan.fields, weight)]
    dim_z = _gate_values(groups.get("embed_dims"), model.embed_dim, weight)[_index(plan.dims, weight)]
    pruned.embedding.table.weight.copy_(_sliced_rows(source, plan.fields, plan.dims, field_z[:, None] * dim_z))
    if isinstance(model, (DeepFM, WideDeep)):
        pruned.first_order.table.weight.copy_(_sliced_rows(model.first_order, plan.fields, np.arange(1), field_z))
        pruned.bias.copy_(model.bias)

    # input columns of the first layer: kept dims of each kept field, in flatten order (field-major)
    cols = (plan.fields[:, None] * model.embed_dim + plan.dims[None, :]).ravel()
    col_scale = torch.ones(len(cols), dtype=weight.dtype, device=weight.device)
    for layer, new_layer, units in zip(tower_layers(model.mlp), tower_layers(pruned.mlp), plan.units):
        _copy_linear(layer.linear, new_layer.linear, units, cols, col_scale)
        if layer.batch_norm is not None and new_layer.batch_norm is not None:
            _copy_batch_norm(layer.batch_norm, new_layer.batch_norm, units)
        gate = None if layer.gate is None else layer.gate.gate
        cols, col_scale = units, _gate_values(gate, layer.linear.out_features, weight)[_index(units, weight)]
    _copy_linear(model.head, pruned.head, np.arange(model.head.out_features), cols, col_scale)
    return pruned


def _copy_linear(src: nn.Linear, dst: nn.Linear, rows: np.ndarray, cols: np.ndarray, col_scale: torch.Tensor) -> None:
    r = _index(rows, src.weight)
    dst.weight.copy_(src.weight[r][:, _index(cols, src.weight)] * col_scale[None, :])
    if src.bias is not None and dst.bias is not None:
        dst.bias.copy_(src.bias[r])


def _copy_batch_norm(src: nn.BatchNorm1d, dst: nn.BatchNorm1d, units: np.ndarray) -> None:
    u = _index(units, src.weight)
    for name in ("weight", "bias", "running_mean", "running_var"):
        getattr(dst, name).copy_(getattr(src, name)[u])
    dst.num_batches_tracked.copy_(src.num_batches_tracked)
    dst.eps, dst.momentum = src.eps, src.momentum


#: log α at which a hard-concrete gate's deterministic value is exactly 1 (σ(3)·1.2 − 0.1 > 1, clamped)
OPEN_LOG_ALPHA = 3.0


def magnitude_plan(model: CTRModel, keep_ratio: float) -> PrunePlan:
    """Structured magnitude pruning of a plain backbone's MLP tower, layer by layer.

    In each hidden layer keep the round(keep_ratio·width) units whose incoming weights — restricted
    to the inputs that survive, i.e. the units kept in the layer before — have the largest L2 norm
    (ties to the lower index). Fields and embedding dimensions are all kept.
    """
    units = []
    cols: np.ndarray | None = None
    for layer in tower_layers(model.mlp):
        weight = layer.linear.weight.detach()
        if cols is not None:
            weight = weight[:, _index(cols, weight)]
        kept = top_indices(weight.norm(dim=1), kept_count(keep_ratio, layer.linear.out_features))
        units.append(kept)
        cols = kept
    return PrunePlan(np.arange(model.num_fields), tuple(units), np.arange(model.embed_dim))


def magnitude_prune(model: CTRModel, keep_ratio: float) -> tuple[CTRModel, PrunePlan]:
    """The plain backbone with :func:`magnitude_plan`'s units only, weights copied unchanged.

    Implemented as :func:`prune` of a copy gated with every gate exactly open, so the surviving units
    compute what they computed in ``model`` (in evaluation mode, given the same inputs from the layer
    before). ``model`` is left unchanged.
    """
    plan = magnitude_plan(model, keep_ratio)
    gated = add_gates(copy.deepcopy(model), hidden=True, init_log_alpha=OPEN_LOG_ALPHA)
    return prune(gated, plan), plan
