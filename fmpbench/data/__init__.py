"""fmpbench's data layer: raw readers, streaming preparation, cache, synthetic data and stand-ins.

Public API::

    DATASETS                      # the built-in datasets (fmpbench.data.registry) and "synthetic"
    prepare(name, raw, data_dir, *, min_count=None, split="random", split_seed=2024, ...)
    prepare_tabular(name, train, data_dir, *, valid=None, test=None, label=None, schema=None, ...)
    load_prepared(name, data_dir, *, mmap=False) -> PreparedData | None
    get_dataset(name, data_dir=None, *, seed=0, n_rows=None, mmap=False) -> PreparedData
    make_synthetic(...), make_standin(name, ...)
    DataError, PreparedData, Split, GroundTruth, OOV_ID

Without raw files a real dataset name resolves to a seeded *stand-in* with the same schema;
``PreparedData.data_source`` (``"real"``, ``"standin:<name>"`` or ``"synthetic"``) always says which.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

from fmpbench.data import cache as _cache
from fmpbench.data.errors import DataError
from fmpbench.data.prepared import OOV_ID, GroundTruth, PreparedData, Split
from fmpbench.data.preprocess import DEFAULT_CHUNK_ROWS
from fmpbench.data.preprocess import run as _run
from fmpbench.data.rawio import ByteCount, counting, sha256_file
from fmpbench.data.readers import Batch, RawReader
from fmpbench.data.registry import DATASETS, DEFAULT_MIN_COUNT, REAL_DATASETS, SPECS, STANDIN_NAMES, make_reader
from fmpbench.data.splits import SPLIT_SCHEMES
from fmpbench.data.synthetic import make_standin, make_synthetic
from fmpbench.data.tabular import (
    KIND,
    SchemaError,
    TabularReader,
    TabularSchema,
    check_dataset_name,
    load_schema,
    schema_from_dict,
)
from fmpbench.data.tabular import (
    MIN_COUNT as TABULAR_MIN_COUNT,
)

__all__ = [
    "DATASETS",
    "DEFAULT_MIN_COUNT",
    "OOV_ID",
    "REAL_DATASETS",
    "DataError",
    "GroundTruth",
    "PreparedData",
    "Split",
    "get_dataset",
    "load_prepared",
    "make_standin",
    "make_synthetic",
    "custom_datasets",
    "prepare",
    "prepare_tabular",
]

log = logging.getLogger("fmpbench.data")
#: one INFO record per chunk a preparation reads (see ``_Reported``); silent unless a handler listens
PREPARE_LOG = "fmpbench.data.prepare"
prepare_log = logging.getLogger(PREPARE_LOG)

PREP_FORMAT_VERSION = 1
_RAW_SUMS = "raw_checksums.json"


def _check_name(name: str, data_dir: str | Path | None = None) -> None:
    if name not in DATASETS and name not in custom_datasets(data_dir):
        raise ValueError(f"unknown dataset {name!r}; choose from: {', '.join(DATASETS)} (or a table of your own: "
                         "`fmpbench prepare tabular --name NAME ...`)")


def _identity(st: os.stat_result) -> dict[str, int]:
    """What changes whenever a file's bytes do: ``ctime_ns`` moves on every write and, unlike the
    modification time, cannot be set back (``os.utime``/``touch -d``), and a replaced file has a new inode."""
    return {"bytes": st.st_size, "mtime_ns": st.st_mtime_ns, "ctime_ns": st.st_ctime_ns, "inode": st.st_ino}


def _raw_checksums(root: Path, files: dict[str, Path]) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, int]]]:
    """sha256 of each raw file, and each file's identity (``_identity``) taken before it was read.

    A checksum is remembered under the file's identity, so a re-run skips re-hashing only while size,
    mtime, ctime and inode are all unchanged: an edit that keeps size and mtime still moves ctime.
    """
    memo_path = root / _RAW_SUMS
    try:
        memo = json.loads(memo_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        memo = {}
    out: dict[str, dict[str, Any]] = {}
    identities: dict[str, dict[str, int]] = {}
    changed = False
    for role, p in files.items():
        ap = str(p.resolve())
        identities[role] = identity = _identity(p.stat())
        rec = memo.get(ap)
        if not (isinstance(rec, dict) and all(rec.get(k) == v for k, v in identity.items()) and "sha256" in rec):
            rec = {**identity, "sha256": sha256_file(p)}
            memo[ap] = rec
            changed = True
        out[role] = {"path": ap, "name": p.name, "bytes": rec["bytes"], "sha256": rec["sha256"]}
    if changed:
        try:
            root.mkdir(parents=True, exist_ok=True)
            _cache.write_json_atomic(memo_path, memo)
        except OSError:
            pass
    return out, identities


def _check_unchanged(files: dict[str, Path], before: dict[str, dict[str, int]]) -> None:
    """Refuse a raw file that changed between its first read (the checksum) and its last (the parse).

    Otherwise rows appended during preparation would land in a cache keyed by the old bytes' checksum.
    """
    for role, p in files.items():
        now = _identity(p.stat())
        if now != before[role]:
            diffs = ", ".join(f"{k} {before[role][k]} -> {now[k]}" for k in now if now[k] != before[role][k])
            raise DataError(f"{p}: the raw file changed while it was being prepared ({diffs}); prepare again once "
                            "nothing writes to it")


def fingerprint_of(name: str, raw_sums: dict[str, dict[str, Any]], params: dict[str, Any]) -> str:
    """Hash of the raw checksums, every output-changing parameter and the format versions."""
    key = {
        "dataset": name,
        "prep_format": PREP_FORMAT_VERSION,
        "cache_format": _cache.CACHE_FORMAT_VERSION,
        "raw": {role: r["sha256"] for role, r in sorted(raw_sums.items())},
        "params": params,
    }
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]


def prepare(
    name: str,
    raw: str | Path | list[str | Path],
    data_dir: str | Path,
    *,
    min_count: int | None = None,
    split: str = "random",
    split_seed: int = 2024,
    skip_bad_rows: bool = False,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    style_min_share: float = 0.05,
    drop_duplicates: bool = True,
    force: bool = False,
    mmap: bool = True,
    progress: bool = False,
) -> PreparedData:
    """Prepare raw files into ``<data_dir>/<name>/<fingerprint>/`` and return the loaded result.

    ``raw``: the raw file as distributed (gzip or plain), or its folder; for MovieLens the folder or
    ratings file (users.dat/movies.dat beside it); for Amazon the reviews file, optionally with the
    meta file (a list or a folder). ``min_count`` defaults per dataset (``DEFAULT_MIN_COUNT``).
    ``style_min_share`` and ``drop_duplicates`` (one copy of a review repeated under several product
    variants) only apply to Amazon. An existing, verified cache with the same fingerprint
    is reused unless ``force``. ``chunk_rows`` only changes speed and memory, never the output.
    The result is memory-mapped by default (``mmap=True``): a full-size dataset need not fit in RAM.
    Your own table: :func:`prepare_tabular`.
    """
    _check_name(name)
    if name == "synthetic":
        raise ValueError("'synthetic' is generated, not prepared from raw files; use get_dataset('synthetic')")
    if name not in REAL_DATASETS:
        raise ValueError(f"'{name}' is prepared from a table of your own: use prepare_tabular")
    _check_options(split, chunk_rows, min_count)
    reader = make_reader(
        name, raw, skip_bad_rows=skip_bad_rows, style_min_share=style_min_share, drop_duplicates=drop_duplicates
    )
    return _prepare_reader(
        name, reader, data_dir, min_count=DEFAULT_MIN_COUNT[name] if min_count is None else min_count, split=split,
        split_seed=split_seed, chunk_rows=chunk_rows, force=force, mmap=mmap, progress=progress,
    )


def prepare_tabular(
    name: str,
    train: str | Path,
    data_dir: str | Path,
    *,
    valid: str | Path | None = None,
    test: str | Path | None = None,
    label: str | None = None,
    schema: str | Path | TabularSchema | dict[str, Any] | None = None,
    min_count: int | None = None,
    split: str = "random",
    split_seed: int = 2024,
    skip_bad_rows: bool = False,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    force: bool = False,
    mmap: bool = True,
    progress: bool = False,
) -> PreparedData:
    """Prepare a table of your own (CSV, gzip CSV or parquet) as dataset ``name``: see ``fmpbench.data.tabular``.

    With ``valid`` and ``test`` the files are the split (``split``/``split_seed`` do not apply);
    otherwise ``train``'s rows are split as every dataset's are. ``schema``: a TOML file, a parsed
    :class:`TabularSchema` or its dict; without one every column but the label is categorical.
    ``min_count`` defaults to 2, as for every dataset but Criteo.
    """
    check_dataset_name(name, DATASETS)
    _check_options(split, chunk_rows, min_count)
    if isinstance(schema, str | Path):
        schema = load_schema(schema)
    elif isinstance(schema, dict):
        schema = schema_from_dict(schema)
    files = {"train": Path(train)}
    if valid is not None or test is not None:
        if valid is None or test is None:
            raise SchemaError("tabular: give --valid and --test together (or neither, to split --train's rows)")
        files.update(valid=Path(valid), test=Path(test))
    reader = TabularReader(files, label, schema, split=split, split_seed=split_seed, skip_bad_rows=skip_bad_rows)
    return _prepare_reader(
        name, reader, data_dir, min_count=TABULAR_MIN_COUNT if min_count is None else min_count,
        split=reader.split, split_seed=split_seed, chunk_rows=chunk_rows, force=force, mmap=mmap, progress=progress,
    )


def _check_options(split: str, chunk_rows: int, min_count: int | None) -> None:
    if split not in SPLIT_SCHEMES:
        raise ValueError(f"unknown split {split!r}; choose from: {', '.join(SPLIT_SCHEMES)}")
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be >= 1, got {chunk_rows}")
    if min_count is not None and int(min_count) < 1:
        raise ValueError(f"min_count must be >= 1, got {min_count}")


class _Reported:
    """``reader``, with one INFO record on :data:`PREPARE_LOG` per chunk read (rows, and raw bytes read of
    all its files: what ``prepare`` shows as a bar in a terminal, or as lines in a log), and one at the end."""

    def __init__(self, reader: RawReader, name: str, count: ByteCount) -> None:
        self._reader = reader
        self._name = name
        self._count = count
        self._total = sum(p.stat().st_size for p in reader.files().values())

    def __getattr__(self, attr: str) -> Any:
        return getattr(self._reader, attr)

    def batches(self, chunk_rows: int) -> Iterator[Batch]:
        rows = 0
        self._report(rows, done=False)  # a bar can start now, not after the first chunk
        for batch in self._reader.batches(chunk_rows):
            rows += len(batch)
            self._report(rows, done=False)
            yield batch
        self._report(rows, done=True)

    def _report(self, rows: int, done: bool) -> None:
        read = self._total if done else min(self._count.bytes, self._total)
        share = f" ({read / self._total:.0%})" if self._total else ""
        prepare_log.info(
            "prepare %s: %s rows read, %.1f of %.1f MB%s%s", self._name, f"{rows:,}", read / 1e6, self._total / 1e6,
            share, "; encoding them" if done else "",
            extra={"dataset": self._name, "rows": rows, "bytes_read": read, "bytes_total": self._total, "done": done},
        )


def _prepare_reader(
    name: str,
    reader: RawReader,
    data_dir: str | Path,
    *,
    min_count: int,
    split: str,
    split_seed: int,
    chunk_rows: int,
    force: bool,
    mmap: bool,
    progress: bool,
) -> PreparedData:
    """The streaming preparation of ``reader``'s rows into the cache (shared by every dataset)."""
    mc = int(min_count)
    root = _cache.dataset_root(data_dir, name)
    raw_sums, identities = _raw_checksums(root, reader.files())
    params: dict[str, Any] = {
        "min_count": mc,
        "split": split,
        "split_seed": int(split_seed),
        "skip_bad_rows": bool(reader.skip_bad_rows),
        **reader.params(),
    }
    if split == "sequential":
        # boundaries from the rows produced, not from raw newlines: caches made before are not reused
        params["sequential_bounds"] = "rows"
    fp = fingerprint_of(name, raw_sums, params)
    final = root / fp
    if final.is_dir() and not force:
        try:
            data = _cache.load_cache(final, mmap=mmap)
            _cache.set_current(root, fp)
            return data
        except DataError as exc:
            warnings.warn(f"{exc}; rebuilding it", stacklevel=3)
    build = _cache.new_build_dir(root, fp)
    count = ByteCount()
    try:
        with counting(count):
            out = _run(
                cast(RawReader, _Reported(reader, name, count)),
                build,
                min_count=mc,
                split=split,
                split_seed=int(split_seed),
                chunk_rows=chunk_rows,
                progress=progress,
            )
        _check_unchanged(reader.files(), identities)
        info = out["info"]
        info.update(dataset=name, raw=raw_sums, params=params, **reader.describe())
        recipe: dict[str, Any] = {"raw": [str(p.resolve()) for p in reader.raw_arg()], "params": params}
        if isinstance(reader, TabularReader):
            recipe["files"] = {role: str(p.resolve()) for role, p in reader.files().items()}
        meta = {
            "cache_format": _cache.CACHE_FORMAT_VERSION,
            "name": name,
            "fingerprint": fp,
            "data_source": "real",
            "field_names": out["field_names"],
            "field_dims": out["field_dims"],
            "info": info,
            "vocab_preview": out["vocab_preview"],
            "prepare": recipe,
        }
        _cache.finalize(build, root, meta, out["array_sha256"])
    except OSError as exc:
        shutil.rmtree(build, ignore_errors=True)
        if exc.filename is None:  # a write to a full disk names no file: name the folder being built
            raise OSError(exc.errno, exc.strerror or str(exc), str(build)) from exc
        raise
    except BaseException:
        shutil.rmtree(build, ignore_errors=True)
        raise
    return _cache.load_cache(final, mmap=mmap)


