"""Train-only vocabulary fitting shared by the streaming preparer and the in-memory generators.

Ids are assigned in order of decreasing train count (ties by value), starting at 1; values seen
fewer than ``min_count`` times in train, or never, map to ``OOV_ID`` (0). Frequency order makes the
ids deterministic whatever the chunking, and puts the rare-value tail at the end of each table.
"""

from __future__ import annotations

import numpy as np

from fmpbench.data.prepared import OOV_ID


def fit_dense_codes(train_values: np.ndarray, card: int, min_count: int) -> np.ndarray:
    """Map table ``code -> id`` for integer codes in ``[0, card)``, fitted on train rows only."""
    counts = np.bincount(train_values.astype(np.int64, copy=False), minlength=card)
    order = np.lexsort((np.arange(card), -counts))
    kept = order[counts[order] >= max(min_count, 1)]
    table = np.full(card, OOV_ID, dtype=np.int32)
    table[kept] = np.arange(1, kept.size + 1, dtype=np.int32)
    return table


def encode_dense_columns(
    raw: np.ndarray, train_mask: np.ndarray, cards: list[int], min_count: int
) -> tuple[np.ndarray, list[int]]:
    """Encode ``raw[:, f]`` (codes in ``[0, cards[f])``) to per-field ids; returns ``(X, field_dims)``."""
    out = np.empty(raw.shape, dtype=np.int32)
    dims: list[int] = []
    for f, card in enumerate(cards):
        table = fit_dense_codes(raw[train_mask, f], card, min_count)
        out[:, f] = table[raw[:, f]]
        dims.append(int(table.max(initial=0)) + 1)
    return out, dims
