"""Stacked retrains in a grid: the retrain rows of one seed that share a shape train as one stack.

The tasks of a seed run through the protocol's own :func:`fmpbench.protocol.iter_task_outputs`
(so every record is the one the protocol writes), each in its own thread, one thread at a time (a
baton). A task that reaches a retrain row of a stackable backbone (``fmpbench.training.stacked``)
parks the model here instead of training it and hands the baton on; once every task of the seed
has parked or ended, the parked models are grouped by shape (k, widths, dropout), each group trains
with :func:`fit_stacked` (a group of one trains as a separate retrain does, so its numbers are the
separate path's), and the tasks resume. Rows are visited in k order, so the first round
stacks every method's smallest-k retrain, the next the following k, and so on. Other rows (native
pipelines, matched baselines, other backbones) train as before, in their task's turn.

Each stacked row's record adds ``stack_size`` and ``stacked_with`` (the run ids trained beside it);
its ``retrain_seconds`` is its share of the stack's time. Two tasks whose retrain is the same model
(one retrain key) still train it once: the second waits, without the baton, until the first records it.

When the driver stops early (an interrupt, a failed task) it stops every task thread and joins them
before it returns: a daemon thread still inside torch when the interpreter exits is torn down through
C++ frames, which aborts the process ("terminate called without an active exception", exit −6)
instead of the interrupted run's exit 130.
"""

from __future__ import annotations

import ctypes
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from fmpbench.data.prepared import PreparedData
from fmpbench.models import CTRModel
from fmpbench.protocol import BUSY, ExperimentConfig, Predictions, RetrainLedger, Task, iter_task_outputs, task_rows
from fmpbench.protocol import _fit_model as fit_alone
from fmpbench.selectors import SearchContext
from fmpbench.training import TrainResult
from fmpbench.training.stacked import fit_stacked, stack_shape, unstackable_reason

#: Stacking is the default of ``run`` and ``study`` on every device and executor. On this 2-core CPU
#: (``benchmarks/threads_stacking.py``: default model, Avazu stand-in, 32 k training rows, k = 12,
#: 5 models, 2 epochs; session 6) a stack took 4.4-4.6 s at 1 thread and 3.9-4.1 s at 2, against
#: 5.3-5.9 s and 5.9-7.5 s for the 5 trained one after another. In ``benchmarks/study_cost.py`` a
#: study's retrains took 0.76x the separate ones' seconds at ``--jobs 1`` and 0.77x at ``--jobs 2``
#: (wall 0.87x of the unstacked path at each; test AUC within seed noise). On a GPU the default model
#: at batch 512 is launch-bound, so M stacked models should cost close to one (reasoned, not measured:
#: no GPU was available when this was chosen).
STACK_BY_DEFAULT = True


class _Stopped(BaseException):
    """Raised in a task thread to end it when the driver stops early; a ``BaseException``, like an
    interrupt, so that the protocol does not record it as the failure of a row and go on."""


def _raise_in(thread: threading.Thread, exc: type[BaseException]) -> None:
    """Raise ``exc`` in ``thread`` at its next Python instruction (CPython's ``PyThreadState_SetAsyncExc``):
    the thread holding the baton is inside a search or a training loop, which returns to Python between
    torch calls, so it stops within one operation."""
    if thread.ident is not None and thread.is_alive():
        ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread.ident), ctypes.py_object(exc))


@dataclass
class _Parked:
    """A retrain waiting for its stack: the task's model, fields and context; then its outcome."""

    task: int
    model: CTRModel
    fields: np.ndarray
    data: PreparedData
    context: SearchContext
    result: TrainResult | BaseException | None = None
    stacked_with: list[int] = field(default_factory=list)


