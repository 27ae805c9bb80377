"""Stored run records → one long-format table with one row per record.

Two derived keys decide what is compared with what, so that unlike runs are never mixed silently:

* ``block`` — the dataset as shown in tables: its name, ``(stand-in)`` when the records come from the
  built-in stand-in rather than real files, and, only when one dataset was run under several setups
  (data fingerprint, backbone, backbone parameters, trainer settings), a short tag naming the setup.
* ``label`` — the result row's name (``lightfmp``, ``lightfmp-fs``, …), plus ``[key=value]`` for every
  method parameter that differs from the selector's registered defaults (e.g. a pretraining-subset
  ablation, ``lightfmp[subset=0.05]``). Records store it (``label``); for older records it is derived
  from the built-in selector's defaults as read from the source (``catalog.builtin_defaults``, so no
  torch is imported), and for a plug-in, or when no run has the defaults, the most frequent parameter
  set of that selector is the plain one.

Corrupt files are skipped with a warning naming the file and kept in ``LoadedResults.corrupt``; two
successful records of the same (block, label, k, seed) keep the newest and mark the other
``superseded`` — both lists end up in the failures table.
"""

from __future__ import annotations

import json
import math
import re
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from fmpbench.labels import canonical as _canonical
from fmpbench.labels import json_key as _key
from fmpbench.labels import variant_suffix as _variant_suffix
from fmpbench.results import SchemaVersionError, predictions_path, read_record, record_path, stable_hash

NUMERIC_FIELDS = (
    "test_auc", "test_logloss", "valid_auc", "embedding_params", "dense_params", "embedding_params_full",
    "dense_params_full", "flops_per_sample", "flops_per_sample_full", "embedding_lookups_per_sample",
    "search_seconds", "retrain_seconds", "total_seconds", "epochs", "seconds_per_epoch",
    "inference_ms_per_1000", "peak_memory_mb", "test_gauc", "test_ndcg10", "gauc_users", "gauc_users_skipped",
    "ndcg_users",
)
STANDIN_PREFIX = "standin:"
COLUMNS = (
    "file", "run_id", "status", "error", "dataset", "data_source", "method", "selector", "native_pipeline", "params",
    "k", "num_fields", "seed", "field_names", "field_scores", "selected_fields", "has_predictions", "created_at",
    "setup", "pipeline", "test_positives", "test_negatives", "ground_truth", "backbone", *NUMERIC_FIELDS, "block",
    "label", "superseded", "schema_version", "reused_from", "search_rows",
)
"""The columns of ``LoadedResults.runs``: one row per record, ``params`` holding the method parameters."""


@dataclass
class LoadedResults:
    """Every record of a results directory, plus the files that could not be read."""

    results_dir: Path
    runs: pd.DataFrame
    corrupt: list[tuple[str, str]] = field(default_factory=list)

    @property
    def ok(self) -> pd.DataFrame:
        """Successful, non-superseded runs: the rows every statistic is computed from."""
        runs = self.runs
        return runs[(runs["status"] == "ok") & ~runs["superseded"]]


def slug(text: str) -> str:
    """A file-name-safe form of a dataset block, e.g. ``avazu (stand-in)`` -> ``avazu-stand-in``."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def _number(value: Any) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return math.nan
    return out


def _without_device(train_config: Any) -> Any:
    if isinstance(train_config, dict):
        return {k: v for k, v in train_config.items() if k != "device"}
    return train_config


def _flat_row(record: dict[str, Any], path: Path) -> dict[str, Any]:
    names = [str(n) for n in record.get("field_names") or []]
    scores = record.get("field_scores") or {}
    row: dict[str, Any] = {
        "file": path.name,
        "run_id": str(record["run_id"]),
        "status": str(record["status"]),
        "error": str(record.get("error") or ""),
        "dataset": str(record.get("dataset", "?")),
        "data_source": str(record.get("data_source", "")),
        "method": str(record.get("method", "?")),
        "selector": str(record.get("selector") or record.get("method", "?")),
        "native_pipeline": bool(record.get("native_pipeline", False)),
        "params": _canonical(record.get("method_params") or {}),
        "k": int(record.get("k", -1)),
        "num_fields": int(record.get("num_fields", len(names))),
        "seed": int(record.get("seed", -1)),
        "field_names": tuple(names),
        "field_scores": tuple(_number(scores.get(n)) for n in names) if scores else (),
        "selected_fields": tuple(str(f) for f in record.get("selected_fields") or ()),
        "has_predictions": predictions_path(path.parent, str(record["run_id"])).is_file(),
        "created_at": str(record.get("created_at", "")),
        # the data up to its split (seeds may draw their own splits) and what decides the result, not
        # where it ran: a CPU and a GPU run of one grid are one setup
        "setup": stable_hash([record.get("data_family") or record.get("data_fingerprint"), record.get("backbone"),
                              record.get("backbone_params"), _without_device(record.get("train_config"))], 8),
        "pipeline": str(record.get("pipeline") or ("native" if record.get("native_pipeline") else "retrain")),
        "test_positives": int(record.get("test_positives") or -1),
        "test_negatives": int(record.get("test_negatives") or -1),
        "ground_truth": record.get("ground_truth"),
        "backbone": str(record.get("backbone", "")),
        "stored_label": str(record.get("label") or ""),
        "schema_version": str(record.get("schema_version") or ""),
        "reused_from": str(record.get("reused_from") or ""),
        "search_rows": _number(record.get("search_rows")),
    }
    for name in NUMERIC_FIELDS:
        row[name] = _number(record.get(name))
    if row["status"] == "ok" and not math.isfinite(row["test_auc"]):
        # what single-class test data used to produce; no statistic can use it
        raise ValueError(f"status ok but test_auc is {row['test_auc']}")
    return row


def _read_all(results_dir: Path) -> tuple[list[dict[str, Any]], list[tuple[str, str]]]:
    """Like ``results.iter_records``, but keeps each corrupt file's name for the failures table."""
    rows, corrupt = [], []
    for path in sorted(results_dir.glob("*.json")):
        try:
            rows.append(_flat_row(read_record(path), path))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            what = "result record" if isinstance(exc, SchemaVersionError) else "corrupt result record"
            warnings.warn(f"skipping {what} {path}: {exc}", stacklevel=3)
            corrupt.append((path.name, f"{type(exc).__name__}: {exc}"))
    return rows, corrupt


