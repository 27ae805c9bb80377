"""Expanding a grid (methods × seeds, each with its ks) into tasks and running them with progress."""

from __future__ import annotations

import logging
import os
import queue
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from fmpbench.data import DataError
from fmpbench.data.prepared import PreparedData
from fmpbench.data.refs import DataRef, load_ref, ref_of
from fmpbench.lifetime import die_with_parent, ledger_manager, sigint_ignored, worker_context
from fmpbench.protocol import (
    ExperimentConfig,
    Predictions,
    RetrainLedger,
    Task,
    finished_retrains,
    iter_task_outputs,
    task_rows,
)
from fmpbench.results import RunClaims, finished_run_ids, record_path, write_record
from fmpbench.selectors import get_selector_class
from fmpbench.stacking import iter_stacked_outputs
from fmpbench.training.stacked import stackable_backbone

DEFAULT_K_RATIOS = (0.25, 0.5, 0.75)
EXECUTORS = ("local", "ray")


class GridError(ValueError):
    """A grid that cannot run as asked (impossible k, no seeds, ...)."""


def check_k_spec(spec: Sequence[float]) -> None:
    """Reject budgets impossible whatever the data (≤ 0, fractional counts), before any data is loaded."""
    for value in spec:
        if not (0 < value < 1 or (value >= 1 and float(value).is_integer())):
            raise GridError(f"impossible k={value:g}: use a count ≥ 1 or a ratio in (0, 1)")


def resolve_ks(spec: Sequence[float] | None, num_fields: int) -> tuple[int, ...]:
    """Budgets as field counts: values < 1 are ratios of F, integers are counts; sorted, unique."""
    values = DEFAULT_K_RATIOS if not spec else spec
    check_k_spec(values)
    ks: set[int] = set()
    for value in values:
        if value > num_fields:
            raise GridError(f"impossible k={value:g}: use a count in 1..{num_fields} or a ratio in (0, 1)")
        ks.add(max(1, round(value * num_fields)) if value < 1 else int(value))
    return tuple(sorted(ks))


def expected_cost(method: str, ks: tuple[int, ...]) -> float:
    """A task's rough cost in retrains: its search (``Selector.search_cost``) plus one per result row."""
    cls = get_selector_class(method)
    rows = 1 if cls.keeps_all_fields else len(ks) * (2 if cls.native_name else 1)
    return cls.search_cost + rows


def build_tasks(methods: Sequence[str], seeds: Sequence[int], ks: tuple[int, ...]) -> list[Task]:
    """Seed-major order, so a partial grid already holds complete seeds of every method; within a seed
    the most expensive tasks first, so that parallel workers finish together (longest-first scheduling).
    """
    if not seeds:
        raise GridError("need at least one seed (--seeds must be ≥ 1)")
    by_cost = sorted(methods, key=lambda method: -expected_cost(method, ks))
    return [Task(method, seed, ks) for seed in seeds for method in by_cost]


#: what one process (or Ray worker) runs at a time: one task, or the tasks of one seed stacked together
Unit = tuple[Task, ...]


