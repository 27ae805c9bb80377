"""On-disk cache of prepared data: ``<data_dir>/<dataset>/<fingerprint>/``.

Layout: ``{train,valid,test}_{X,y}.npy`` (int32 ids / float32 labels) and ``meta.json`` (field names,
dims, info, data source, fingerprint, and the byte size and sha256 of every array). A directory only
appears under its final name once complete (built under a temporary name, then ``os.replace``), so an
interrupted preparation never leaves a cache that could be loaded. ``<data_dir>/<dataset>/CURRENT``
names the fingerprint that ``load_prepared`` returns.

Loading verifies every array's size and sha256; a mismatch raises ``CacheCorrupt``. Hashing a
multi-GB cache on every load would be slow, so a successful verification is remembered in
``verified.json`` (size and mtime of each file); the hash is recomputed whenever either changes.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from fmpbench.data.errors import DataError
from fmpbench.data.prepared import PreparedData, Split
from fmpbench.data.splits import SPLIT_NAMES
from fmpbench.results import pid_alive

CACHE_FORMAT_VERSION = 1
META = "meta.json"
CURRENT = "CURRENT"
_STAMP = "verified.json"
ARRAY_FILES = tuple(f"{s}_{k}.npy" for s in SPLIT_NAMES for k in ("X", "y"))


class CacheCorrupt(DataError):
    """A cache directory whose files do not match their recorded sizes or checksums."""


def sha256_path(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(8 << 20):
            h.update(block)
    return h.hexdigest()


def dataset_root(data_dir: str | Path, name: str) -> Path:
    return Path(data_dir).expanduser() / name


def new_build_dir(root: Path, fingerprint: str) -> Path:
    """A private temporary directory beside the final one (same filesystem, so rename is atomic).

    Build directories left by killed runs (their process is gone) are removed first: they are never
    loaded, but can be large.
    """
    root.mkdir(parents=True, exist_ok=True)
    remove_stale_builds(root)
    # Not mkdtemp: its 0700 would survive the rename and lock colleagues out of a shared cache;
    # mkdir applies the umask like any folder the user creates.
    while True:
        build = root / f".tmp-{fingerprint}-{os.getpid()}-{secrets.token_hex(4)}"
        try:
            build.mkdir(mode=0o777)
        except FileExistsError:
            continue
        return build


def remove_stale_builds(root: Path) -> None:
    for p in root.glob(".tmp-*"):
        parts = p.name.split("-")
        if len(parts) >= 4 and parts[2].isdigit() and p.is_dir() and not pid_alive(int(parts[2])):
            shutil.rmtree(p, ignore_errors=True)


def describe_arrays(folder: Path, known_sha256: dict[str, str] | None = None) -> dict[str, dict[str, Any]]:
    """Size, sha256, shape and dtype of each array file (hashes already computed are reused)."""
    out = {}
    known = known_sha256 or {}
    for fname in ARRAY_FILES:
        p = folder / fname
        arr = np.load(p, mmap_mode="r")
        out[fname] = {
            "bytes": p.stat().st_size,
            "sha256": known.get(fname) or sha256_path(p),
            "shape": list(arr.shape),
            "dtype": str(arr.dtype),
        }
        del arr
    return out


def write_json_atomic(path: Path, obj: Any) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=1, sort_keys=False, default=_json_default)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _json_default(o: Any) -> Any:
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def finalize(build: Path, root: Path, meta: dict[str, Any], known_sha256: dict[str, str] | None = None) -> Path:
    """Record checksums, write meta, and move the build directory into place; update CURRENT."""
    meta["arrays"] = describe_arrays(build, known_sha256)
    write_json_atomic(build / META, meta)
    _write_stamp(build, meta)
    final = root / meta["fingerprint"]
    if final.exists():
        shutil.rmtree(final)
    os.replace(build, final)
    set_current(root, meta["fingerprint"])
    return final


def set_current(root: Path, fingerprint: str) -> None:
    tmp = root / f".{CURRENT}.{os.getpid()}.tmp"
    tmp.write_text(fingerprint + "\n", encoding="utf-8")
    os.replace(tmp, root / CURRENT)


def read_current(root: Path) -> str | None:
    p = root / CURRENT
    if not p.is_file():
        return None
    fp = p.read_text(encoding="utf-8").strip()
    return fp or None


def _file_state(p: Path) -> list[int]:
    st = p.stat()
    return [st.st_size, st.st_mtime_ns]


def _write_stamp(folder: Path, meta: dict[str, Any]) -> None:
    stamp = {f: _file_state(folder / f) for f in ARRAY_FILES}
    stamp["sha"] = {f: meta["arrays"][f]["sha256"] for f in ARRAY_FILES}  # type: ignore[assignment]
    try:
        write_json_atomic(folder / _STAMP, stamp)
    except OSError:
        pass  # read-only cache: verification just is not remembered


def read_meta(folder: Path) -> dict[str, Any]:
    try:
        meta = json.loads((folder / META).read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise CacheCorrupt(f"prepared cache {folder}: {META} is missing") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CacheCorrupt(f"prepared cache {folder}: {META} is not valid JSON") from exc
    if not isinstance(meta, dict) or "arrays" not in meta or "field_names" not in meta:
        raise CacheCorrupt(f"prepared cache {folder}: {META} lacks required keys")
    if meta.get("cache_format") != CACHE_FORMAT_VERSION:
        raise CacheCorrupt(
            f"prepared cache {folder}: cache format {meta.get('cache_format')} is not {CACHE_FORMAT_VERSION}"
        )
    return meta


def verify(folder: Path, meta: dict[str, Any]) -> None:
    """Raise ``CacheCorrupt`` when any array file is missing, resized or changed."""
    try:
        stamp = json.loads((folder / _STAMP).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        stamp = {}
    changed = False
    for fname in ARRAY_FILES:
        rec = meta["arrays"].get(fname)
        p = folder / fname
        if rec is None:
            raise CacheCorrupt(f"prepared cache {folder}: {META} has no record of {fname}")
        if not p.is_file():
            raise CacheCorrupt(f"prepared cache {folder}: {fname} is missing")
        size = p.stat().st_size
        if size != rec["bytes"]:
            raise CacheCorrupt(
                f"prepared cache {folder}: {fname} has {size} bytes, expected {rec['bytes']} (truncated or edited)"
            )
        known = stamp.get(fname) == _file_state(p) and stamp.get("sha", {}).get(fname) == rec["sha256"]
        if not known:
            if sha256_path(p) != rec["sha256"]:
                raise CacheCorrupt(f"prepared cache {folder}: {fname} checksum mismatch (edited or corrupted)")
            changed = True
    if changed:
        _write_stamp(folder, meta)


def load_cache(folder: Path, *, mmap: bool = False) -> PreparedData:
    """Load a verified cache directory (``CacheCorrupt`` when it does not verify)."""
    meta = read_meta(folder)
    verify(folder, meta)
    splits = {}
    for s in SPLIT_NAMES:
        try:
            X = np.load(folder / f"{s}_X.npy", mmap_mode="r" if mmap else None)
            y = np.load(folder / f"{s}_y.npy", mmap_mode="r" if mmap else None)
        except (ValueError, OSError) as exc:
            raise CacheCorrupt(f"prepared cache {folder}: cannot read {s} arrays ({exc})") from exc
        if X.dtype != np.int32 or y.dtype != np.float32 or X.ndim != 2 or X.shape[0] != y.shape[0]:
            raise CacheCorrupt(f"prepared cache {folder}: {s} arrays have unexpected dtype or shape")
        splits[s] = Split(X=X, y=y)
    return PreparedData(
        name=meta["name"],
        field_names=list(meta["field_names"]),
        field_dims=[int(d) for d in meta["field_dims"]],
        train=splits["train"],
        valid=splits["valid"],
        test=splits["test"],
        fingerprint=meta["fingerprint"],
        data_source=meta["data_source"],
        info=meta.get("info", {}),
        truth=None,
    )
