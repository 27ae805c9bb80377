"""The benchmark protocol for one (method, seed): search once → for each k, top-k → retrain → test.

Each result row becomes one record. A search is reused across every k of its seed (a method may search
per budget through ``Selector.support``). A failure in the search fails that task's rows; a failure in
one retrain fails only that row; either way the records say why, and the grid goes on. The test split
is touched exactly once per row, after training.

Row kinds (``Row.kind``) at budget k, on the k fields the method chose:

* ``retrain`` — a fresh backbone trained to early stopping (every method);
* ``native`` — the method's own pipeline (Light-FMP's pruned network, continued training);
* ``small`` and ``magnitude`` — the matched-budget model-pruning baselines of the methods in
  ``ExperimentConfig.matched_baselines``: the architecture with every hidden layer cut to
  round(keep_ratio·width) units trained from scratch, and structured magnitude pruning of a
  full-width model trained on the k fields (smallest-norm units removed to the same widths, then
  fine-tuned). Both have the native pipeline's sizes, so "smaller and as accurate" is compared at
  equal parameters.

A run's identity (its id) is what determines its result: the data fingerprint, the row, the method
with *all* its parameters (defaults included, so a changed default is a new run), k, seed, backbone
and training settings — not where it ran (the device is left out; see ``identity_train_config``).
"""

from __future__ import annotations

import datetime as dt
import os
import platform
import secrets
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fmpbench.data.prepared import PreparedData, Split
from fmpbench.labels import variant_suffix
from fmpbench.measures import (
    PeakMemory,
    embedding_lookups_per_sample,
    flops_per_sample,
    inference_ms_per_1000,
)
from fmpbench.models import CTRModel
from fmpbench.models.pruning import kept_count, magnitude_prune
from fmpbench.models.saved import save_model
from fmpbench.results import (
    RECORD_SCHEMA,
    RunRecord,
    code_version,
    iter_records,
    machine_info,
    package_versions,
    pid_alive,
    predictions_path,
    stable_hash,
    write_record,
)
from fmpbench.selectors import SearchContext, Selector, get_selector_class
from fmpbench.training import SplitTensors, TrainConfig, TrainingDiverged, TrainResult, evaluate
from fmpbench.training.metrics import user_grouped_metrics

LATENCY_BATCH = 1000
#: the random stream of the search's row sample (beside the run's seed), apart from every other draw
SEARCH_SAMPLE_STREAM = 5381


@dataclass
class ExperimentConfig:
    """Everything shared by the runs of one grid (besides method, k and seed)."""

    dataset: str
    data_dir: str | None = None
    n_rows: int | None = None
    backbone: str = "mlp"
    backbone_params: dict[str, Any] = field(default_factory=dict)
    train_config: TrainConfig = field(default_factory=TrainConfig)
    method_params: dict[str, dict[str, Any]] = field(default_factory=dict)
    save_predictions: bool = True
    #: methods whose k-field choice also gets the ``small`` and ``magnitude`` rows
    matched_baselines: tuple[str, ...] = ()
    #: hidden-layer keep ratio of those rows when the method has no ``keep_ratio`` of its own
    baseline_keep_ratio: float = 0.5
    #: where each finished retrain row's model is saved (``fmpbench.models.saved``); not part of a run's identity
    model_dir: str | None = None
    #: training rows every search sees (a seeded sample, :func:`search_view`); None: all of them
    search_rows: int | None = None

    def context(self, seed: int) -> SearchContext:
        return SearchContext(seed, self.backbone, dict(self.backbone_params), self.train_config)


@dataclass(frozen=True)
class Task:
    """One search and its top-k retrains: the unit the executors distribute."""

    method: str
    seed: int
    ks: tuple[int, ...]


ROW_KINDS = ("retrain", "native", "small", "magnitude")


@dataclass(frozen=True)
class Row:
    """One result row of a task: its reported name, kind (``ROW_KINDS``), budget and run id."""

    name: str
    k: int
    kind: str
    run_id: str

    def __post_init__(self) -> None:
        if self.kind not in ROW_KINDS:
            raise ValueError(f"row kind must be one of {', '.join(ROW_KINDS)}, got {self.kind!r}")

    @property
    def native(self) -> bool:
        return self.kind == "native"


