"""Encodings of categorical field ids for the shallow (filter) methods, fitted on training rows only.

ERASE feeds label-encoded ids to linear models and trees as if they were numbers; here ids are
one-hot encoded (sparse) for linear models, and frequency / target encoded for trees.
"""

from __future__ import annotations

import os

import numpy as np
import scipy.sparse as sp
import torch

from fmpbench.data.prepared import Split


def subsample(split: Split, max_rows: int | None, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """At most ``max_rows`` rows of a split (uniform without replacement, seeded), as in-memory arrays.

    When the split has both classes, so does the subsample (one row swapped in if the draw missed one).
    """
    n = len(split)
    if max_rows is None or n <= max_rows:
        return np.asarray(split.X), np.asarray(split.y)
    rng = np.random.default_rng(seed)
    idx = rng.choice(n, size=max_rows, replace=False)
    drawn = np.asarray(split.y[idx])
    if drawn.min() == drawn.max():  # rare clicks: keep both classes, or lasso and rf cannot fit at all
        other = np.flatnonzero(np.asarray(split.y) != drawn[0])
        if other.size:
            idx[0] = rng.choice(other)
    idx = np.sort(idx)
    return np.asarray(split.X[idx]), np.asarray(split.y[idx])


def one_hot(X: np.ndarray, field_dims: list[int]) -> sp.csr_matrix:
    """Sparse one-hot matrix ``[n, sum(field_dims)]``; column block f belongs to field f."""
    n, num_fields = X.shape
    offsets = np.concatenate([[0], np.cumsum(field_dims)[:-1]]).astype(np.int64)
    cols = (X.astype(np.int64) + offsets).ravel()
    indptr = np.arange(0, n * num_fields + 1, num_fields, dtype=np.int64)
    data = np.ones(n * num_fields, dtype=np.float32)
    return sp.csr_matrix((data, cols, indptr), shape=(n, int(np.sum(field_dims))))


def field_blocks(field_dims: list[int]) -> list[slice]:
    """Column slices of each field in :func:`one_hot`'s output."""
    bounds = np.concatenate([[0], np.cumsum(field_dims)])
    return [slice(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:])]


def frequency_encode(X_fit: np.ndarray, X: np.ndarray, field_dims: list[int]) -> np.ndarray:
    """Each id replaced by its relative frequency among the fitting rows (per field)."""
    out = np.empty(X.shape, dtype=np.float32)
    for f, dim in enumerate(field_dims):
        freq = np.bincount(X_fit[:, f], minlength=dim) / max(len(X_fit), 1)
        out[:, f] = freq[X[:, f]]
    return out


def target_encode(
    X_fit: np.ndarray, y_fit: np.ndarray, X: np.ndarray, field_dims: list[int], smoothing: float = 20.0
) -> np.ndarray:
    """Smoothed mean label of each id among the fitting rows (shrunk towards the global rate)."""
    prior = float(np.mean(y_fit)) if len(y_fit) else 0.5
    out = np.empty(X.shape, dtype=np.float32)
    for f, dim in enumerate(field_dims):
        counts = np.bincount(X_fit[:, f], minlength=dim)
        positives = np.bincount(X_fit[:, f], weights=y_fit, minlength=dim)
        out[:, f] = ((positives + smoothing * prior) / (counts + smoothing))[X[:, f]]
    return out


def target_encode_out_of_fold(
    X: np.ndarray, y: np.ndarray, field_dims: list[int], folds: int, seed: int, smoothing: float = 20.0
) -> np.ndarray:
    """Target encoding of the fitting rows themselves, each fold encoded by the other folds (no leak)."""
    fold_of = np.random.default_rng(seed).integers(0, folds, size=len(X))
    out = np.empty(X.shape, dtype=np.float32)
    for fold in range(folds):
        held = fold_of == fold
        out[held] = target_encode(X[~held], y[~held], X[held], field_dims, smoothing)
    return out


def thread_budget() -> int:
    """Threads this process may use: torch's budget, which ``--jobs N`` sets to each worker's share of
    the cores, and never more than the cores it may run on (affinity masks, e.g. a job scheduler's).

    Tree libraries follow the same budget as torch, so N workers do not oversubscribe the cores.
    """
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(cores, torch.get_num_threads()))


def tree_encode(
    X_fit: np.ndarray, y_fit: np.ndarray, X_eval: np.ndarray, field_dims: list[int], folds: int, seed: int,
    smoothing: float = 20.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Target + frequency encodings ``[n, 2F]`` of the fitting rows (target part out-of-fold) and of
    evaluation rows (encoded with all fitting rows). Column ``f`` and ``F + f`` both belong to field f.
    """
    fit = np.hstack([
        target_encode_out_of_fold(X_fit, y_fit, field_dims, folds, seed, smoothing),
        frequency_encode(X_fit, X_fit, field_dims),
    ])
    evaluation = np.hstack([
        target_encode(X_fit, y_fit, X_eval, field_dims, smoothing),
        frequency_encode(X_fit, X_eval, field_dims),
    ])
    return fit, evaluation
