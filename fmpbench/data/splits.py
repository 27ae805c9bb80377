"""Deterministic, chunk-independent split assignment.

Preparation streams the raw file in chunks whose size is a performance knob, so the split of a row
must depend only on its position in the stream and the split seed, never on the chunking.

``random`` (default, 8:1:1): rows are grouped in consecutive blocks of 10; inside each block a seeded
pseudo-random ranking (a SplitMix64 hash of ``(seed, row index)``) sends the first-ranked row to
valid, the second to test and the other eight to train. Every split is therefore a seeded random
sample whose size is exact to within one row, for any number of rows, without knowing the total in
advance (which a streaming pass cannot). ``sequential`` (7:2:1): the first 70 % rows (file order)
train, the next 20 % valid, the last 10 % test; it needs the total row count up front.
"""

from __future__ import annotations

import numpy as np

TRAIN, VALID, TEST = 0, 1, 2
SPLIT_NAMES = ("train", "valid", "test")
SPLIT_SCHEMES = ("random", "sequential")
_BLOCK = 10

_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_GOLD = np.uint64(0x9E3779B97F4A7C15)


def splitmix64(x: np.ndarray) -> np.ndarray:
    """Vectorised SplitMix64 finaliser: a fast, well-mixed 64-bit hash of uint64 inputs."""
    z = x.astype(np.uint64, copy=True)
    with np.errstate(over="ignore"):
        z += _GOLD
        z = (z ^ (z >> np.uint64(30))) * _M1
        z = (z ^ (z >> np.uint64(27))) * _M2
        z = z ^ (z >> np.uint64(31))
    return z


def random_split(start: int, n: int, seed: int) -> np.ndarray:
    """Split codes (0 train, 1 valid, 2 test) for rows ``start .. start+n-1`` of the stream."""
    if n <= 0:
        return np.zeros(0, dtype=np.int8)
    b0 = start // _BLOCK
    b1 = (start + n - 1) // _BLOCK + 1
    slots = np.arange(b0 * _BLOCK, b1 * _BLOCK, dtype=np.uint64)
    seed_mix = splitmix64(np.array([seed & 0xFFFFFFFFFFFFFFFF], dtype=np.uint64))[0]
    keys = splitmix64(slots ^ seed_mix).reshape(-1, _BLOCK)
    # SplitMix64 is a bijection and the slots are distinct, so a block's keys never tie: its two
    # smallest are two argmins, a third of the cost of ranking the block by sorting it.
    rows = np.arange(keys.shape[0])
    first = keys.argmin(axis=1)
    keys[rows, first] = np.iinfo(np.uint64).max
    second = keys.argmin(axis=1)
    codes = np.full(keys.shape, TRAIN, dtype=np.int8)
    codes[rows, first] = VALID
    codes[rows, second] = TEST
    off = start - b0 * _BLOCK
    return codes.reshape(-1)[off : off + n]


def sequential_bounds(total: int) -> tuple[int, int]:
    """Row indices where valid and test start for a 7:2:1 file-order split of ``total`` rows."""
    n_train = int(round(total * 0.7))
    n_valid = int(round(total * 0.2))
    return n_train, n_train + n_valid


def sequential_split(start: int, n: int, total: int) -> np.ndarray:
    """Split codes for rows ``start .. start+n-1`` of a ``total``-row stream, 7:2:1 in file order."""
    return split_at(start, n, *sequential_bounds(total))


def split_at(start: int, n: int, v0: int, t0: int) -> np.ndarray:
    """Split codes for rows ``start .. start+n-1`` when valid starts at row ``v0`` and test at ``t0``
    (a sequential split, or files that fix the split: the train file's rows, then valid's, then test's)."""
    idx = np.arange(start, start + n)
    return np.where(idx < v0, TRAIN, np.where(idx < t0, VALID, TEST)).astype(np.int8)