def identity_train_config(config: TrainConfig) -> dict[str, Any]:
    """The training settings that decide a result: all but the device, so CPU and GPU runs of one
    grid resume and report as the same runs (their numbers agree within floating-point noise)."""
    return {key: value for key, value in config.to_dict().items() if key != "device"}


def resolved_params(method: str, config: ExperimentConfig) -> dict[str, Any]:
    """Every hyper-parameter of ``method`` in this grid: its defaults updated by ``config.method_params``."""
    return get_selector_class(method)(**config.method_params.get(method, {})).get_params()


def baseline_keep_ratio(params: dict[str, Any], config: ExperimentConfig) -> float:
    """Hidden keep ratio of the matched-budget rows: the method's own ``keep_ratio`` when it has one."""
    return float(params.get("keep_ratio", config.baseline_keep_ratio))


def task_rows(task: Task, config: ExperimentConfig, data: PreparedData) -> list[Row]:
    """The rows a task produces: ``none`` one row at k = F; per k a retrain, plus a native row for methods
    with their own pipeline and the two matched-budget rows for ``config.matched_baselines``."""
    cls = get_selector_class(task.method)
    params = resolved_params(task.method, config)
    ks = (data.num_fields,) if cls.keeps_all_fields else task.ks
    variants = [(cls.retrain_name or cls.name, "retrain")]
    if cls.native_name:
        variants.append((cls.native_name, "native"))
    if task.method in config.matched_baselines and not cls.keeps_all_fields:
        variants += [(f"{cls.name}+small", "small"), (f"{cls.name}+magnitude", "magnitude")]
    rows: list[Row] = []
    for k in ks:
        for name, kind in variants:
            identity = {
                "schema": RECORD_SCHEMA,
                "row": name,
                "method": task.method,
                "method_params": params,
                "dataset": config.dataset,
                "data_fingerprint": data.fingerprint,
                "k": k,
                "seed": task.seed,
                "backbone": config.backbone,
                "backbone_params": config.backbone_params,
                "train_config": identity_train_config(config.train_config),
            }
            if kind in ("small", "magnitude"):
                identity["keep_ratio"] = baseline_keep_ratio(params, config)
            if config.search_rows is not None:  # only then: the ids of runs on all rows stay as they were
                identity["search_rows"] = config.search_rows
            rows.append(Row(name, k, kind, stable_hash(identity)))
    return rows


def row_label(row: Row, task: Task, config: ExperimentConfig) -> str:
    """The row's name plus ``[key=value]`` for each parameter off the method's defaults (an ablation)."""
    defaults = get_selector_class(task.method)().get_params()
    return row.name + variant_suffix(resolved_params(task.method, config), defaults)


def _base_record(row: Row, task: Task, config: ExperimentConfig, data: PreparedData) -> RunRecord:
    return RunRecord(
        schema=RECORD_SCHEMA,
        run_id=row.run_id,
        method=row.name,
        label=row_label(row, task, config),
        selector=task.method,
        native_pipeline=row.native,
        pipeline=row.kind,
        dataset=config.dataset,
        data_source=data.data_source,
        data_fingerprint=data.fingerprint,
        data_family=data.family,
        split_seed=data.split_seed,
        data_info={k: v for k, v in data.info.items() if isinstance(v, (int, float, str, bool, list, dict))},
        num_fields=data.num_fields,
        field_names=list(data.field_names),
        test_positives=int(np.count_nonzero(np.asarray(data.test.y) > 0.5)),
        test_negatives=int(np.count_nonzero(np.asarray(data.test.y) <= 0.5)),
        ground_truth=None if data.truth is None else asdict(data.truth),
        k=row.k,
        seed=task.seed,
        backbone=config.backbone,
        backbone_params=config.backbone_params,
        train_config=config.train_config.to_dict(),
        method_params=config.method_params.get(task.method, {}),
        versions=package_versions(),
        code_version=code_version(),
        machine=machine_info(),
        created_at=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    )