def reprepare(meta: dict[str, Any], data_dir: str | Path, **overrides: Any) -> PreparedData | None:
    """Prepare again what a cache's ``meta.json`` was prepared from (with ``overrides``, e.g. another
    ``split_seed``), or ``None`` when its raw files are no longer where they were."""
    prep = meta.get("prepare") or {}
    raw = prep.get("raw")
    params = dict(prep.get("params") or {})
    if not raw or not all(os.path.isfile(p) for p in raw):
        return None
    kw: dict[str, Any] = {
        "min_count": params.get("min_count"),
        "split": params.get("split", "random"),
        "split_seed": params.get("split_seed", 2024),
        "skip_bad_rows": params.get("skip_bad_rows", False),
    }
    if params.get("kind") == KIND:
        files = prep["files"]
        schema = schema_from_dict({k: v for k, v in params["schema"].items() if v is not None})
        if kw["split"] == "given":
            kw["split"] = "random"  # the files are the split; this only passes the check
        kw.update(overrides)
        return prepare_tabular(meta["name"], files["train"], data_dir, valid=files.get("valid"),
                               test=files.get("test"), label=params["label"], schema=schema, **kw)
    kw.update({option: params[option] for option in SPECS[meta["name"]].options if option in params})
    kw.update(overrides)
    return prepare(meta["name"], [Path(p) for p in raw] if len(raw) > 1 else Path(raw[0]), data_dir, **kw)


