"""Run records: one JSON file per run, written atomically, keyed by a hash of what defines the run.

A record is the unit ``report`` reads. It is written with write-to-temp + ``os.replace`` so a killed
process never leaves a half-written record; test predictions (for DeLong's test) go to a compressed
side file written *before* the record, so a record's presence means everything it points to exists.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import platform
import secrets
import subprocess
import time
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field, fields
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np

RECORD_SCHEMA = 1
#: the layout of a record, ``major.minor``: a reader of major 1 reads every 1.x record (a minor version only
#: adds fields); records written before the version was stored are 1.0
SCHEMA_VERSION = "1.1"
READABLE_MAJOR = 1
LEGACY_SCHEMA_VERSION = "1.0"


class SchemaVersionError(ValueError):
    """A record of a schema major version this fmpbench cannot read (skipped with a warning by readers)."""


def _doc(group: str, doc: str, default: Any = None) -> Any:
    """A record field with its group and one-line meaning (what ``docs/record_schema.md`` lists)."""
    return field(default=default, metadata={"group": group, "doc": doc})


IDENTITY, DATA, MODEL, RESULTS, EXECUTION = (
    "Identity and status", "Data", "Model, training, selection", "Results and costs",
    "Execution (not part of the identity)",
)


@dataclass
class RunRecord:
    """One run's record: the one definition that the protocol writes and every reader reads.

    ``docs/record_schema.md`` is rendered from these fields (:func:`record_schema_markdown`; a test keeps
    them equal). Fields a run does not reach (the results of a failed run) are None.
    """

    run_id: str = _doc(IDENTITY, "16 hex digits: hash of what decides the result (data fingerprint, row, method with "
                       "all parameters, k, seed, backbone and parameters, training settings without the device, "
                       "search rows when set)", "")
    schema_version: str = _doc(IDENTITY, "record layout `major.minor` (now 1.1); records without it are 1.0; a reader "
                               "skips, with a warning, a major version it does not know", SCHEMA_VERSION)
    schema: int = _doc(IDENTITY, "version of the run-id identity (1)", RECORD_SCHEMA)
    status: str = _doc(IDENTITY, "`ok`, `failed` or `diverged`", "failed")
    error: str | None = _doc(IDENTITY, "only when not `ok`: the exception")
    traceback: str | None = _doc(IDENTITY, "only when not `ok`: its traceback")
    method: str = _doc(IDENTITY, "the result row's name (`lightfmp`, `lightfmp-fs`, `gbdt+small`, ...)", "")
    label: str = _doc(IDENTITY, "`method` plus `[key=value]` for every parameter off the method's defaults (ablation "
                      "variants); derived on reading for records written before it existed", "")
    selector: str = _doc(IDENTITY, "the `--methods` name that produced the row", "")
    pipeline: str | None = _doc(IDENTITY, "`retrain`, `native`, `small` or `magnitude` (see `fmpbench/protocol.py`)")
    native_pipeline: bool = _doc(IDENTITY, '`pipeline == "native"`', False)
    method_params: dict[str, Any] | None = _doc(IDENTITY, "every hyper-parameter of the selector (defaults included)")
    method_info: dict[str, Any] | None = _doc(IDENTITY, "what the search reports about itself (e.g. chosen depth)")
    k: int = _doc(IDENTITY, "budget: fields kept", 0)
    seed: int = _doc(IDENTITY, "seed of the search and the retrain", 0)
    created_at: str = _doc(IDENTITY, "ISO time of writing (UTC)", "")

    dataset: str = _doc(DATA, "dataset name", "")
    data_source: str = _doc(DATA, "`real`, `synthetic` or `standin:<name>`", "")
    data_fingerprint: str = _doc(DATA, "hash of the prepared data (raw checksum and every preparation parameter, "
                                 "split included)", "")
    data_family: str | None = _doc(DATA, "the same data up to its split (seeds of a `--vary-split` grid share it)")
    split_seed: int | None = _doc(DATA, "seed of the random split")
    data_info: dict[str, Any] | None = _doc(DATA, "preparation facts (rows, cardinalities, skipped rows, ...)")
    num_fields: int = _doc(DATA, "number of fields of the data", 0)
    field_names: list[str] | None = _doc(DATA, "all fields of the data, in order")
    test_positives: int | None = _doc(DATA, "clicks in the test split")
    test_negatives: int | None = _doc(DATA, "non-clicks in the test split")
    ground_truth: dict[str, Any] | None = _doc(DATA, "planted roles, pairs and copies (synthetic data and stand-ins)")

    backbone: str = _doc(MODEL, "retrained model", "")
    backbone_params: dict[str, Any] | None = _doc(MODEL, "its non-default parameters")
    train_config: dict[str, Any] | None = _doc(MODEL, "trainer settings (`fmpbench.training.TrainConfig`), device "
                                               "included")
    field_scores: dict[str, float] | None = _doc(MODEL, "one score per field (higher = keep)")
    selected_fields: list[str] | None = _doc(MODEL, "the fields the tested model used")
    selection: dict[str, Any] | None = _doc(MODEL, "per-k details of the selection (methods that search per budget)")
    native_info: dict[str, Any] | None = _doc(MODEL, "extra facts of native / matched-budget rows (kept widths, "
                                              "pruning AUCs, epochs)")
    epochs: int | None = _doc(MODEL, "training epochs of the retrain (both phases for `magnitude`)")
    search_rows: int | None = _doc(MODEL, "`--search-rows`: training rows each search was given (a seeded uniform "
                                   "sample; part of the run id when set); null: all")
    search_train_rows: int | None = _doc(MODEL, "training rows the search saw")
    retrain_key: str | None = _doc(MODEL, "hash of what decides the retrain (data fingerprint, fields, row kind, "
                                   "backbone, training settings without device, seed); null for native rows")
    reused_from: str | None = _doc(MODEL, "the run whose identical retrain this row reused instead of training "
                                   "(its results copied; `retrain_seconds` 0); null when trained here")
    stack_size: int | None = _doc(MODEL, "`run --stack-retrains`: retrains trained together in this row's stack "
                                  "(`fmpbench.stacking`; `retrain_seconds` is its share of the stack's time); "
                                  "null when trained alone")
    stacked_with: list[str] | None = _doc(MODEL, "the run ids of the other retrains in that stack")

    test_auc: float | None = _doc(RESULTS, "test AUC, scored once after training")
    test_logloss: float | None = _doc(RESULTS, "test logloss")
    test_gauc: float | None = _doc(RESULTS, "per-user GAUC (null without a user field)")
    test_ndcg10: float | None = _doc(RESULTS, "per-user NDCG@10 (null without a user field)")
    gauc_users: int | None = _doc(RESULTS, "users counted by GAUC")
    gauc_users_skipped: int | None = _doc(RESULTS, "users GAUC skips (one class)")
    ndcg_users: int | None = _doc(RESULTS, "users counted by NDCG@10")
    valid_auc: float | None = _doc(RESULTS, "best validation AUC of the retrain (null for native rows)")
    embedding_params: int | None = _doc(RESULTS, "embedding parameters of the tested model")
    dense_params: int | None = _doc(RESULTS, "dense parameters of the tested model")
    embedding_params_full: int | None = _doc(RESULTS, "embedding parameters of the unpruned backbone on all fields")
    dense_params_full: int | None = _doc(RESULTS, "dense parameters of the unpruned backbone on all fields")
    flops_per_sample: float | None = _doc(RESULTS, "forward FLOPs per sample of the tested model")
    flops_per_sample_full: float | None = _doc(RESULTS, "the same for the unpruned backbone")
    embedding_lookups_per_sample: int | None = _doc(RESULTS, "embedding values read per sample")
    search_seconds: float | None = _doc(RESULTS, "wall-clock seconds of the search")
    selection_seconds: float | None = _doc(RESULTS, "seconds to pick the k fields")
    retrain_seconds: float | None = _doc(RESULTS, "seconds of training spent by this run (0 when reused)")
    total_seconds: float | None = _doc(RESULTS, "search + selection + retrain seconds")
    seconds_per_epoch: float | None = _doc(RESULTS, "seconds per training epoch of the model (the source run's when "
                                           "reused)")
    inference_ms_per_1000: float | None = _doc(RESULTS, "latency per 1,000 samples on validation rows")
    peak_memory_mb: float | None = _doc(RESULTS, "the run's peak memory (its search and retrain)")
    predictions_file: str | None = _doc(RESULTS, "`predictions/<run_id>.npz` when stored")

    versions: dict[str, str] | None = _doc(EXECUTION, "Python and package versions")
    code_version: str | None = _doc(EXECUTION, "git commit of the checkout")
    machine: dict[str, Any] | None = _doc(EXECUTION, "platform, processor, CPU count, host name")

    def update(self, values: Mapping[str, Any] | None = None, **more: Any) -> None:
        """Set fields by name; a name the record does not define is an error (no silent extra keys)."""
        for name, value in {**(values or {}), **more}.items():
            if name not in _FIELD_NAMES:
                raise AttributeError(f"RunRecord has no field '{name}'")
            setattr(self, name, value)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> RunRecord:
        """A stored record, checked and migrated: 1.0 records gain ``schema_version``, fields a record lacks
        are None; keys this version does not define (a newer minor's) are dropped."""
        version = schema_version_of(raw)
        known = _FIELD_NAMES - {"schema_version"}
        return cls(**{name: raw[name] for name in known if name in raw}, schema_version=version)


_FIELD_NAMES = frozenset(f.name for f in fields(RunRecord))


def schema_version_of(raw: Mapping[str, Any]) -> str:
    """The stored record's ``schema_version`` (1.0 when it has none); a ``SchemaVersionError`` when this
    fmpbench cannot read its major version."""
    version = str(raw.get("schema_version") or LEGACY_SCHEMA_VERSION)
    if version.split(".")[0] != str(READABLE_MAJOR):
        raise SchemaVersionError(f"record schema_version {version}: this fmpbench reads {READABLE_MAJOR}.x (skipped)")
    return version


def record_schema_markdown() -> str:
    """The record's fields as Markdown tables by group: the JSON-record part of ``docs/record_schema.md``."""
    out: list[str] = []
    for group in (IDENTITY, DATA, MODEL, RESULTS, EXECUTION):
        out += ["", group, "", "| field | type | meaning |", "|:---|:---|:---|"]
        for spec in fields(RunRecord):
            if spec.metadata["group"] == group:
                kind = str(spec.type).replace("|", "or").replace("dict[str, Any]", "object")
                out.append(f"| `{spec.name}` | {kind} | {spec.metadata['doc']} |")
    return "\n".join(out[1:]) + "\n"
#: record fields that differ between two otherwise identical runs: timings, memory, time of writing,
#: and the checkout's commit (which may move between them)
VOLATILE_FIELDS = frozenset(
    {
        "created_at",
        "code_version",
        "search_seconds",
        "selection_seconds",
        "retrain_seconds",
        "total_seconds",
        "seconds_per_epoch",
        "inference_ms_per_1000",
        "peak_memory_mb",
        "reused_from",  # which of two rows with one retrain trains it depends on the executor's order
        "stack_size",  # how retrains were trained (stacked or alone), not what they are
        "stacked_with",
    }
)
TRACKED_PACKAGES = ("fmpbench", "torch", "numpy", "pandas", "scipy", "scikit-learn", "xgboost")


def stable_hash(obj: Any, length: int = 16) -> str:
    """Hex digest of a JSON-serialisable object with sorted keys (stable across processes)."""
    payload = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:length]