def _failure(record: RunRecord, exc: BaseException) -> dict[str, Any]:
    record.update(status="diverged" if isinstance(exc, TrainingDiverged) else "failed",
                  error=f"{type(exc).__name__}: {exc}", traceback=traceback.format_exc())
    return record.to_dict()


def _model_measures(model: CTRModel, batch: torch.Tensor) -> dict[str, Any]:
    """Sizes, FLOPs and latency, measured on validation rows so that test is only scored once."""
    return {
        "embedding_params": model.embedding_parameters(),
        "dense_params": model.dense_parameters(),
        "flops_per_sample": flops_per_sample(model, batch),
        "embedding_lookups_per_sample": embedding_lookups_per_sample(model),
        "inference_ms_per_1000": inference_ms_per_1000(model, batch),
    }


def _measure_batch(data: PreparedData, fields: np.ndarray | None, device: torch.device) -> torch.Tensor:
    x = np.asarray(data.valid.X[:LATENCY_BATCH])
    if fields is not None:
        x = x[:, fields]
    return torch.from_numpy(np.array(x)).to(device)  # a copy: memory-mapped data is read-only


def _reference_measures(config: ExperimentConfig, data: PreparedData, seed: int) -> dict[str, Any]:
    """Sizes of the unpruned backbone, recorded as the 'before' of every row."""
    model = config.context(seed).make_model(data.field_dims)
    return {
        "embedding_params_full": model.embedding_parameters(),
        "dense_params_full": model.dense_parameters(),
        "flops_per_sample_full": flops_per_sample(model, _measure_batch(data, None, torch.device("cpu"))),
    }


def search_view(data: PreparedData, search_rows: int | None, seed: int) -> PreparedData:
    """What a search may see: the training split, or a uniform sample of ``search_rows`` of its rows drawn
    from ``seed`` (sorted, so memory-mapped reads stay sequential), the validation split whole, and
    neither the test split (empty) nor the planted truth."""
    train = data.train
    if search_rows is not None and search_rows < len(train):
        rows = np.sort(np.random.default_rng([SEARCH_SAMPLE_STREAM, seed]).choice(len(train), search_rows,
                                                                                   replace=False))
        train = Split(np.ascontiguousarray(train.X[rows]), np.ascontiguousarray(train.y[rows]))
    hidden = Split(data.test.X[:0], data.test.y[:0])
    return replace(data, train=train, test=hidden, truth=None)


#: a row's test predictions: labels and probabilities, the run id of the finished run whose retrain it
#: reused (its predictions file is copied, :func:`fmpbench.results.write_record`), or None (not stored)
Predictions = tuple[np.ndarray, np.ndarray] | str | None

#: the record fields a retrain determines, copied from the run that trained it when a row reuses it
RETRAIN_FIELDS = (
    "selected_fields", "test_auc", "test_logloss", "test_gauc", "test_ndcg10", "gauc_users", "gauc_users_skipped",
    "ndcg_users", "valid_auc", "retrain_seconds", "epochs", "seconds_per_epoch", "native_info", "embedding_params",
    "dense_params", "flops_per_sample", "embedding_lookups_per_sample", "inference_ms_per_1000",
)


def retrain_key(row: Row, fields: np.ndarray, data: PreparedData, context: SearchContext, config: ExperimentConfig,
                keep_ratio: float) -> str | None:
    """What decides a retrain's result, hashed: two rows with one key train the same model on the same data.

    The data fingerprint (split included), the kept fields in model order, the row kind (a ``small`` or
    ``magnitude`` row also its keep ratio), backbone and parameters, the training settings without the
    device, and the seed. None for a native row: its model comes from the method's own state.
    """
    if row.native:
        return None
    identity: dict[str, Any] = {
        "kind": row.kind,
        "data_fingerprint": data.fingerprint,
        "fields": [int(f) for f in fields],
        "seed": context.seed,
        "backbone": config.backbone,
        "backbone_params": context.backbone_params,
        "train_config": identity_train_config(context.train_config),
    }
    if row.kind in ("small", "magnitude"):
        identity["keep_ratio"] = keep_ratio
    return stable_hash(identity)


