"""A fast, deterministic CTR trainer: whole-array batching, sparse embedding updates, early stopping.

Batches are gathered from the split's id matrix with one ``index_select`` per batch (no per-sample
dataset and collate). Embedding tables use sparse gradients and ``SparseAdam``, so a step costs the
same whatever the vocabulary size. Validation AUC decides early stopping and the best weights are
restored at the end.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from torch import nn

from fmpbench.data.prepared import Split
from fmpbench.models.backbones import Dropout
from fmpbench.training.hooks import TrainHooks
from fmpbench.training.metrics import auc, logloss
from fmpbench.training.optim import RowSparseAdam, SerialAdam
from fmpbench.training.threads import ThreadGovernor

#: one INFO record per epoch (epoch, max_epochs, valid_auc as ``extra``): ``fmpbench.progress`` shows them
epoch_log = logging.getLogger(__name__)


class TrainingDiverged(RuntimeError):
    """The training loss became NaN or infinite."""


@dataclass
class TrainConfig:
    """Trainer settings; every run records them. Defaults suit the built-in data and real excerpts."""

    max_epochs: int = 30
    patience: int = 2
    batch_size: int = 512
    lr: float = 1e-3
    embed_lr: float = 1e-2
    weight_decay: float = 0.0
    embed_weight_decay: float = 0.0
    eval_batch_size: int = 65536
    min_delta: float = 1e-5
    device: str = "cpu"
    #: dropout masks from ``word_dropout`` (one draw per four elements) instead of ``bernoulli_``'s
    #: per-element mt19937 draws: the default model's two masks 2.8 -> 1.0 ms in isolation, 0.7 ms
    #: less a step in ``benchmarks/trainer_throughput.py``. Off (torch's dropout exactly, stacks
    #: included) is what the committed study ran with; its config pins it
    fast_dropout: bool = True
    #: dense weights' Adam as torch's fused one-kernel step (``SerialAdam``): 0.98 -> 0.38 ms of the
    #: default step, rounding differently (≤ 1 ulp a step). Off (torch's multi-tensor Adam) is what the
    #: committed study ran with; its config pins it
    fused_adam: bool = True

    def to_dict(self) -> dict:
        """All settings; ``fast_dropout`` and ``fused_adam`` appear only when on, so the committed study's
        run ids (which ran without them, before they existed) stand and every run with either has other
        ids. A settings dict without such a key therefore means it was off (not this class's default)."""
        settings = asdict(self)
        for speed_setting in ("fast_dropout", "fused_adam"):
            if not settings[speed_setting]:
                del settings[speed_setting]
        return settings


@dataclass
class TrainResult:
    """What one training run measured."""

    best_valid_auc: float
    best_epoch: int
    epochs: int
    steps: int
    seconds: float
    valid_auc_history: list[float] = field(default_factory=list)

    @property
    def seconds_per_epoch(self) -> float:
        return self.seconds / max(self.epochs, 1)


@dataclass
class EarlyStopping:
    """The end-of-epoch rule of every trainer (``Trainer``, the stacked one): an epoch improves when its
    validation AUC beats the best by more than ``min_delta``; training stops after ``patience`` epochs
    without an improvement."""

    patience: int
    min_delta: float
    history: list[float] = field(default_factory=list)
    best_auc: float = -math.inf
    best_epoch: int = 0
    bad_epochs: int = 0

    def update(self, epoch: int, valid_auc: float) -> tuple[bool, bool]:
        """Record epoch ``epoch``'s validation AUC; returns (it improved, stop now)."""
        self.history.append(valid_auc)
        if valid_auc > self.best_auc + self.min_delta:
            self.best_auc, self.best_epoch, self.bad_epochs = valid_auc, epoch, 0
            return True, False
        self.bad_epochs += 1
        return False, self.bad_epochs >= self.patience

    def result(self, epochs: int, steps: int, seconds: float, improved_once: bool) -> TrainResult:
        """The run's result; a run that never kept an improved state reports its last epoch's AUC."""
        best_auc, best_epoch = self.best_auc, self.best_epoch
        if not improved_once:
            best_auc, best_epoch = (self.history[-1] if self.history else math.nan), epochs
        return TrainResult(best_auc, best_epoch, epochs, steps, seconds, self.history)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


#: Added to a trainer's seed for its dropout masks' generator (the batch order uses the seed itself).
DROPOUT_STREAM = 0x5EED_D809

#: A memory-mapped id matrix larger than this is streamed in blocks instead of loaded whole.
MAX_RESIDENT_BYTES = 2 * 2**30
#: Rows per block and blocks mixed per shuffle buffer when streaming a memory-mapped split.
STREAM_BLOCK_ROWS = 32_768
STREAM_BLOCKS_PER_BUFFER = 8


def _fits_on(device: torch.device, nbytes: int) -> bool:
    """Whether an array of ``nbytes`` should live on ``device`` (GPU: when it fits in free memory)."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return nbytes < 0.5 * free
    return True


class SplitTensors:
    """A split's arrays ready for training, with an optional column subset.

    In-memory splits (and memory-mapped ones up to ``max_resident_bytes``) are held as one tensor on
    the device, and batches are gathered with one ``index_select``. Larger memory-mapped splits stay
    on disk: each epoch visits blocks of contiguous rows in random order, mixing
    ``STREAM_BLOCKS_PER_BUFFER`` blocks per shuffle buffer, so every row is seen once per epoch with
    bounded memory — the same semantics as the in-memory path, with a block-local shuffle.
    """

    def __init__(
        self,
        split: Split,
        device: torch.device,
        fields: np.ndarray | None = None,
        max_resident_bytes: int = MAX_RESIDENT_BYTES,
    ) -> None:
        self.device = device
        num_fields = split.X.shape[1]
        self.fields = None if fields is None or len(fields) == num_fields else np.asarray(fields, dtype=np.int64)
        self.y = torch.from_numpy(np.array(split.y, dtype=np.float32)).to(device)  # labels are small: always in RAM
        width = num_fields if self.fields is None else len(self.fields)
        nbytes = len(split) * width * split.X.dtype.itemsize
        mapped = isinstance(split.X, np.memmap)
        self.streamed = (mapped and nbytes > max_resident_bytes) or not _fits_on(device, nbytes)
        self._source = split.X
        self.x: torch.Tensor | None = None if self.streamed else self._rows(0, len(split)).to(device)

    def _rows(self, start: int, stop: int) -> torch.Tensor:
        block = self._source[start:stop]
        if self.fields is not None:
            block = block[:, self.fields]
        block = np.ascontiguousarray(block)
        # a read-only memory map is copied into RAM here (torch tensors must own writable memory)
        return torch.from_numpy(block if block.flags.writeable else block.copy())

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def shuffled_batches(
        self, batch_size: int, generator: torch.Generator
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        if self.x is not None:
            order = torch.randperm(len(self), generator=generator).to(self.device)
            for start in range(0, len(self), batch_size):
                idx = order[start : start + batch_size]
                yield self.x.index_select(0, idx), self.y.index_select(0, idx)
            return
        n_blocks = -(-len(self) // STREAM_BLOCK_ROWS)
        block_order = torch.randperm(n_blocks, generator=generator).tolist()
        for first in range(0, n_blocks, STREAM_BLOCKS_PER_BUFFER):
            spans = [
                (b * STREAM_BLOCK_ROWS, min((b + 1) * STREAM_BLOCK_ROWS, len(self)))
                for b in block_order[first : first + STREAM_BLOCKS_PER_BUFFER]
            ]
            x = torch.cat([self._rows(lo, hi) for lo, hi in spans]).to(self.device)
            y = torch.cat([self.y[lo:hi] for lo, hi in spans])
            order = torch.randperm(len(y), generator=generator).to(self.device)
            for start in range(0, len(y), batch_size):
                idx = order[start : start + batch_size]
                yield x.index_select(0, idx), y.index_select(0, idx)

    def batches(self, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for start in range(0, len(self), batch_size):
            stop = start + batch_size
            x = self.x[start:stop] if self.x is not None else self._rows(start, stop).to(self.device)
            yield x, self.y[start:stop]


def make_optimizers(model: nn.Module, config: TrainConfig, hooks: TrainHooks) -> list[torch.optim.Optimizer]:
    """SparseAdam for sparse embedding tables, Adam for the rest, minus architecture parameters."""
    sparse_params = [m.weight for m in model.modules() if isinstance(m, nn.Embedding) and m.sparse]
    extra_groups = hooks.parameter_groups(model)
    excluded = {id(p) for p in sparse_params}
    excluded |= {id(p) for p in hooks.architecture_parameters(model)}
    excluded |= {id(p) for g in extra_groups for p in g["params"]}
    dense = [p for p in model.parameters() if p.requires_grad and id(p) not in excluded]
    optimizers: list[torch.optim.Optimizer] = []
    if sparse_params:
        optimizers.append(RowSparseAdam(sparse_params, lr=config.embed_lr, weight_decay=config.embed_weight_decay))
    groups = [{"params": dense}] + extra_groups
    if any(len(g["params"]) for g in groups):
        optimizers.append(SerialAdam(groups, lr=config.lr, weight_decay=config.weight_decay, fused=config.fused_adam))
    return optimizers


@torch.no_grad()
def predict_on_device(model: nn.Module, split: SplitTensors, batch_size: int = 65536) -> torch.Tensor:
    """Click probabilities for a whole split, in evaluation mode, as a float32 tensor where the model runs."""
    was_training = model.training
    model.eval()
    out = [torch.sigmoid(model(x)).float() for x, _ in split.batches(batch_size)]
    model.train(was_training)
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.float32, device=split.y.device)


def predict(model: nn.Module, split: SplitTensors, batch_size: int = 65536) -> np.ndarray:
    """Click probabilities for a whole split, in evaluation mode."""
    return predict_on_device(model, split, batch_size).cpu().numpy()


def valid_auc(model: nn.Module, split: SplitTensors, batch_size: int = 65536) -> float:
    """AUC on one split, computed on the model's device (nothing is copied off it)."""
    return auc(split.y, predict_on_device(model, split, batch_size))


def evaluate(model: nn.Module, split: SplitTensors, batch_size: int = 65536) -> tuple[float, float, np.ndarray]:
    """AUC (on the device), logloss and the predicted probabilities on one split."""
    probs = predict_on_device(model, split, batch_size)
    score = auc(split.y, probs)
    probs_np = probs.cpu().numpy()
    return score, logloss(split.y.cpu().numpy(), probs_np), probs_np


class Trainer:
    """Trains a model to early stopping on validation AUC and restores the best weights.

    Each epoch runs at the configured learning rates times ``hooks.lr_factor(epoch)``.
    Per training step: forward, BCE (+ ``hooks.extra_loss``), backward, optimiser steps,
    ``hooks.after_step``; every ``hooks.validation_every`` steps ``hooks.validation_step`` gets the
    next validation batch. Non-finite loss raises :class:`TrainingDiverged`.
    """

    def __init__(self, config: TrainConfig | None = None, hooks: TrainHooks | None = None, seed: int = 0) -> None:
        self.config = config or TrainConfig()
        self.hooks = hooks or TrainHooks()
        self.seed = seed
        self.device = torch.device(self.config.device)

    def fit(
        self,
        model: nn.Module,
        train: SplitTensors,
        valid: SplitTensors,
        *,
        max_epochs: int | None = None,
        early_stopping: bool = True,
    ) -> TrainResult:
        config = self.config
        max_epochs = config.max_epochs if max_epochs is None else max_epochs
        model.to(self.device).train()
        dropouts = [m for m in model.modules() if isinstance(m, Dropout)] if config.fast_dropout else []
        masks = torch.Generator(self.device).manual_seed(self.seed + DROPOUT_STREAM)  # shared in forward order
        for module in dropouts:
            module.generator = masks
        try:
            with ThreadGovernor(self.device) as governor:
                return self._fit(model, train, valid, max_epochs, early_stopping, governor)
        finally:
            for module in dropouts:
                module.generator = None

    def _fit(
        self, model: nn.Module, train: SplitTensors, valid: SplitTensors, max_epochs: int, early_stopping: bool,
        governor: ThreadGovernor,
    ) -> TrainResult:
        config, hooks = self.config, self.hooks
        optimizers = make_optimizers(model, config, hooks)
        base_lrs = [[group["lr"] for group in opt.param_groups] for opt in optimizers]
        generator = torch.Generator().manual_seed(self.seed)
        loss_fn = nn.BCEWithLogitsLoss()
        valid_stream = self._valid_stream(valid, generator) if hooks.validation_every else None
        stopping = EarlyStopping(config.patience, config.min_delta)
        best_state = None
        step, epochs = 0, 0
        _sync(self.device)
        start = time.perf_counter()
        for epoch in range(1, max_epochs + 1):
            factor = hooks.lr_factor(epoch)
            for opt, lrs in zip(optimizers, base_lrs):
                for group, lr in zip(opt.param_groups, lrs):
                    group["lr"] = lr * factor
            for x, y in train.shuffled_batches(config.batch_size, generator):
                with governor.step():
                    loss = loss_fn(model(x), y)
                    extra = hooks.extra_loss(model, step)
                    if extra is not None:
                        loss = loss + extra
                    if not torch.isfinite(loss):
                        raise TrainingDiverged(f"loss became {loss.item()} at step {step} (epoch {epoch})")
                    for opt in optimizers:
                        opt.zero_grad(set_to_none=True)
                    loss.backward()
                    for opt in optimizers:
                        opt.step()
                step += 1
                hooks.after_step(model, step)
                if valid_stream is not None and step % hooks.validation_every == 0:
                    vx, vy = next(valid_stream)
                    hooks.validation_step(model, vx, vy, step)
            epochs = epoch
            epoch_auc = valid_auc(model, valid, config.eval_batch_size)
            epoch_log.info("epoch %d/%d: validation AUC %.4f", epoch, max_epochs, epoch_auc,
                           extra={"epoch": epoch, "max_epochs": max_epochs, "valid_auc": epoch_auc})
            improved, stop = stopping.update(epoch, epoch_auc)
            if not early_stopping:
                continue
            if improved:
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            elif stop:
                break
        if best_state is not None:
            model.load_state_dict(best_state)
        _sync(self.device)
        return stopping.result(epochs, step, time.perf_counter() - start, best_state is not None)

    def _valid_stream(
        self, valid: SplitTensors, generator: torch.Generator
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        while True:
            yield from valid.shuffled_batches(self.config.batch_size, generator)