class _Baton:
    """Lets one task thread run at a time and trains the parked retrains when none can run."""

    def __init__(self, count: int) -> None:
        self.cond = threading.Condition()
        self.turn: int | None = None
        self.parked: dict[int, _Parked] = {}
        self.waiting: set[int] = set()  # tasks waiting for another task's identical retrain
        self.done: set[int] = set()
        self.count = count
        self.stacks: dict[tuple[int, int], _Parked] = {}  # (task, k) → its parked retrain, once trained
        #: each waiting task's state of torch's global generators, which its turns continue: torch's own
        #: dropout masks (``fast_dropout = false``, the study's) draw from them, and tasks taking turns in
        #: one process would otherwise draw from one interleaved stream — other numbers than alone
        self.generators: dict[int, list[torch.Tensor]] = {}
        self.stopping = False

    def take(self, index: int) -> None:
        """Block until it is task ``index``'s turn (called with ``cond`` held); raise once the driver stops."""
        self.cond.wait_for(lambda: self.turn == index or self.stopping)
        if self.stopping:
            raise _Stopped
        if index in self.generators:
            _set_generators(self.generators.pop(index))

    def give(self, index: int) -> None:
        """End task ``index``'s turn and wait for the next (called with ``cond`` held)."""
        self.generators[index] = _generators()
        self.turn = None
        self.cond.notify_all()
        self.take(index)

    def fitter(self, index: int) -> Callable[[CTRModel, PreparedData, np.ndarray, SearchContext], TrainResult]:
        """The retrain trainer of task ``index``: parks a stackable model until its stack has trained."""

        def fit(model: CTRModel, data: PreparedData, fields: np.ndarray, context: SearchContext) -> TrainResult:
            if unstackable_reason(model) is not None:
                return fit_alone(model, data, fields, context)
            parked = _Parked(index, model, np.asarray(fields), data, context)
            with self.cond:
                self.parked[index] = parked
                while parked.result is None:
                    self.give(index)
                del self.parked[index]
            self.stacks[(index, len(parked.fields))] = parked
            if isinstance(parked.result, BaseException):
                raise parked.result
            return parked.result

        return fit

    def runnable(self) -> list[int]:
        return [i for i in range(self.count) if i not in self.done and i not in self.waiting
                and (i not in self.parked or self.parked[i].result is not None)]

    def train_parked(self) -> None:
        """Train every parked retrain, grouped by shape and context (seed, training settings)."""
        groups: dict[tuple, list[_Parked]] = {}
        for parked in self.parked.values():
            if parked.result is None:
                key = (stack_shape(parked.model), repr(parked.context.train_config), parked.context.seed)
                groups.setdefault(key, []).append(parked)
        for members in groups.values():
            context = members[0].context
            results: list[TrainResult | BaseException]
            try:
                if len(members) == 1:  # nothing to stack with: the separate retrain, and so its numbers
                    alone = members[0]
                    _set_generators(self.generators[alone.task])  # the draws its task would make next
                    results = [fit_alone(alone.model, alone.data, alone.fields, context)]
                    self.generators[alone.task] = _generators()
                else:
                    train, valid = context.tensors(members[0].data)
                    results = list(fit_stacked([p.model for p in members], [p.fields for p in members], train,
                                               valid, context.train_config, context.seed))
            except Exception as exc:  # noqa: BLE001 - fails these rows (raised in their tasks), not the grid
                results = [exc] * len(members)
            for parked, result in zip(members, results):
                parked.result = result
                parked.stacked_with = [p.task for p in members if p is not parked]


def _generators() -> list[torch.Tensor]:
    """The states of torch's global generators: the CPU one, and CUDA's where CUDA is in use."""
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else []
    return [torch.get_rng_state(), *cuda]


def _set_generators(states: list[torch.Tensor]) -> None:
    torch.set_rng_state(states[0])
    if len(states) > 1:
        torch.cuda.set_rng_state_all(states[1:])


class _BatonLedger(RetrainLedger):
    """The grid's ledger for one task thread: waiting for a retrain another task trains gives up the baton."""

    def __init__(self, shared: RetrainLedger, baton: _Baton, index: int) -> None:
        super().__init__(shared.store)
        self.baton, self.index = baton, index

    def wait(self, key: str, poll_s: float = 0.2) -> dict[str, Any] | None:
        while (found := self.acquire(key)) == BUSY:
            with self.baton.cond:
                self.baton.waiting.add(self.index)
                self.baton.give(self.index)
        return found  # type: ignore[return-value]