def _default_params(selector: str) -> dict[str, Any] | None:
    """A built-in selector's constructor defaults, read from the source (no torch), or None (a plug-in)."""
    from fmpbench.catalog import builtin_defaults

    found = builtin_defaults().get(selector)
    return None if found is None else _canonical(found)


def _assign_blocks(runs: pd.DataFrame) -> pd.Series:
    name = runs["dataset"] + runs["data_source"].map(lambda s: " (stand-in)" if s.startswith(STANDIN_PREFIX) else "")
    setups = runs.groupby(name)["setup"].transform("nunique")
    tagged = name + " [" + runs["backbone"] + " " + runs["setup"].str[:6] + "]"
    return tagged.where(setups > 1, name)


def _assign_labels(runs: pd.DataFrame) -> pd.Series:
    """The label stored in a record, else one derived from the selector's defaults (older records)."""
    labels = runs["stored_label"].copy()
    for selector, group in runs[runs["stored_label"] == ""].groupby("selector", sort=True):
        reference = _default_params(selector)
        if reference is None or not any(_variant_suffix(p, reference) == "" for p in group["params"]):
            keys = group["params"].map(_key)
            pool = keys[group["status"] == "ok"] if (group["status"] == "ok").any() else keys
            counts = Counter(pool)
            reference = json.loads(min(counts, key=lambda s: (-counts[s], s)))
        for idx, params in group["params"].items():
            labels[idx] = runs.at[idx, "method"] + _variant_suffix(params, reference)
    return labels


def is_variant(label: str) -> bool:
    """A row run with non-default method parameters (an ablation), e.g. ``lightfmp[subset=0.05]``."""
    return "[" in label


def _mark_superseded(runs: pd.DataFrame) -> pd.Series:
    ok = runs[runs["status"] == "ok"].sort_values(["created_at", "run_id"], ascending=False)
    dup = ok.duplicated(["block", "label", "k", "seed"], keep="first")
    out = pd.Series(False, index=runs.index)
    out[dup[dup].index] = True
    return out


def load_results(results_dir: Path) -> LoadedResults:
    """Read every record under ``results_dir`` (never trains, never writes)."""
    results_dir = Path(results_dir)
    if not results_dir.is_dir():
        raise FileNotFoundError(f"results directory not found: {results_dir}")
    rows, corrupt = _read_all(results_dir)
    return _assemble(results_dir, rows, corrupt)


def records_frame(records: list[dict[str, Any]], results_dir: Path) -> LoadedResults:
    """The same table for records already in memory (``run``'s own grid, not the whole folder)."""
    results_dir = Path(results_dir)
    rows, unusable = [], []
    for record in records:
        path = record_path(results_dir, str(record["run_id"]))
        try:
            rows.append(_flat_row(record, path))
        except (ValueError, KeyError, TypeError) as exc:  # as a corrupt file is: listed, not fatal
            unusable.append((path.name, f"{type(exc).__name__}: {exc}"))
    return _assemble(results_dir, rows, unusable)


def _assemble(results_dir: Path, rows: list[dict[str, Any]], corrupt: list[tuple[str, str]]) -> LoadedResults:
    if not rows:
        return LoadedResults(results_dir, pd.DataFrame(columns=list(COLUMNS)), corrupt)
    runs = pd.DataFrame(rows)
    runs["block"] = _assign_blocks(runs)
    runs["label"] = _assign_labels(runs)
    runs["superseded"] = _mark_superseded(runs)
    runs = runs.sort_values(["block", "label", "k", "seed", "run_id"], kind="stable").reset_index(drop=True)
    return LoadedResults(results_dir, runs[list(COLUMNS)], corrupt)
