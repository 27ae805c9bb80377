"""Lazy (row-wise) Adam for sparse embedding gradients.

``torch.optim.SparseAdam`` spends most of a CTR step in generic sparse-tensor arithmetic
(coalesce, sparse adds into dense state): measured at ~47 ms of a 58 ms step for a 841 k-row table,
batch 4096 × 39 fields on 2 cores. This optimiser applies the same lazy-Adam rule — moments and
weights are updated only for the rows present in the batch — with dense gathers/scatters on those
rows, so its cost follows the number of distinct ids in a batch, not the vocabulary.

Duplicate ids are merged without a sort: a per-table slot array (one int64 per row, written only at
the batch's ids) picks one occurrence of each id, which gives the distinct rows and every id's row
number with a few O(ids) scatters and gathers (the row numbers are the picked occurrences' ranks,
so the table is touched twice, not four times). ``torch.unique``'s comparison sort cost ~1.2 ms of
a 20 ms default step. Each row's gradient is still summed by ``index_add_`` in the batch's order,
and the per-row arithmetic is the same as before, so the result is bit-identical to the sorted
merge (rows are independent; only their order changed).
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
    """Distinct ``ids`` (in the order of the occurrence the scatter kept) and the sum of ``values`` per id.

    ``slot`` is scratch space with one entry per table row; only the entries at ``ids`` are read
    or written. Which of an id's positions its slot keeps does not matter (a plain ``scatter_``,
    whose order of duplicate writes torch leaves open: 0.75 against 1.13 ms for the whole merge with
    ``scatter_reduce_``'s first occurrence, default batch): each id reads back one position, and that
    occurrence alone marks the id's row. Sums run in batch order from zero, as ``torch.unique`` +
    ``index_add_`` do.
    """
    position = torch.arange(ids.numel(), device=ids.device)
    slot.scatter_(0, ids, position)
    kept = slot.index_select(0, ids)
    is_kept = kept == position
    rows = ids.masked_select(is_kept)
    # each kept occurrence's row number is its rank among them: gathered from this small array, not the table
    inverse = (is_kept.cumsum(0) - 1).index_select(0, kept)
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
                    state["rows"] = _row_table(p)
                elif not _is_column_zero(p, state["rows"]):  # p was given other data (``p.data = ...``)
                    state["rows"] = _row_table(p, state["rows"][:, 1:])
                state["step"] += 1
                table = state["rows"]
                rows, g = self._merge(p, grad)
                gathered = table.index_select(0, rows)  # weight and both moments: one gather, one write
                weights, exp_avg, exp_avg_sq = gathered.unbind(1)
                if group["weight_decay"]:
                    # lazy L2: only rows seen in the batch are regularised, as their gradient is
                    g.add_(weights, alpha=group["weight_decay"])
                exp_avg.mul_(beta1).add_(g, alpha=1 - beta1)
                exp_avg_sq.mul_(beta2).addcmul_(g, g, value=1 - beta2)
                step = state["step"]
                step_size = group["lr"] * (1 - beta2**step) ** 0.5 / (1 - beta1**step)
                # a contiguous copy first: sqrt on a strided slice of ``gathered`` ran ~3x slower than
                # copy + sqrt (0.81 against 0.25 ms for 12 k rows × 16); sqrt is exact, so same bits
                denom = exp_avg_sq.contiguous().sqrt_().add_(group["eps"])
                weights.addcdiv_(exp_avg, denom, value=-step_size)
                wide = widest_view(table.view(table.shape[0], -1))
                wide.index_copy_(0, rows, gathered.view(rows.numel(), -1).view(wide.dtype))


def _row_table(p: torch.Tensor, moments: torch.Tensor | None = None) -> torch.Tensor:
    """``[rows, 3, ...]``: each row's weight beside its two Adam moments, with ``p`` re-pointed at column 0.

    One table instead of a weight and a moments tensor: a step gathers and writes each touched row's
    192 bytes (dim 16) in one place rather than 64 and 128 in two, scattered over tables many times
    the cache; the forward's gather reads column 0 in place. Measured on the default model's batches
    (841 k-row table, 12 k distinct rows a step, one core): gather + write 1.42 -> 1.03 ms, and with
    the write as 16-byte elements (``widest_view``) 1.86 -> 1.22 ms in another run; the forward's
    gather 0.48 -> 0.53 ms. Same arithmetic, so the same bits. The table is built at a table's first
    step, beside the weight it copies: that moment's peak is 4× the weight's memory, 3× after it (a
    weight and a moments tensor were 3× throughout).
    """
    table = p.new_zeros((p.shape[0], 3) + p.shape[1:])
    table[:, 0] = p.detach()
    if moments is not None:
        table[:, 1:] = moments
    p.data = table[:, 0]
    return table


def _is_column_zero(p: torch.Tensor, table: torch.Tensor) -> bool:
    return p.data_ptr() == table.data_ptr() and p.stride() == table[:, 0].stride() and p.shape == table[:, 0].shape


def widest_view(rows: torch.Tensor) -> torch.Tensor:
    """``rows`` (2-d, contiguous) reinterpreted with the widest element that divides a row's bytes.

    ``index_copy_`` indexes every element; a 16-byte element moves a 192-byte row in 12 of them
    instead of 48 (gather + write of the default's 12 k cold rows 1.43 -> 1.22 ms): the same bytes, so the
    same bits. CPU only: other
    devices' copies are not per element, and some have no 64-bit types.
    """
    if rows.device.type != "cpu":
        return rows
    row_bytes = rows.shape[1] * rows.element_size()
    for wide in (torch.complex128, torch.int64, torch.int32):
        if row_bytes % wide.itemsize == 0 and wide.itemsize >= rows.element_size():
            return rows.view(wide)
    return rows


class SerialAdam(torch.optim.Adam):
    """``torch.optim.Adam`` whose step runs on one thread (same arithmetic; see ``one_thread``).

    ``fused`` (``TrainConfig.fused_adam``, the default there) runs torch's one-kernel Adam: one pass
    over each tensor instead of the multi-tensor step's several, 0.38 -> 0.15 ms a step for the default
    MLP in isolation and 0.98 -> 0.38 ms in training (``benchmarks/trainer_throughput.py``'s phases), but
    it rounds differently (≤ 1 ulp a step). Unfused, ``foreach`` defaults to on (torch turns it on only
    for CUDA tensors): the same bits as torch's per-tensor loop — what the committed study ran — with
    its small ops batched, 1.84 against 0.85 ms a step for a 624-256-128 MLP with batch norm and L2
    (14 tensors) on one thread.
    """

    def __init__(self, params: Iterable, *args: object, fused: bool = False, **kwargs: object) -> None:
        kernel = {"fused": True} if fused else {"foreach": kwargs.pop("foreach", True)}
        super().__init__(params, *args, **kernel, **kwargs)

    @torch.no_grad()
    def step(self, closure=None):  # noqa: ANN001 - torch's optimiser signature
        with one_thread():
            return super().step(closure)