def with_path(exc: OSError, path: Path) -> OSError:
    """``exc`` again, naming ``path`` when it names no file (a write to a full disk knows no file name)."""
    filename = exc.filename if exc.filename is not None else str(path)
    return OSError(exc.errno, exc.strerror or str(exc), filename, None, exc.filename2)


def _atomic_write_bytes(path: Path, payload: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # Not mkstemp: its 0600 would survive the rename and hide records in a shared results folder;
    # os.open with 0o666 applies the umask like any file the user creates.
    while True:
        tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue
        break
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise with_path(exc, path) from exc
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def record_path(results_dir: Path, run_id: str) -> Path:
    return Path(results_dir) / f"{run_id}.json"


def predictions_path(results_dir: Path, run_id: str) -> Path:
    return Path(results_dir) / "predictions" / f"{run_id}.npz"


def write_record(
    results_dir: Path, record: dict[str, Any], predictions: tuple[np.ndarray, np.ndarray] | str | None = None
) -> Path:
    """Write a run's predictions (labels uint8, probabilities float16) and then its record.

    ``predictions`` may be the run id of a record in ``results_dir`` whose retrain this run reused: its
    predictions file is copied (when it has one), so every record's predictions sit under its own id.
    """
    run_id = record["run_id"]
    target = predictions_path(results_dir, run_id)
    if isinstance(predictions, str):
        source = predictions_path(results_dir, predictions)
        if source.is_file():
            _atomic_write_bytes(target, source.read_bytes())
            record["predictions_file"] = str(predictions_path(Path("."), run_id))
    elif predictions is not None:
        labels, probs = predictions
        buffer = io.BytesIO()
        np.savez_compressed(buffer, y=np.asarray(labels, dtype=np.uint8), p=np.asarray(probs, dtype=np.float16))
        _atomic_write_bytes(target, buffer.getvalue())
        record["predictions_file"] = str(predictions_path(Path("."), run_id))
    payload = json.dumps(record, indent=1, sort_keys=True, default=_json_default).encode()
    path = record_path(results_dir, run_id)
    _atomic_write_bytes(path, payload)
    return path


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    return str(obj)


def read_record(path: Path) -> dict[str, Any]:
    """A stored record as written, with its ``schema_version`` (1.0 when it has none): a
    ``SchemaVersionError`` for another major version, a ``ValueError`` for anything not a record."""
    with open(path, encoding="utf-8") as handle:
        record = json.load(handle)
    if not isinstance(record, dict) or "run_id" not in record or "status" not in record:
        raise ValueError("not a run record (missing run_id/status)")
    return {**record, "schema_version": schema_version_of(record)}


def iter_records(results_dir: Path) -> Iterator[dict[str, Any]]:
    """Every readable record; a corrupt one, or one of another schema major version, is skipped with a
    warning naming its file."""
    for path in sorted(Path(results_dir).glob("*.json")):
        try:
            yield read_record(path)
        except SchemaVersionError as exc:
            warnings.warn(f"skipping result record {path}: {exc}", stacklevel=2)
        except (OSError, ValueError) as exc:
            warnings.warn(f"skipping corrupt result record {path}: {exc}", stacklevel=2)


def finished_run_ids(results_dir: Path) -> set[str]:
    """Ids of runs that completed successfully (failures are retried on ``--resume``)."""
    return {r["run_id"] for r in iter_records(results_dir) if r["status"] == "ok"}


CLAIMS_FOLDER = ".claims"
#: how long a claim by a process on another host is honoured (its liveness cannot be checked from here):
#: longer than any single task of a full-size grid
CLAIM_MAX_AGE_S = 24 * 3600.0


def pid_alive(pid: int) -> bool:
    """Whether a process of this host with that pid exists (another user's counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, but another user's
        return True
    return True


class RunClaims:
    """This process's claims on runs of one results folder, so that concurrent ``run``s split the work.

    A claim is ``.claims/<run_id>.claim`` created with ``O_CREAT | O_EXCL`` (atomic, also on NFS),
    holding its owner's host and pid. Another process skips a claimed run while the owner lives: on
    this host while its pid exists; on another host (e.g. Slurm jobs on a shared file system) until
    the claim is ``max_age_s`` old. A stale claim is taken over by renaming it away first, so of two
    processes taking over the same claim only one succeeds. (A process that took a claim over just
    before another one judged it stale can still lose it to that one: the run is then computed twice,
    and since records are written atomically, both copies are whole.)
    """

    def __init__(self, results_dir: Path, max_age_s: float = CLAIM_MAX_AGE_S) -> None:
        self.folder = Path(results_dir) / CLAIMS_FOLDER
        self.max_age_s = max_age_s
        self.host = platform.node()
        self.held: set[str] = set()
        #: run id -> owner ("host pid N") of each run skipped because another process holds it
        self.declined: dict[str, str] = {}

    def take(self, run_ids: list[str]) -> bool:
        """Claim every run of ``run_ids`` (one task's), or none of them when a live process holds one."""
        taken: list[str] = []
        for run_id in run_ids:
            if run_id in self.held or self._claim(run_id):
                taken.append(run_id)
                self.held.add(run_id)
                continue
            self.release(taken)
            return False
        return True

    def release(self, run_ids: list[str]) -> None:
        for run_id in run_ids:
            if run_id in self.held:
                self.held.discard(run_id)
                self._path(run_id).unlink(missing_ok=True)

    def release_all(self) -> None:
        self.release(sorted(self.held))
        try:
            self.folder.rmdir()  # only when no other process holds a claim
        except OSError:
            pass

    def _path(self, run_id: str) -> Path:
        return self.folder / f"{run_id}.claim"

    def _claim(self, run_id: str) -> bool:
        path = self._path(run_id)
        self.folder.mkdir(parents=True, exist_ok=True)
        for _ in range(3):
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            except FileExistsError:
                owner = self._live_owner(path)
                if owner is not None:
                    self.declined[run_id] = owner
                    return False
                try:  # stale: move it away; of several processes doing so, only one finds it
                    stale = path.with_name(f".{path.name}.{secrets.token_hex(4)}.stale")
                    os.rename(path, stale)
                    stale.unlink()
                except FileNotFoundError:
                    pass
                continue
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump({"host": self.host, "pid": os.getpid(), "since": time.time()}, handle)
            return True
        return False

    def _live_owner(self, path: Path) -> str | None:
        """Who holds the claim at ``path`` while it is live, or None when it is stale (or gone)."""
        try:
            age = time.time() - path.stat().st_mtime
        except OSError:
            return None
        try:
            owner = json.loads(path.read_text(encoding="utf-8"))
            host, pid = str(owner["host"]), int(owner["pid"])
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError):  # being written this instant, or garbage
            return "an unreadable claim" if age < 60 else None
        alive = pid_alive(pid) if host == self.host else age < self.max_age_s
        return f"{host} pid {pid}" if alive else None


def load_predictions(results_dir: Path, run_id: str) -> tuple[np.ndarray, np.ndarray]:
    with np.load(predictions_path(results_dir, run_id)) as data:
        return data["y"], data["p"].astype(np.float64)


def package_versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for name in TRACKED_PACKAGES:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            continue
    return found


def machine_info() -> dict[str, Any]:
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "hostname": platform.node(),
    }


def code_version() -> str:
    """The git commit of the checkout this package runs from, or ``unknown``."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        )
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def load_results(results_dir: Path) -> Any:
    """Every record of ``results_dir`` as a pandas DataFrame, one row per record (columns:
    ``fmpbench.report.load.COLUMNS``, see ``docs/record_schema.md``); imports neither torch nor xgboost."""
    from fmpbench.report.load import load_results as load

    return load(Path(results_dir)).runs
