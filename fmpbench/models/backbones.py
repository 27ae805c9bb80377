"""CTR backbones sharing one embedding layout and one field-gate slot.

Every backbone embeds the fields, multiplies them by the optional ``field_gate`` (used by gate-based
selectors during their search) and maps them to one logit per sample. ``embedding_parameters`` and
``dense_parameters`` split the parameter count the way the study reports it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import ClassVar

import torch
from torch import nn

from fmpbench.models.embedding import FieldEmbedding


def word_dropout(x: torch.Tensor, p: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Inverted dropout whose mask comes from 16-bit uniform draws cut from one stream of 64-bit words.

    ``bernoulli_`` (inside ``nn.Dropout``) draws each element on its own from the CPU's mt19937: 1.9 ms
    for a 512 × 256 activation on one core, against 0.65 ms here (one draw per four elements). The
    drop probability is ``p`` rounded to a multiple of 2⁻¹⁶ (0.2 → 0.199997). ``generator`` (on
    ``x``'s device) gives a reproducible stream; None draws from torch's global one.
    """
    words = -(-x.numel() // 4)
    bits = torch.randint(-(2**63), 2**63 - 1, (words,), dtype=torch.int64, device=x.device, generator=generator)
    draws = bits.view(torch.int16)[: x.numel()].view(x.shape)
    # the comparison writes the 0/1 mask in x's dtype at once: a bool mask and its conversion were two
    # passes (both masks of the default model, forward and backward, 0.67 -> 0.47 ms on one core)
    keep = torch.ge(draws, round(p * 65536) - 32768, out=torch.empty_like(x, memory_format=torch.contiguous_format))
    return x * keep.mul_(1.0 / (1.0 - p))


class Dropout(nn.Dropout):
    """``nn.Dropout``, or with ``generator`` set, :func:`word_dropout` masks drawn from it.

    The trainer sets ``generator`` with ``TrainConfig(fast_dropout=True)`` (the default); unset, this
    is ``nn.Dropout`` exactly — what the committed study ran with (``configs/study.toml`` pins it).
    """

    generator: torch.Generator | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.generator is None or not self.training or not 0 < self.p < 1:
            return super().forward(x)
        return word_dropout(x, self.p, self.generator)


def mlp_tower(in_dim: int, hidden: Sequence[int], dropout: float, batch_norm: bool) -> nn.Sequential:
    """Linear → [BatchNorm] → ReLU → [Dropout] blocks; the output width is ``hidden[-1]``."""
    layers: list[nn.Module] = []
    for width in hidden:
        layers.append(nn.Linear(in_dim, width))
        if batch_norm:
            layers.append(nn.BatchNorm1d(width))
        layers.append(nn.ReLU())
        if dropout > 0:
            layers.append(Dropout(dropout))
        in_dim = width
    return nn.Sequential(*layers)


class CTRModel(nn.Module):
    """Base class: embedding, field gate slot, parameter accounting.

    ``field_gate`` is a module mapping embeddings ``[B, F, d]`` to field weights broadcastable to
    ``[B, F]``; it belongs to a selector's search, never to a retrained model. Every backbone ends
    in a ``head`` linear layer producing the logit.
    """

    name: ClassVar[str] = ""

    def __init__(self, field_dims: Sequence[int], embed_dim: int = 16) -> None:
        super().__init__()
        self.field_dims = [int(d) for d in field_dims]
        self.num_fields = len(self.field_dims)
        self.embed_dim = embed_dim
        self.embedding = FieldEmbedding(self.field_dims, embed_dim)
        self.field_gate: nn.Module | None = None

    head: nn.Linear

    def init_output_bias(self, label_rate: float) -> None:
        """Start the output at the base rate's log-odds, so early epochs are not spent learning it."""
        rate = min(max(label_rate, 1e-6), 1 - 1e-6)
        with torch.no_grad():
            self.head.bias.fill_(math.log(rate / (1 - rate)))

    def gate_weights(self, emb: torch.Tensor) -> torch.Tensor | None:
        return None if self.field_gate is None else self.field_gate(emb)

    def embed(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Gated field embeddings ``[B, F, d]`` and the field weights that were applied.

        A gate that needs the ids or does more than scale a field (OptFS's per-value gates,
        ShuffleGate's mixing with other rows) defines ``gate_embeddings(x, emb)``, returning the
        gated embeddings and the weights ``[B, F]`` that first-order terms are scaled by.
        """
        emb = self.embedding(x)
        gate_embeddings = getattr(self.field_gate, "gate_embeddings", None)
        if gate_embeddings is not None:
            return gate_embeddings(x, emb)
        weights = self.gate_weights(emb)
        if weights is not None:
            emb = emb * weights.unsqueeze(-1)
        return emb, weights

    def embedding_modules(self) -> list[nn.Embedding]:
        return [m for m in self.modules() if isinstance(m, nn.Embedding)]

    def embedding_parameters(self) -> int:
        return sum(m.weight.numel() for m in self.embedding_modules())

    def dense_parameters(self) -> int:
        emb_ids = {id(m.weight) for m in self.embedding_modules()}
        gate_ids = set() if self.field_gate is None else {id(p) for p in self.field_gate.parameters()}
        return sum(p.numel() for p in self.parameters() if id(p) not in emb_ids | gate_ids)


class MLP(CTRModel):
    """Embeddings concatenated into an MLP tower (the default backbone)."""

    name = "mlp"

    def __init__(
        self,
        field_dims: Sequence[int],
        embed_dim: int = 16,
        hidden: Sequence[int] = (256, 128),
        dropout: float = 0.1,
        batch_norm: bool = False,
    ) -> None:
        super().__init__(field_dims, embed_dim)
        self.hidden = list(hidden)
        self.mlp = mlp_tower(self.num_fields * embed_dim, hidden, dropout, batch_norm)
        self.head = nn.Linear(hidden[-1] if hidden else self.num_fields * embed_dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        emb, _ = self.embed(x)
        return self.head(self.mlp(emb.flatten(1))).squeeze(-1)


class _WithFirstOrder(CTRModel):
    """An MLP beside a per-value scalar weight (the 'wide' / first-order part), gated like the embeddings.

    ``shallow_scale`` (default 0.1) multiplies the first-order weights, and DeepFM's embeddings where
    the FM term reads them. Why: the embedding tables train with row-sparse Adam at ``embed_lr``
    (1e-2, ten times the dense ``lr``), and under Adam a parameter used as c·w moves c times as fast,
    so 0.1 makes these shallow terms learn at the 1e-3 that DeepCTR-Torch and FuxiCTR train them with,
    while the MLP keeps reading the raw embeddings. Unscaled, the FM term — quadratic in the
    embeddings, summed over F(F−1)/2 pairs — dominated the logit after one epoch: on a 200k-row
    Criteo stand-in DeepFM reached test AUC 0.8286 against the MLP's 0.8673; scaled, 0.8675.
    """

    def __init__(
        self,
        field_dims: Sequence[int],
        embed_dim: int = 16,
        hidden: Sequence[int] = (256, 128),
        dropout: float = 0.1,
        batch_norm: bool = False,
        shallow_scale: float = 0.1,
    ) -> None:
        super().__init__(field_dims, embed_dim)
        self.shallow_scale = shallow_scale
        self.first_order = FieldEmbedding(self.field_dims, 1)
        self.bias = nn.Parameter(torch.zeros(1))
        self.mlp = mlp_tower(self.num_fields * embed_dim, hidden, dropout, batch_norm)
        self.head = nn.Linear(hidden[-1], 1)

    def linear_term(self, x: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
        w = self.shallow_scale * self.first_order(x).squeeze(-1)
        if weights is not None:
            w = w * weights
        return w.sum(1) + self.bias


class DeepFM(_WithFirstOrder):
    """Guo et al. 2017: first-order + FM pairwise term + MLP on the same embeddings."""

    name = "deepfm"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        emb, weights = self.embed(x)
        fm_emb = self.shallow_scale * emb
        square_of_sum = fm_emb.sum(1).pow(2)
        sum_of_square = fm_emb.pow(2).sum(1)
        fm = 0.5 * (square_of_sum - sum_of_square).sum(1)
        deep = self.head(self.mlp(emb.flatten(1))).squeeze(-1)
        return self.linear_term(x, weights) + fm + deep


class DCN(CTRModel):
    """Wang et al. 2017: explicit cross layers beside an MLP, concatenated into one head."""

    name = "dcn"

    def __init__(
        self,
        field_dims: Sequence[int],
        embed_dim: int = 16,
        hidden: Sequence[int] = (256, 128),
        dropout: float = 0.1,
        batch_norm: bool = False,
        cross_layers: int = 2,
    ) -> None:
        super().__init__(field_dims, embed_dim)
        in_dim = self.num_fields * embed_dim
        self.cross = nn.ModuleList(nn.Linear(in_dim, 1, bias=False) for _ in range(cross_layers))
        self.cross_bias = nn.ParameterList(nn.Parameter(torch.zeros(in_dim)) for _ in range(cross_layers))
        self.mlp = mlp_tower(in_dim, hidden, dropout, batch_norm)
        self.head = nn.Linear(in_dim + hidden[-1], 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        emb, _ = self.embed(x)
        x0 = emb.flatten(1)
        xl = x0
        for layer, bias in zip(self.cross, self.cross_bias):
            xl = x0 * layer(xl) + bias + xl
        return self.head(torch.cat([xl, self.mlp(x0)], dim=1)).squeeze(-1)


class WideDeep(_WithFirstOrder):
    """Cheng et al. 2016: a wide linear part over field values plus an MLP."""

    name = "widedeep"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        emb, weights = self.embed(x)
        return self.linear_term(x, weights) + self.head(self.mlp(emb.flatten(1))).squeeze(-1)


class AutoInt(CTRModel):
    """Song et al., CIKM 2019: multi-head self-attention over the field embeddings, with residuals.

    Each of ``attention_layers`` layers maps every field's vector through per-head query, key and
    value projections (``attention_heads`` heads of ``attention_dim`` each, no bias, as in the
    paper), attends over the F fields with softmax(⟨q_m, k_k⟩) (the paper's unscaled dot product),
    concatenates the heads and adds a residual projection W_res·e_m before a ReLU. The final field
    vectors, flattened, feed the head; with ``hidden`` non-empty an MLP tower on the raw embeddings
    runs in parallel and is concatenated before the head (AutoInt+, the paper's variant with a deep
    part). Defaults: 2 layers, 2 heads, attention_dim 16 (32 per field after a layer), tower
    256-128 like the other backbones (``hidden=()`` gives plain AutoInt).
    """

    name = "autoint"

    def __init__(
        self,
        field_dims: Sequence[int],
        embed_dim: int = 16,
        hidden: Sequence[int] = (256, 128),
        dropout: float = 0.1,
        batch_norm: bool = False,
        attention_layers: int = 2,
        attention_heads: int = 2,
        attention_dim: int = 16,
    ) -> None:
        super().__init__(field_dims, embed_dim)
        self.heads, self.head_dim = attention_heads, attention_dim
        width = attention_heads * attention_dim
        dims = [embed_dim] + [width] * attention_layers
        # one matrix per layer holding the query, key, value and residual projections side by side
        self.attention = nn.ModuleList(nn.Linear(d, 4 * width, bias=False) for d in dims[:-1])
        self.hidden = list(hidden)
        self.mlp = mlp_tower(self.num_fields * embed_dim, hidden, dropout, batch_norm) if hidden else None
        self.head = nn.Linear(self.num_fields * dims[-1] + (hidden[-1] if hidden else 0), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        emb, _ = self.embed(x)
        batch = emb.shape[0]
        h = emb
        for layer in self.attention:
            q, k, v, residual = layer(h).chunk(4, dim=-1)
            q, k, v = (t.view(batch, self.num_fields, self.heads, self.head_dim).transpose(1, 2) for t in (q, k, v))
            attended = torch.softmax(q @ k.transpose(-1, -2), dim=-1) @ v
            h = torch.relu(attended.transpose(1, 2).reshape(batch, self.num_fields, -1) + residual)
        parts = [h.flatten(1)] + ([self.mlp(emb.flatten(1))] if self.mlp is not None else [])
        return self.head(torch.cat(parts, dim=1)).squeeze(-1)


class DCNv2(CTRModel):
    """Wang et al., WWW 2021: full-matrix cross layers x_{l+1} = x0 ⊙ (W_l x_l + b_l) + x_l.

    The cross network (``cross_layers`` layers, W_l of size (F·d)², the paper's full-rank form) and
    an MLP tower run in parallel on the flattened embeddings x0 and are concatenated into the head
    (the paper's "parallel" structure). Defaults: 2 cross layers, tower 256-128. The cross weights
    grow with (F·d)²: 39 Criteo fields at d = 16 give 2 × 390 k parameters, so dropping fields
    shrinks the dense part quadratically.
    """

    name = "dcnv2"

    def __init__(
        self,
        field_dims: Sequence[int],
        embed_dim: int = 16,
        hidden: Sequence[int] = (256, 128),
        dropout: float = 0.1,
        batch_norm: bool = False,
        cross_layers: int = 2,
    ) -> None:
        super().__init__(field_dims, embed_dim)
        in_dim = self.num_fields * embed_dim
        self.cross = nn.ModuleList(nn.Linear(in_dim, in_dim) for _ in range(cross_layers))
        self.mlp = mlp_tower(in_dim, hidden, dropout, batch_norm)
        self.head = nn.Linear(in_dim + hidden[-1], 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        emb, _ = self.embed(x)
        x0 = emb.flatten(1)
        xl = x0
        for layer in self.cross:
            xl = x0 * layer(xl) + xl
        return self.head(torch.cat([xl, self.mlp(x0)], dim=1)).squeeze(-1)


BACKBONES: dict[str, Callable[..., CTRModel]] = {
    cls.name: cls for cls in (MLP, DeepFM, DCN, WideDeep, AutoInt, DCNv2)
}


def build_backbone(name: str, field_dims: Sequence[int], **params: object) -> CTRModel:
    """Instantiate a backbone by name; unknown names raise a one-line ValueError listing choices."""
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone '{name}'; choose from: {', '.join(BACKBONES)}")
    return BACKBONES[name](field_dims, **params)