def work_units(tasks: Sequence[Task], jobs: int, stack: bool) -> list[Unit]:
    """The grid's tasks as units of work, in task order.

    Without stacking every task is its own unit. With it, a unit holds tasks of one seed, whose
    same-shape retrains then train as one stack (:mod:`fmpbench.stacking`). Whole seeds go out in
    rounds of ``jobs``; the seeds of a last, incomplete round (all of them when there are fewer seeds
    than jobs) are each dealt over ``⌈jobs / those seeds⌉`` units of about equal expected cost
    (longest first), so that the last round also keeps every process busy — smaller stacks there,
    instead of one process stacking a whole seed while the others idle (5 seeds on 2 jobs: 4 whole
    seeds, then the fifth in two halves).
    """
    if not stack:
        return [(task,) for task in tasks]
    order = {task: i for i, task in enumerate(tasks)}
    seeds = list(dict.fromkeys(task.seed for task in tasks))
    whole = len(seeds) - len(seeds) % jobs
    units: list[Unit] = []
    for position, seed in enumerate(seeds):
        parts = 1 if position < whole else -(-jobs // (len(seeds) - whole))
        of_seed = sorted((t for t in tasks if t.seed == seed), key=lambda t: -expected_cost(t.method, t.ks))
        bins: list[list[Task]] = [[] for _ in range(min(parts, len(of_seed)))]
        loads = [0.0] * len(bins)
        for task in of_seed:
            lightest = loads.index(min(loads))
            bins[lightest].append(task)
            loads[lightest] += expected_cost(task.method, task.ks)
        units += [tuple(sorted(b, key=order.__getitem__)) for b in bins]
    return units


def unit_outputs(
    unit: Unit, config: ExperimentConfig, data: PreparedData, skip: frozenset[str], ledger: RetrainLedger, stack: bool
) -> Iterator[tuple[dict[str, Any], Predictions]]:
    """The outputs of a unit's tasks, stacked or one task after another; ``data`` is the unit's seed's."""
    if stack:
        yield from iter_stacked_outputs(unit, config, data, skip, ledger)
        return
    for task in unit:
        yield from iter_task_outputs(task, config, data, skip, ledger)


@dataclass
class GridOutcome:
    records: list[dict[str, Any]]
    skipped: int
    total_rows: int
    seconds: float

    @property
    def failed(self) -> list[dict[str, Any]]:
        return [r for r in self.records if r["status"] != "ok"]


def _progress_printer(
    total: int, already: int, stream: Any, pending: Sequence[Task]
) -> Callable[[dict[str, Any]], None]:
    """Prints each record as it arrives, with an ETA from the work done so far in expected cost.

    A row costs one retrain, and the first row of a task also its search (``Selector.search_cost``):
    counting rows instead made the first ETA too high, because longest-first scheduling finishes the
    costliest search first.
    """
    done = already
    start = time.perf_counter()
    work_left = (total - already) + sum(get_selector_class(task.method).search_cost for task in pending)
    work_done = 0.0
    searched: set[tuple[str, int]] = set()

    def report(record: dict[str, Any]) -> None:
        nonlocal done, work_done
        done += 1
        work_done += 1.0
        if (record["selector"], record["seed"]) not in searched:
            searched.add((record["selector"], record["seed"]))
            work_done += get_selector_class(record["selector"]).search_cost
        elapsed = time.perf_counter() - start
        eta = elapsed / work_done * max(work_left - work_done, 0.0) if done < total else 0.0
        head = f"[{done}/{total}] {record['method']:<12} k={record['k']:<3} seed={record['seed']}"
        if record["status"] == "ok":
            retrain = f"reused {record['reused_from']}" if record.get("reused_from") else (
                f"retrain {record['retrain_seconds']:.1f}s")
            body = (
                f"AUC {record['test_auc']:.4f}  logloss {record['test_logloss']:.4f}  "
                f"epochs {record['epochs']}  search {record['search_seconds']:.1f}s  {retrain}"
            )
        else:
            body = f"{record['status'].upper()}: {record['error']}"
        print(f"{head}  {body}  (ETA {eta:.0f}s)", file=stream, flush=True)

    return report


def worker_devices(device: str, jobs: int, gpus: int) -> list[str]:
    """The device of each of ``jobs`` processes, this one first: a plain ``cuda`` puts them round-robin on
    the ``gpus`` visible GPUs (``cuda:0``, ``cuda:1``, ...); any other device (``cpu``, ``cuda:N``) is
    every process's. A run's device is not part of its identity, so the records are the same runs."""
    if device != "cuda" or gpus < 1:
        return [device] * jobs
    return [f"cuda:{i % gpus}" for i in range(jobs)]


def on_device(config: ExperimentConfig, device: str) -> ExperimentConfig:
    """``config`` training on ``device`` instead of its own."""
    if device == config.train_config.device:
        return config
    return replace(config, train_config=replace(config.train_config, device=device))


#: the device this worker process was given (:func:`worker_devices`); None in the driver
_WORKER_DEVICE: str | None = None


def _init_worker(threads: int, devices: Any = None) -> None:
    """Set up a worker: dies with its parent, ``threads`` torch threads, and its own device taken from
    the ``devices`` queue when one is given (one entry per worker)."""
    global _WORKER_DEVICE
    die_with_parent()
    torch.set_num_threads(threads)
    logging.getLogger("fmpbench").setLevel(logging.ERROR)  # the driver has said which data and plug-ins
    if devices is not None:
        _WORKER_DEVICE = devices.get()


def _worker_outputs(
    unit: Unit, config: ExperimentConfig, skip: frozenset[str], data: PreparedData | DataRef, ledger: RetrainLedger,
    stack: bool,
) -> Iterator[tuple[dict[str, Any], Predictions]]:
    """One unit's outputs in a worker, as they are produced. A ``--jobs`` worker gets a
    :class:`DataRef` and loads exactly that data (memory-mapped, or regenerated), once per worker and
    fingerprint; a Ray worker gets the data from the object store."""
    if isinstance(data, DataRef):
        data = _cached_data(data)
    if _WORKER_DEVICE is not None:
        config = on_device(config, _WORKER_DEVICE)
    return unit_outputs(unit, config, data, skip, ledger, stack)


def _worker_run(
    unit: Unit, config: ExperimentConfig, skip: frozenset[str], data: DataRef, ledger: RetrainLedger, stack: bool,
    sink: Any,
) -> None:
    """A ``--jobs`` worker's unit: each output goes into ``sink`` (a manager queue) as it is produced —
    a stacked unit is a whole seed's tasks, so an interrupted run keeps what its workers finished."""
    for output in _worker_outputs(unit, config, skip, data, ledger, stack):
        sink.put(output)


_WORKER_DATA: dict[str, PreparedData] = {}


def _cached_data(ref: DataRef) -> PreparedData:
    if ref.fingerprint not in _WORKER_DATA:
        _WORKER_DATA[ref.fingerprint] = load_ref(ref)
    return _WORKER_DATA[ref.fingerprint]


SeedData = PreparedData | Mapping[int, PreparedData]


def data_for(data: SeedData, seed: int) -> PreparedData:
    """The data of ``seed``'s tasks: one dataset for every seed, or each seed's own split."""
    if isinstance(data, PreparedData):
        return data
    if seed not in data:
        raise GridError(f"no data for seed {seed}")
    return data[seed]


def threads_per_worker(jobs: int) -> int:
    """Split the machine's cores between workers so N workers never oversubscribe them."""
    return max(1, (os.cpu_count() or 1) // jobs)


def run_grid(
    tasks: Sequence[Task],
    config: ExperimentConfig,
    data: SeedData,
    results_dir: Path,
    *,
    resume: bool = False,
    jobs: int = 1,
    executor: str = "local",
    ray_address: str | None = None,
    stream: Any = sys.stderr,
    stack_retrains: bool = False,
) -> GridOutcome:
    """Run every task, skipping finished runs when ``resume`` is set.

    ``stack_retrains`` trains the same-shape retrains of each seed's tasks as one stacked model
    (:mod:`fmpbench.stacking`) under every executor: a process runs a seed's tasks together, or a
    share of them when there are fewer seeds than jobs (:func:`work_units`).

    ``data`` is the dataset of every task, or a mapping from each seed to its own data (a study whose
    seeds draw their own splits, :func:`fmpbench.data.refs.with_split_seed`).

    ``jobs == 1`` with the local executor runs in this process. ``jobs > 1`` runs that many units at a
    time — this process and ``jobs - 1`` worker processes — each with its share of the cores.
    ``executor="ray"`` sends tasks to a Ray cluster (``ray_address``; a local one is started when
    None). Workers return records to this process, which alone writes them, so results and
    ``--resume`` behave the same on every executor.

    No retrain is trained twice: every executor shares one :class:`RetrainLedger` (with ``resume`` it
    starts with the finished retrains of ``results_dir``), and a row whose retrain another row
    trained reuses it (``reused_from``). Its record is written once that row's is, so that its
    predictions can be copied.
    """
    if jobs < 1:
        raise GridError(f"--jobs must be at least 1, got {jobs}")
    if executor not in EXECUTORS:
        raise GridError(f"unknown executor '{executor}'; choose from: {', '.join(EXECUTORS)}")
    for seed in sorted({t.seed for t in tasks}):
        try:
            data_for(data, seed).check_trainable()
        except DataError as exc:
            raise GridError(str(exc)) from None
    start = time.perf_counter()
    finished = frozenset(finished_run_ids(results_dir)) if resume else frozenset()
    rows_of = {t: task_rows(t, config, data_for(data, t.seed)) for t in tasks}
    all_rows = [row for task in tasks for row in rows_of[task]]
    skipped = sum(row.run_id in finished for row in all_rows)
    pending = [t for t in tasks if any(r.run_id not in finished for r in rows_of[t])]
    report = _progress_printer(len(all_rows), skipped, stream, pending)
    records: list[dict[str, Any]] = []
    known = finished_retrains(results_dir, config.save_predictions) if resume else {}
    trained = {key: outcome["run_id"] for key, outcome in known.items()}
    twice: list[str] = []
    #: reusing rows whose source record is not written yet, by the source's run id
    waiting: dict[str, list[tuple[dict[str, Any], Predictions]]] = {}

    def write_one(record: dict[str, Any], predictions: Predictions) -> None:
        source = record.get("reused_from")
        if source and not record_path(results_dir, source).is_file():
            waiting.setdefault(source, []).append((record, predictions))
            return
        write_record(results_dir, record, predictions)
        records.append(record)
        report(record)
        key = record.get("retrain_key")
        if key and record["status"] == "ok" and not source:
            if key in trained:
                twice.append(record["run_id"])
            trained.setdefault(key, record["run_id"])
        for held in waiting.pop(record["run_id"], []):
            write_one(*held)

    def write(outputs: Iterable[tuple[dict[str, Any], Predictions]]) -> None:
        for record, predictions in outputs:
            write_one(record, predictions)

    claims = RunClaims(results_dir)  # held until the grid ends: another process on this folder skips them

    declined: list[str] = []

    def claim(unit: Unit) -> Unit:
        """The tasks of ``unit`` whose unfinished runs this process could claim."""
        taken: list[Task] = []
        for task in unit:
            unfinished = [r.run_id for r in rows_of[task] if r.run_id not in finished]
            if claims.take(unfinished):
                taken.append(task)
            else:
                declined.extend(unfinished)
        return tuple(taken)

    stack = stack_retrains and stackable_backbone(config.backbone, config.backbone_params)
    units = work_units(pending, jobs, stack)
    try:
        if executor == "ray":  # its units are cut once the cluster's size is known
            claimed = [task for unit in map(claim, [(t,) for t in pending]) for task in unit]
            _run_ray(claimed, config, data, finished, jobs, ray_address, write, known, stack)
        elif jobs == 1:
            ledger = RetrainLedger(dict(known))
            for unit in units:
                if taken := claim(unit):
                    write(unit_outputs(taken, config, data_for(data, taken[0].seed), finished, ledger, stack))
        else:
            with ledger_manager() as manager:
                ledger = RetrainLedger(manager.dict(known))
                _LocalPool(units, config, finished, jobs, write, claim, ledger, stack, manager.Queue()).run(data)
        for held in [output for outputs in waiting.values() for output in outputs]:  # a source that never came
            write_record(results_dir, *held)
            records.append(held[0])
            report(held[0])
    finally:
        claims.release_all()
    if twice:
        print(f"{len(twice)} retrains were trained twice, by workers on different hosts at once "
              f"({', '.join(twice)})", file=stream)
    if declined:
        owners = ", ".join(sorted(set(claims.declined.values())))
        print(f"skipped {len(declined)} runs that another process has claimed ({owners})", file=stream)
    return GridOutcome(records, skipped, len(all_rows), time.perf_counter() - start)


class _LocalPool:
    """``jobs`` units at a time: this process runs units itself beside ``jobs - 1`` spawned workers.

    This process has already paid for its imports and its data, so it starts work at once while the
    workers start up, instead of idling until they are ready. Units (:func:`work_units`) go to
    whichever is free first — a worker (fed by a background thread, one unit per idle worker, so none
    sits queued behind a long one) or this process — and every record is written here, under one lock.
    """

    def __init__(
        self,
        units: Sequence[Unit],
        config: ExperimentConfig,
        finished: frozenset[str],
        jobs: int,
        write: Callable,
        claim: Callable[[Unit], Unit],
        ledger: RetrainLedger,
        stack: bool,
        sink: Any,
    ) -> None:
        self.queue = deque(units)
        self.stack = stack
        self.sink = sink  # a manager queue the workers put each output into
        self.ledger = ledger  # shared with the workers (a manager's dict)
        self.claim = claim  # a unit is taken only once its runs are claimed (RunClaims)
        gpus = torch.cuda.device_count() if config.train_config.device == "cuda" else 0
        self.devices = worker_devices(config.train_config.device, jobs, gpus)
        self.config = on_device(config, self.devices[0])  # this process's; each worker takes its own
        self.finished, self.workers, self.write = finished, jobs - 1, write
        self.threads = threads_per_worker(jobs)
        self.lock = threading.Lock()
        self.stopped = False
        self.error: BaseException | None = None
        context = worker_context()
        self.device_queue = context.Queue()  # each worker takes one entry as it starts
        for device in self.devices[1:]:
            self.device_queue.put(device)
        self.pool = ProcessPoolExecutor(
            self.workers, mp_context=context, initializer=_init_worker, initargs=(self.threads, self.device_queue)
        )

    def run(self, data: SeedData) -> None:
        self.refs = {u[0].seed: ref_of(data_for(data, u[0].seed), self.config.data_dir) for u in self.queue}
        first = self._start_workers()
        feeder = threading.Thread(target=self._feed_workers, args=(first,), name="fmpbench-feeder", daemon=True)
        feeder.start()
        previous = torch.get_num_threads()
        torch.set_num_threads(self.threads)
        try:
            while (unit := self._take()) is not None:  # this process's own units: each record as it comes
                for output in unit_outputs(unit, self.config, data_for(data, unit[0].seed), self.finished, self.ledger,
                                           self.stack):
                    self._deliver([output])
            feeder.join()
            if self.error is not None:
                raise self.error
        except BaseException:
            self._stop()
            raise
        finally:
            torch.set_num_threads(previous)
        self.pool.shutdown()

    def _take(self) -> Unit | None:
        with self.lock:
            while self.queue and not self.stopped:
                if unit := self.claim(self.queue.popleft()):
                    return unit
            return None

    def _deliver(self, outputs: list[tuple[dict[str, Any], Predictions]]) -> None:
        with self.lock:
            self.write(outputs)

    def _start_workers(self) -> set[Future]:
        """Start the workers (one first task each) with Ctrl-C ignored from birth: only this process
        handles it, and it stops the workers (forked workers inherit it from the fork server)."""
        with sigint_ignored():
            return self._fill(set())

    def _fill(self, in_flight: set[Future]) -> set[Future]:
        """Give every idle worker one unit (none are queued ahead, so this process can still take them)."""
        while len(in_flight) < self.workers and (unit := self._take()) is not None:
            in_flight.add(self.pool.submit(_worker_run, unit, self.config, self.finished, self.refs[unit[0].seed],
                                           self.ledger, self.stack, self.sink))
        return in_flight

    def _feed_workers(self, in_flight: set[Future]) -> None:
        try:
            while True:
                if not self._fill(in_flight):  # no task left for the workers: let them exit while this process works on
                    self.pool.shutdown(wait=False)
                    return
                done, in_flight = wait(in_flight, timeout=0.5, return_when=FIRST_COMPLETED)
                self._drain()  # a finished unit put all its outputs before it returned
                for future in done:
                    future.result()  # a worker's error is raised here
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread, which raises it
            with self.lock:
                self.error = self.error or exc
                self.stopped = True

    def _drain(self) -> None:
        """Write the outputs the workers have put so far."""
        while True:
            try:
                output = self.sink.get_nowait()
            except queue.Empty:
                return
            self._deliver([output])

    def _stop(self) -> None:
        """Stop handing out tasks and terminate the workers (Ctrl-C, or a worker that failed)."""
        with self.lock:
            self.stopped = True
        workers = list((self.pool._processes or {}).values())  # shutdown() forgets them
        self.pool.shutdown(wait=False, cancel_futures=True)
        for process in workers:
            process.terminate()


def _run_ray(
    tasks: Sequence[Task],
    config: ExperimentConfig,
    data: SeedData,
    finished: frozenset[str],
    jobs: int,
    address: str | None,
    write: Callable,
    known: dict[str, dict[str, Any]],
    stack: bool,
) -> None:
    try:
        import ray
    except ImportError:
        raise GridError("--executor ray needs Ray: pip install 'fmpbench[ray]'") from None
    started_here = not ray.is_initialized()
    if started_here:
        if address:
            ray.init(address=address, log_to_driver=False)
        else:
            ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
    try:
        # the data goes into Ray's object store once; every worker on every node reads it from there
        refs = {seed: ray.put(data_for(data, seed)) for seed in {task.seed for task in tasks}}
        threads = threads_per_worker(jobs) if not address else 1
        # units for as many workers as run at once: --jobs, or on a cluster all its CPUs at one each
        slots = jobs if not address else max(jobs, int(ray.cluster_resources().get("CPU", 1)) // threads)
        units = work_units(tasks, slots, stack)
        remote = ray.remote(num_cpus=threads)(_ray_task)
        ledger = RetrainLedger(_RayStore(ray.remote(num_cpus=0)(_RayDict).remote(known)))
        streams = [remote.remote(unit, config, finished, refs[unit[0].seed], threads, ledger, stack) for unit in units]
        while streams:  # each output is written as soon as any unit has produced it
            ready, streams = ray.wait(streams, num_returns=1)
            try:
                output = next(ready[0])
            except StopIteration:  # that unit has finished
                continue
            write([ray.get(output)])
            streams.append(ready[0])
    finally:
        if started_here:
            ray.shutdown()


def _ray_task(
    unit: Unit, config: ExperimentConfig, finished: frozenset[str], data: PreparedData, threads: int,
    ledger: RetrainLedger, stack: bool,
) -> Iterator[tuple[dict[str, Any], Predictions]]:
    """A Ray worker's unit, as a generator task: each output streams back to the driver as it is
    produced (a stacked unit is a whole seed's tasks; an interrupted run keeps what was finished)."""
    _init_worker(threads)
    yield from _worker_outputs(unit, config, finished, data, ledger, stack)


class _RayDict:
    """A dict inside a Ray actor, the retrain ledger of Ray workers: an actor runs one call at a time."""

    def __init__(self, items: dict[str, Any]) -> None:
        self.items = dict(items)

    def setdefault(self, key: str, value: Any) -> Any:
        return self.items.setdefault(key, value)

    def pop(self, key: str, default: Any = None) -> Any:
        return self.items.pop(key, default)

    def set(self, key: str, value: Any) -> None:
        self.items[key] = value


class _RayStore:
    """What :class:`RetrainLedger` calls of its store, as remote calls to a :class:`_RayDict` actor."""

    def __init__(self, actor: Any) -> None:
        self.actor = actor

    def setdefault(self, key: str, value: Any) -> Any:
        import ray

        return ray.get(self.actor.setdefault.remote(key, value))

    def pop(self, key: str, default: Any = None) -> Any:
        import ray

        return ray.get(self.actor.pop.remote(key, default))

    def __setitem__(self, key: str, value: Any) -> None:
        import ray

        ray.get(self.actor.set.remote(key, value))