def retrain_outcome(run_id: str, result: dict[str, Any]) -> dict[str, Any]:
    """What the ledger keeps of a finished retrain: the run that trained it and its ``RETRAIN_FIELDS``."""
    return {"run_id": run_id, **{name: result.get(name) for name in RETRAIN_FIELDS}}


#: :meth:`RetrainLedger.acquire`'s answer while another live process of this host trains that retrain
BUSY = "busy"


class RetrainLedger:
    """The retrains of a grid that are finished (or being trained), by :func:`retrain_key`, so none runs twice.

    ``store`` maps a key to the finished outcome (``run_id`` plus the ``RETRAIN_FIELDS``) or to the claim
    of the process training it (``"claim host pid nonce"``): a dict in one process, a ``multiprocessing``
    manager's dict shared by ``--jobs`` workers, or a Ray actor's (:mod:`fmpbench.grid`); each only needs
    an atomic ``setdefault``. A process holds at most the one claim it is training, and one waiting holds
    none, so waiting cannot deadlock. A claim of another host cannot be checked for liveness: that
    retrain is trained here too (neither record then says ``reused_from``; ``run`` counts them).
    """

    def __init__(self, store: Any = None) -> None:
        self.store = {} if store is None else store
        self.host = platform.node()

    def acquire(self, key: str) -> dict[str, Any] | str | None:
        """The finished outcome of ``key``; None when the caller is to train it (claimed for it where
        possible); ``BUSY`` while a live process of this host trains it."""
        token = f"claim {self.host} {os.getpid()} {secrets.token_hex(4)}"
        found = self.store.setdefault(key, token)
        if isinstance(found, dict):
            return found
        if found == token:
            return None
        _, host, pid, _ = found.split(" ")
        if host != self.host:
            return None
        if pid_alive(int(pid)):
            return BUSY
        self.store.pop(key, None)  # its claimant died: take it over
        return self.acquire(key)

    def wait(self, key: str, poll_s: float = 0.2) -> dict[str, Any] | None:
        """Block until ``key`` is finished (its outcome) or is this caller's to train (None)."""
        while (found := self.acquire(key)) == BUSY:
            time.sleep(poll_s)
        return found  # type: ignore[return-value]

    def finish(self, key: str, run_id: str, result: dict[str, Any]) -> None:
        self.store[key] = retrain_outcome(run_id, result)

    def abandon(self, key: str) -> None:
        """Give up a claim (the retrain failed): a process waiting for it then trains it itself."""
        self.store.pop(key, None)


def finished_retrains(results_dir: Path, with_predictions: bool) -> dict[str, dict[str, Any]]:
    """The outcomes of the finished runs in ``results_dir`` that trained their retrain themselves (what a
    resumed grid's ledger starts with); with ``with_predictions`` only those whose predictions are stored."""
    found: dict[str, dict[str, Any]] = {}
    for record in iter_records(results_dir):
        key = record.get("retrain_key")
        if record["status"] != "ok" or not key or record.get("reused_from"):
            continue
        if with_predictions and not predictions_path(results_dir, record["run_id"]).is_file():
            continue
        found[key] = retrain_outcome(record["run_id"], record)
    return found


#: trains a fresh retrain model on ``fields`` of the data in a context, as :func:`_fit_model` does
RetrainFitter = Callable[[CTRModel, PreparedData, np.ndarray, SearchContext], TrainResult]


