"""One embedding table for all fields, addressed through per-field offsets.

Keeping k of F fields builds a table with only those fields' rows, so pruning fields shrinks the
parameter count for real. ``sparse=True`` makes the gradient touch only the rows of a batch, so an
optimiser step costs the same at vocabulary 10 k and 10 M.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class FieldEmbedding(nn.Module):
    """Maps per-field local ids ``[B, F]`` to vectors ``[B, F, dim]``."""

    def __init__(self, field_dims: Sequence[int], dim: int, *, sparse: bool = True) -> None:
        super().__init__()
        dims = torch.as_tensor(list(field_dims), dtype=torch.long)
        self.field_dims = [int(d) for d in field_dims]
        self.dim = dim
        self.table = nn.Embedding(int(dims.sum()), dim, sparse=sparse)
        offsets = torch.zeros(len(self.field_dims), dtype=torch.long)
        offsets[1:] = torch.cumsum(dims, 0)[:-1]
        self.register_buffer("offsets", offsets, persistent=False)
        nn.init.normal_(self.table.weight, std=0.01 if dim > 1 else 0.001)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.table(x.long() + self.offsets)

    def field_rows(self, field: int) -> slice:
        """Rows of ``table`` that belong to one field (used when physically pruning fields)."""
        start = int(self.offsets[field])
        return slice(start, start + self.field_dims[field])