def custom_datasets(data_dir: str | Path | None) -> list[str]:
    """Datasets prepared from tables of your own (``prepare_tabular``) under ``data_dir``, sorted."""
    if data_dir is None or not Path(data_dir).expanduser().is_dir():
        return []
    out = []
    for root in sorted(Path(data_dir).expanduser().iterdir()):
        fp = _cache.read_current(root) if root.is_dir() and root.name not in DATASETS else None
        if fp is None:
            continue
        try:
            meta = json.loads((root / fp / _cache.META).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(meta, dict) and (meta.get("info") or {}).get("kind") == KIND:
            out.append(root.name)
    return out


def load_prepared(name: str, data_dir: str | Path, *, mmap: bool = False) -> PreparedData | None:
    """The data last prepared for ``name`` under ``data_dir`` (per ``CURRENT``), or ``None``.

    A cache that fails verification (truncated or edited file) is reported with a warning and rebuilt
    from its raw files when they are still where they were; otherwise a ``DataError`` says to
    prepare again. A corrupt cache is never returned.
    """
    _check_name(name, data_dir)
    root = _cache.dataset_root(data_dir, name)
    fp = _cache.read_current(root)
    if fp is None:
        return None
    folder = root / fp
    if not folder.is_dir():
        warnings.warn(f"{root / _cache.CURRENT} names {fp}, which does not exist; ignoring it", stacklevel=2)
        return None
    try:
        return _cache.load_cache(folder, mmap=mmap)
    except DataError as exc:
        try:
            meta = json.loads((folder / _cache.META).read_text(encoding="utf-8"))
            raw = (meta.get("prepare") or {}).get("raw") if isinstance(meta, dict) else None
        except (OSError, ValueError):
            meta, raw = None, None
        if not raw or not all(os.path.isfile(p) for p in raw):
            raise DataError(
                f"{exc}; its raw files are not available to rebuild it: run `fmpbench prepare {name} --raw ...` again"
            ) from exc
        warnings.warn(f"{exc}; rebuilding it from {raw[0]}", stacklevel=2)
        shutil.rmtree(folder, ignore_errors=True)
        return reprepare(meta, data_dir, force=True, mmap=mmap)


def get_dataset(
    name: str,
    data_dir: str | Path | None = None,
    *,
    seed: int = 0,
    n_rows: int | None = None,
    mmap: bool = False,
) -> PreparedData:
    """Real prepared data when ``data_dir`` holds it, else the seeded stand-in (``synthetic``: generator).

    Check ``data_source`` on the result: ``real``, ``standin:<name>`` or ``synthetic``.
    """
    _check_name(name, data_dir)
    if name == "synthetic":
        return make_synthetic(n_rows=n_rows or 50_000, seed=seed)
    if data_dir is not None:
        data = load_prepared(name, data_dir, mmap=mmap)
        if data is not None:
            return data
        log.warning(
            "no prepared %s data under %s: using the synthetic stand-in (data_source=standin:%s)", name, data_dir, name
        )
    if name not in STANDIN_NAMES:
        raise DataError(f"dataset {name}: nothing prepared under {data_dir}; prepare it again")
    return make_standin(name, n_rows=n_rows or 50_000, seed=seed)