def iter_task_outputs(
    task: Task,
    config: ExperimentConfig,
    data: PreparedData,
    skip_run_ids: set[str] | frozenset[str] = frozenset(),
    ledger: RetrainLedger | None = None,
    fit_retrain: RetrainFitter | None = None,
) -> Iterator[tuple[dict[str, Any], Predictions]]:
    """Run the missing rows of one task, yielding each row's record and test predictions.

    ``fit_retrain`` trains a ``retrain`` row's fresh model (default: on its own, :func:`_fit_model`;
    :mod:`fmpbench.stacking` passes one that stacks it with other tasks' retrains).

    A retrain already in ``ledger`` is not trained again: the row takes its outcome, with
    ``reused_from`` naming the run that trained it and 0 retrain seconds. A row whose retrain another
    process is training waits until the task's other rows are done. Nothing is written here, so a
    remote worker can ship its outputs to the process that owns the results directory (see
    :mod:`fmpbench.grid`).
    """
    rows = [r for r in task_rows(task, config, data) if r.run_id not in skip_run_ids]
    if not rows:
        return
    ledger = ledger if ledger is not None else RetrainLedger()
    search_data = search_view(data, config.search_rows, task.seed)
    context = config.context(task.seed)
    cls = get_selector_class(task.method)
    search_start = time.perf_counter()
    memory = PeakMemory(context.device)
    try:
        torch.manual_seed(task.seed)
        selector: Selector = cls(**config.method_params.get(task.method, {}))
        selector.fit(search_data, context)
        search_seconds = time.perf_counter() - search_start
        search_peak_mb = memory.lap()
        shared = {
            **_reference_measures(config, data, task.seed),
            "search_seconds": search_seconds,
            "field_scores": dict(zip(data.field_names, selector.scores_.tolist())),
            "method_info": selector.describe(),
            "method_params": selector.get_params(),
            "search_rows": config.search_rows,
            "search_train_rows": len(search_data.train),
        }
    except Exception as exc:  # noqa: BLE001 - a failing method must not stop the grid
        for row in rows:
            yield _failure(_base_record(row, task, config, data), exc), None
        return

    keep_ratio = baseline_keep_ratio(selector.get_params(), config)
    queue = deque(rows)
    postponed = 0  # rows in a row put back because another process trains their retrain
    while queue:
        row = queue.popleft()
        record = _base_record(row, task, config, data)
        record.update(shared)
        try:
            start = time.perf_counter()
            fields = np.asarray(selector.support(row.k, search_data, context))
            record.selection = selector.selection_info(row.k, search_data, context)
            record.selection_seconds = time.perf_counter() - start
            key = record.retrain_key = retrain_key(row, fields, data, context, config, keep_ratio)
            found = None
            if key is not None:  # wait only when every row left waits for another process
                found = ledger.acquire(key) if postponed <= len(queue) else ledger.wait(key)
            if found == BUSY:
                queue.append(row)
                postponed += 1
                continue
            postponed = 0
            predictions: Predictions
            if isinstance(found, dict):
                record.update({name: found[name] for name in RETRAIN_FIELDS})
                record.update(retrain_seconds=0.0, reused_from=found["run_id"])
                predictions = found["run_id"]
            else:
                try:
                    result, predictions = _train_and_test(selector, row, fields, data, context, config,
                                                          fit_retrain or _fit_model)
                except BaseException:
                    if key is not None:
                        ledger.abandon(key)
                    raise
                record.update(result)
                if key is not None:
                    ledger.finish(key, row.run_id, result)
        except Exception as exc:  # noqa: BLE001 - one failed row must not stop the others
            yield _failure(record, exc), None
            continue
        record.total_seconds = search_seconds + record.selection_seconds + record.retrain_seconds
        record.peak_memory_mb = max(search_peak_mb, memory.lap())  # this run's search and retrain only
        record.status = "ok"
        yield record.to_dict(), predictions if config.save_predictions else None


def run_task(
    task: Task,
    config: ExperimentConfig,
    data: PreparedData,
    results_dir: Path,
    skip_run_ids: set[str] | frozenset[str] = frozenset(),
    report: Callable[[dict[str, Any]], None] | None = None,
    ledger: RetrainLedger | None = None,
) -> list[dict[str, Any]]:
    """Run the missing rows of one task in this process, writing each record as soon as it exists.

    ``report`` (optional) is called with each record once written (progress display); ``ledger`` holds
    the grid's finished retrains (default: this task's own).
    """
    records = []
    for record, predictions in iter_task_outputs(task, config, data, skip_run_ids, ledger):
        write_record(results_dir, record, predictions)
        records.append(record)
        if report is not None:
            report(record)
    return records


def _fit_model(model: CTRModel, data: PreparedData, fields: np.ndarray, context: SearchContext) -> TrainResult:
    train, valid = context.tensors(data, fields)
    return context.trainer().fit(model, train, valid)


