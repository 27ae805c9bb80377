"""Lazy (row-wise) Adam for sparse embedding gradients.

``torch.optim.SparseAdam`` spends most of a CTR step in generic sparse-tensor arithmetic
(coalesce, sparse adds into dense state): measured at ~47 ms of a 58 ms step for a 841 k-row table,
batch 4096 × 39 fields on 2 cores. This optimiser applies the same lazy-Adam rule — moments and
weights are updated only for the rows present in the batch — with dense gathers/scatters on those
rows, so its cost follows the number of distinct ids in a batch, not the vocabulary.

Duplicate ids are merged without a sort: a per-table slot array (one int64 per row, written only at
the batch's ids) finds each id's first occurrence, which gives the distinct rows (in order of first
occurrence) and every id's row number with a few O(ids) scatters and gathers (the row numbers are
the first occurrences' ranks, so the table is touched twice, not four times). ``torch.unique``'s
comparison sort cost ~1.2 ms of a 20 ms default step. Each row's gradient is still summed by
``index_add_`` in the batch's order, and the per-row arithmetic is the same as before, so the
result is bit-identical to the sorted merge (rows are independent; only their order changed).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

from fmpbench.training.threads import one_thread

#: Below this many ids a sparse step runs on one thread (the default model's batch has 512 × 39).
SERIAL_IDS = 65_536


def merge_duplicate_rows(
    ids: torch.Tensor, values: torch.Tensor, slot: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Distinct ``ids`` (first-occurrence order) and the sum of ``values`` per distinct id.

    ``slot`` is scratch space with one entry per table row; only the entries at ``ids`` are read
    or written. Sums run in batch order from zero, as ``torch.unique`` + ``index_add_`` do.
    """
    position = torch.arange(ids.numel(), device=ids.device)
    slot.scatter_reduce_(0, ids, position, "amin", include_self=False)
    first = slot.index_select(0, ids)
    is_first = first == position
    rows = ids.masked_select(is_first)
    # each first occurrence's row number is its rank among them: gathered from this small array, not the table
    inverse = (is_first.cumsum(0) - 1).index_select(0, first)
    merged = values.new_zeros((rows.numel(),) + values.shape[1:]).index_add_(0, inverse, values)
    return rows, merged


class RowSparseAdam(torch.optim.Optimizer):
    """Adam on the rows touched by a sparse gradient (semantics of ``torch.optim.SparseAdam``).

    ``weight_decay`` adds an L2 term to the gradient of the rows present in the batch (lazy L2, as
    in most CTR libraries): rare ids, which overfit first, are the ones it holds back.
    """

    def __init__(
        self,
        params: Iterable[torch.nn.Parameter],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
    ) -> None:
        super().__init__(params, {"lr": lr, "betas": betas, "eps": eps, "weight_decay": weight_decay})
        #: per-table scratch for merge_duplicate_rows; not optimiser state, so not in state_dict
        self._slots: dict[torch.Tensor, torch.Tensor] = {}

    def _merge(self, p: torch.Tensor, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Rows of ``p`` in the sparse ``grad`` and their summed gradients."""
        if p not in self._slots:
            self._slots[p] = torch.empty(p.shape[0], dtype=torch.long, device=p.device)
        return merge_duplicate_rows(grad._indices()[0], grad._values(), self._slots[p])

    @torch.no_grad()
    def step(self, closure=None):  # noqa: ANN001 - torch's optimiser signature
        grads = [p.grad for group in self.param_groups for p in group["params"] if p.grad is not None]
        ids = sum(grad._nnz() for grad in grads if grad.is_sparse)
        with one_thread(ids < SERIAL_IDS):
            self._update()

    def _update(self) -> None:
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                grad = p.grad
                if not grad.is_sparse:
                    raise RuntimeError("RowSparseAdam needs sparse gradients (nn.Embedding(sparse=True))")
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    # first and second moments side by side: one gather and one scatter per step
                    state["moments"] = torch.zeros((p.shape[0], 2) + p.shape[1:], dtype=p.dtype, device=p.device)
                state["step"] += 1
                rows, g = self._merge(p, grad)
                weights = p.index_select(0, rows)  # gathered once: for the L2 term and the update
                if group["weight_decay"]:
                    # lazy L2: only rows seen in the batch are regularised, as their gradient is
                    g.add_(weights, alpha=group["weight_decay"])
                moments = state["moments"].index_select(0, rows)
                exp_avg, exp_avg_sq = moments[:, 0], moments[:, 1]
                exp_avg.mul_(beta1).add_(g, alpha=1 - beta1)
                exp_avg_sq.mul_(beta2).addcmul_(g, g, value=1 - beta2)
                state["moments"].index_copy_(0, rows, moments)
                step = state["step"]
                step_size = group["lr"] * (1 - beta2**step) ** 0.5 / (1 - beta1**step)
                # a contiguous copy first: sqrt on the strided half of ``moments`` ran ~3x slower than
                # copy + sqrt (0.81 against 0.25 ms for 12 k rows × 16); sqrt is exact, so same bits
                denom = exp_avg_sq.contiguous().sqrt_().add_(group["eps"])
                weights.addcdiv_(exp_avg, denom, value=-step_size)
                p.index_copy_(0, rows, weights)


class SerialAdam(torch.optim.Adam):
    """``torch.optim.Adam`` whose step runs on one thread (same arithmetic; see ``one_thread``).

    ``foreach`` defaults to on (torch turns it on only for CUDA tensors): the same bits, with the
    per-tensor loop's small ops batched — on one thread 1.84 against 0.85 ms a step for a 624-256-128
    MLP with batch norm and L2 (14 tensors), 0.42 against 0.39 ms for the default MLP (6 tensors).
    """

    def __init__(self, params: Iterable, *args: object, foreach: bool | None = True, **kwargs: object) -> None:
        super().__init__(params, *args, foreach=foreach, **kwargs)

    @torch.no_grad()
    def step(self, closure=None):  # noqa: ANN001 - torch's optimiser signature
        with one_thread():
            return super().step(closure)