def iter_stacked_outputs(
    tasks: Sequence[Task], config: ExperimentConfig, data: PreparedData, skip: frozenset[str], ledger: RetrainLedger
) -> Iterator[tuple[dict[str, Any], Predictions]]:
    """The outputs of one seed's ``tasks`` (as :func:`iter_task_outputs` yields them), their retrains
    stacked; ``data`` is that seed's."""
    if len({task.seed for task in tasks}) > 1:
        raise ValueError("stacked tasks must be of one seed")
    tasks = list(tasks)
    baton = _Baton(len(tasks))
    outputs: list[list[tuple[dict[str, Any], Predictions]]] = [[] for _ in tasks]
    errors: list[BaseException] = []

    def work(index: int) -> None:
        try:
            run_task(index)
        except _Stopped:  # delivered while the task was already ending: nothing left to do
            pass

    def run_task(index: int) -> None:
        task_ledger = _BatonLedger(ledger, baton, index)
        try:
            with baton.cond:
                baton.take(index)
            for output in iter_task_outputs(tasks[index], config, data, skip, task_ledger, baton.fitter(index)):
                outputs[index].append(output)
        except BaseException as exc:  # noqa: BLE001 - raised again by the driving thread
            errors.append(exc)
        finally:
            with baton.cond:
                baton.done.add(index)
                baton.turn = None
                baton.cond.notify_all()

    threads = [threading.Thread(target=work, args=(i,), name=f"fmpbench-stack-{i}", daemon=True)
               for i in range(len(tasks))]
    for thread in threads:
        thread.start()
    retrain_ids = {(i, row.k): row.run_id for i, task in enumerate(tasks)
                   for row in task_rows(task, config, data) if row.kind == "retrain"}
    try:
        yield from _drive(tasks, baton, outputs, errors, retrain_ids)
    finally:
        _stop(baton, threads)


def _drive(tasks: list[Task], baton: _Baton, outputs: list[list[tuple[dict[str, Any], Predictions]]],
           errors: list[BaseException], retrain_ids: dict) -> Iterator[tuple[dict[str, Any], Predictions]]:
    """Hand the baton round until every task has ended, training the parked retrains in between."""
    with baton.cond:
        while len(baton.done) < len(tasks):
            runnable = baton.runnable()
            if not runnable:
                if any(p.result is None for p in baton.parked.values()):
                    baton.train_parked()
                else:  # nothing to train: another process holds the retrain they wait for
                    baton.cond.wait(0.2)
                baton.waiting.clear()  # the waiting tasks look at the ledger again
                continue
            baton.turn = runnable[0]
            baton.cond.notify_all()
            baton.cond.wait_for(lambda: baton.turn is None)
            if errors:
                raise errors[0]
            for index, produced in enumerate(outputs):
                for record, predictions in produced:
                    yield _annotated(record, index, baton, retrain_ids), predictions
                produced.clear()


def _stop(baton: _Baton, threads: list[threading.Thread]) -> None:
    """End every task thread: the waiting ones raise at their next baton call, the running one at once."""
    with baton.cond:
        baton.stopping = True
        running = baton.turn
        baton.cond.notify_all()
    if running is not None:
        _raise_in(threads[running], _Stopped)
    for thread in threads:
        thread.join()


def _annotated(record: dict[str, Any], index: int, baton: _Baton, retrain_ids: dict) -> dict[str, Any]:
    """A stacked retrain's record with the stack it trained in."""
    parked = baton.stacks.get((index, record["k"]))
    stacked = parked is not None and parked.stacked_with  # a stack of one trained alone
    if stacked and record.get("pipeline") == "retrain" and not record.get("reused_from"):
        record["stack_size"] = len(parked.stacked_with) + 1
        record["stacked_with"] = [retrain_ids[(i, record["k"])] for i in parked.stacked_with]
    return record