def _train_baseline(
    kind: str, fields: np.ndarray, data: PreparedData, context: SearchContext, keep_ratio: float
) -> tuple[CTRModel, float, int, float, dict[str, Any]]:
    """A matched-budget row: ``small`` (cut widths, from scratch) or ``magnitude`` (train, prune, fine-tune)."""
    label_rate = float(np.mean(data.train.y))
    dims = [data.field_dims[f] for f in fields]
    full = context.make_model(dims, label_rate=label_rate)
    widths = [kept_count(keep_ratio, width) for width in full.hidden]
    if kind == "small":
        small_context = replace(context, backbone_params={**context.backbone_params, "hidden": tuple(widths)})
        model = small_context.make_model(dims, label_rate=label_rate)
        result = _fit_model(model, data, fields, context)
        return model, result.seconds, result.epochs, result.best_valid_auc, {"hidden_kept": widths}
    first = _fit_model(full, data, fields, context)
    model, plan = magnitude_prune(full, keep_ratio)
    valid = SplitTensors(data.valid, context.device, fields)
    valid_auc_pruned = evaluate(model, valid, context.train_config.eval_batch_size)[0]
    tuned = _fit_model(model, data, fields, context)
    extra = {
        "hidden_kept": plan.hidden,
        "hidden_full": list(full.hidden),
        "full_width_valid_auc": first.best_valid_auc,
        "valid_auc_after_pruning": valid_auc_pruned,
        "full_width_epochs": first.epochs,
        "fine_tune_epochs": tuned.epochs,
    }
    return model, first.seconds + tuned.seconds, first.epochs + tuned.epochs, tuned.best_valid_auc, extra


def _train_and_test(
    selector: Selector, row: Row, fields: np.ndarray, data: PreparedData, context: SearchContext,
    config: ExperimentConfig, fit_retrain: RetrainFitter,
) -> tuple[dict[str, Any], tuple[np.ndarray, np.ndarray]]:
    """Train the row's model on ``fields`` (retrain, native pipeline or matched-budget baseline), then
    score it on the test split once: the row's ``RETRAIN_FIELDS`` and its test labels and probabilities."""
    if row.kind == "native":
        outcome = selector.fit_native(row.k, data, context)
        model, fields = outcome.model, np.asarray(outcome.fields)
        retrain_seconds, epochs, valid_auc, extra = outcome.train_seconds, outcome.epochs, None, outcome.extra
    elif row.kind in ("small", "magnitude"):
        keep_ratio = baseline_keep_ratio(selector.get_params(), config)
        model, retrain_seconds, epochs, valid_auc, extra = _train_baseline(row.kind, fields, data, context, keep_ratio)
    else:
        label_rate = float(np.mean(data.train.y))
        model = context.make_model([data.field_dims[f] for f in fields], label_rate=label_rate)
        result = fit_retrain(model, data, fields, context)
        retrain_seconds, epochs, valid_auc, extra = result.seconds, result.epochs, result.best_valid_auc, {}
    test = SplitTensors(data.test, context.device, fields)
    test_auc, test_logloss, probs = evaluate(model, test, context.train_config.eval_batch_size)
    if not np.isfinite(test_logloss):
        raise TrainingDiverged("test predictions are not finite")
    if config.model_dir is not None and row.kind == "retrain":
        names = [data.field_names[f] for f in fields]
        save_model(config.model_dir, model, config.backbone, context.backbone_params, fields.tolist(),
                   {"run_id": row.run_id, "fields": names, "data_fingerprint": data.fingerprint,
                    "dataset": config.dataset, "method": row.name, "k": row.k, "seed": context.seed})
    return {
        "selected_fields": [data.field_names[f] for f in fields],
        "test_auc": test_auc,
        "test_logloss": test_logloss,
        **user_grouped_metrics(data, probs),
        "valid_auc": valid_auc,
        "retrain_seconds": retrain_seconds,
        "epochs": epochs,
        "seconds_per_epoch": retrain_seconds / max(epochs, 1),
        "native_info": extra,
        **_model_measures(model, _measure_batch(data, fields, context.device)),
    }, (test.y.cpu().numpy(), probs)
