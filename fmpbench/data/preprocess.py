"""Two-pass streaming preparation: raw file -> train-only vocabularies -> int32 arrays on disk.

Memory follows the vocabulary, not the row count; the raw text is parsed once.

1. Pass 1 parses every chunk, assigns each row its split (``splits.py``: a function of the row's
   position only; the sequential split needs the number of rows produced, so it is assigned from
   the spill once pass 1 has counted them), and *factorises* every field: ``tokens = uniques[codes]``. Train counts per
   unique value (``bincount`` of the train rows' codes) are merged into running per-field value
   counts (sorted arrays for integer tokens, as all of Criteo's and Avazu's are; pyarrow's hash
   aggregation for strings). Codes (as uint8/uint16/int32), uniques and labels are
   spilled to a scratch folder inside the build directory, which costs about as much disk as the
   prepared arrays themselves and is deleted at the end.
2. Vocabularies: values with train count >= ``min_count`` get ids 1..n in decreasing-count order
   (ties by value); everything else (rare, or never seen in train) is ``OOV_ID`` = 0, in every split.
3. Pass 2 reads the spill chunk by chunk, looks up each chunk's *unique* values only, gathers ids for
   the rows in split order (each split's rows one contiguous block), and appends them to each
   split's ``.npy`` file (plain writes, hashed on the fly).

Fields are processed in a thread pool (one task per field and chunk: the pyarrow and numpy kernels
release the GIL), and each chunk's work runs one step behind the main thread (``_OneAhead``): pass 1
factorises and counts a chunk while the reader parses the next, pass 2 writes and hashes a chunk
while the next is encoded. ``benchmarks/prepare_throughput.py`` times it against a polars script
doing the same work.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from fmpbench.data.readers import Batch, Column, RawReader, chunks_of, int_token_repr, key_repr, to_numpy
from fmpbench.data.splits import SPLIT_NAMES, TRAIN, random_split, sequential_bounds, split_at

#: Chunks of 50 K rows took the same CPU time as 250 K on 1 M Criteo rows and 210 MB less peak memory
#: (fewer fresh pages per chunk, and two chunks are alive at a time, one of them behind the parsing).
DEFAULT_CHUNK_ROWS = 50_000
#: one field of one chunk: ``tokens == uniques[codes]``
Factorised = tuple[np.ndarray, pa.Array]


class _ValueCounts:
    """Running value counts of one field, merged in C++ with amortised doubling (string values)."""

    def __init__(self) -> None:
        self._values: list[pa.Array] = []
        self._counts: list[pa.Array] = []
        self._pending = 0
        self._merged = 0

    @staticmethod
    def for_column(col: Column) -> _ValueCounts:
        """The counter suited to a field's tokens: integer tokens (all of Criteo's and Avazu's) get
        sorted arrays, whose merges need a fraction of the memory of a hash aggregation."""
        if isinstance(col, np.ndarray) or pa.types.is_integer(col.type):
            return _IntValueCounts()
        return _ValueCounts()

    def add(self, values: pa.Array, counts: np.ndarray) -> None:
        """Add ``counts[i]`` occurrences of ``values[i]``."""
        if len(values) == 0:
            return
        self._values.append(values)
        self._counts.append(pa.array(counts.astype(np.int64, copy=False)))
        self._pending += len(values)
        if self._pending > max(1 << 20, 2 * self._merged):
            self._merge()

    def _merge(self) -> None:
        if len(self._values) > 1:
            t = pa.table({"v": pa.concat_arrays(self._values), "c": pa.concat_arrays(self._counts)})
            g = t.group_by("v").aggregate([("c", "sum")])
            self._values = [g.column("v").combine_chunks()]
            self._counts = [g.column("c_sum").combine_chunks()]
        self._merged = len(self._values[0]) if self._values else 0
        self._pending = 0

    def table(self) -> pa.Table:
        self._merge()
        if not self._values:
            return pa.table({"v": pa.array([], pa.string()), "c": pa.array([], pa.int64())})
        return pa.table({"v": self._values[0], "c": self._counts[0]})

    def count_of(self, value: Any) -> int:
        t = self.table()
        hit = t.filter(pc.equal(t.column("v"), value))
        return int(pc.sum(hit.column("c")).as_py() or 0)


class _IntValueCounts(_ValueCounts):
    """Running counts of integer values: sorted unique keys with their counts, plus chunks not yet
    merged. A merge sorts and sums the pending chunks, adds the counts of keys already present, and
    inserts the new keys in one pass: about twice the counts' size at its peak, where pyarrow's
    ``group_by`` over the same rows takes about five times theirs. Merging once the pending rows
    reach a quarter of the keys (or 256 K) bounds the pending memory and keeps the merge cost linear
    in the final size over the whole stream."""

    def __init__(self) -> None:
        super().__init__()
        self._keys: np.ndarray | None = None
        self._sums = np.zeros(0, dtype=np.int64)
        self._pending_values: list[np.ndarray] = []
        self._pending_counts: list[np.ndarray] = []

    def add(self, values: pa.Array, counts: np.ndarray) -> None:
        if len(values) == 0:
            return
        self._pending_values.append(to_numpy(values))
        self._pending_counts.append(counts.astype(np.int64, copy=False))
        self._pending += len(values)
        if self._pending > max(1 << 18, self._merged // 4):
            self._merge()

    def _merge(self) -> None:
        if not self._pending_values:
            return
        values = np.concatenate(self._pending_values)
        counts = np.concatenate(self._pending_counts)
        self._pending_values, self._pending_counts = [], []
        order = np.argsort(values)
        values, counts = values[order], counts[order]
        del order
        starts = np.flatnonzero(np.concatenate(([True], values[1:] != values[:-1])))
        values, counts = values[starts], np.add.reduceat(counts, starts)
        if self._keys is None:
            self._keys, self._sums = values, counts
        else:
            pos = np.searchsorted(self._keys, values)
            hit = self._keys[np.minimum(pos, len(self._keys) - 1)] == values
            self._sums[pos[hit]] += counts[hit]
            new = ~hit
            self._keys = np.insert(self._keys, pos[new], values[new])
            self._sums = np.insert(self._sums, pos[new], counts[new])
        self._merged = len(self._keys)
        self._pending = 0

    def table(self) -> pa.Table:
        self._merge()
        if self._keys is None:
            return super().table()
        return pa.table({"v": self._keys, "c": self._sums})


@dataclass
class Vocab:
    """Train-only vocabulary of one field: ``values[i]`` has id ``i + 1``."""

    values: pa.Array
    n_distinct: int

    @property
    def dim(self) -> int:
        return len(self.values) + 1


def fit_vocab(counts: pa.Table, min_count: int) -> Vocab:
    kept = counts.filter(pc.greater_equal(counts.column("c"), max(min_count, 1)))
    kept = kept.sort_by([("c", "descending"), ("v", "ascending")])
    return Vocab(values=kept.column("v").combine_chunks(), n_distinct=counts.num_rows)


class Encoder:
    """Maps tokens to ids by hash lookup.

    pyarrow's ``index_in`` rebuilds its hash table from the vocabulary on every call, once per chunk:
    for strings the fastest option up to ~1M values, for integers up to ~10K. Beyond that a pandas
    index (its hash table built once) is probed with each chunk's distinct values only: for 500K
    integer values and 30K distinct tokens, 1 ms a chunk instead of 144 ms (the build: 116 ms, once).
    """

    HASH_ONCE_ABOVE = 1_000_000
    INT_HASH_ONCE_ABOVE = 10_000

    def __init__(self, vocab: Vocab) -> None:
        v = vocab.values
        self.values = v
        self.is_int = pa.types.is_integer(v.type)
        self.index: pd.Index | None = None
        if self.is_int and len(v) > self.INT_HASH_ONCE_ABOVE:
            self.index = pd.Index(to_numpy(v))
        elif not self.is_int and len(v) > self.HASH_ONCE_ABOVE:
            self.index = pd.Index(v.to_numpy(zero_copy_only=False), dtype=object)

    def encode(self, col: Column) -> np.ndarray:
        if len(self.values) == 0:
            return np.zeros(len(col), dtype=np.int32)
        if isinstance(col, np.ndarray) and not self.is_int:
            raise TypeError("integer tokens for a string vocabulary")
        if self.index is not None and self.is_int:
            tokens = col if isinstance(col, np.ndarray) else to_numpy(col)
            return (self.index.get_indexer(tokens) + 1).astype(np.int32)
        if isinstance(col, np.ndarray):
            col = pa.array(col)
        if self.index is None:
            idx = pc.fill_null(pc.add(pc.index_in(col, value_set=self.values), 1), 0)
            return to_numpy(idx).astype(np.int32, copy=False)
        parts = []
        for chunk in chunks_of(col):
            enc = pc.dictionary_encode(chunk)
            uniq = enc.dictionary.to_numpy(zero_copy_only=False)
            table = (self.index.get_indexer(uniq) + 1).astype(np.int32)
            parts.append(table[enc.indices.to_numpy(zero_copy_only=False)])
        return parts[0] if len(parts) == 1 else np.concatenate(parts)


def _split_codes(start: int, n: int, split: str, split_seed: int, bounds: tuple[int, int] | None) -> np.ndarray:
    if split == "random":
        return random_split(start, n, split_seed)
    assert bounds is not None
    return split_at(start, n, *bounds)


def usable_cpus() -> int:
    """CPUs this process may run on (respects taskset/cgroup affinity, unlike ``os.cpu_count``)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def factorize(col: Column) -> tuple[np.ndarray, pa.Array]:
    """``(codes, uniques)`` with ``col == uniques[codes]``; codes in the smallest unsigned dtype."""
    if isinstance(col, np.ndarray):
        arr: pa.Array | pa.ChunkedArray = pa.array(col)
    else:
        arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    enc = pc.dictionary_encode(arr)
    uniques = enc.dictionary
    codes = enc.indices.to_numpy(zero_copy_only=False)
    k = len(uniques)
    dtype = np.uint8 if k <= 1 << 8 else np.uint16 if k <= 1 << 16 else np.int32
    return codes.astype(dtype, copy=False), uniques


def _ipc_bytes(a: pa.Array) -> pa.Buffer:
    batch = pa.record_batch([a], names=["v"])
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, batch.schema) as w:
        w.write_batch(batch)
    return sink.getvalue()


def _ipc_array(buf: pa.Buffer) -> pa.Array:
    return pa.ipc.open_stream(buf).read_all().column(0).combine_chunks()


@dataclass
class _SpilledChunk:
    """Where one chunk's labels, and each field's codes and uniques, lie in its spill file."""

    path: Path
    rows: int
    start: int
    labels: tuple[int, int]
    fields: dict[str, tuple[int, int, str, int, int]]  # name -> codes (off, n, dtype), uniques (off, len)


class _Spill:
    """Scratch storage of factorised chunks between the two passes (one file per chunk)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.chunks: list[_SpilledChunk] = []

    def write(self, start: int, labels: np.ndarray, fields: dict[str, tuple[np.ndarray, pa.Array]]) -> None:
        path = self.folder / f"{len(self.chunks):06d}.bin"
        off = 0
        index: dict[str, tuple[int, int, str, int, int]] = {}
        with open(path, "wb") as f:
            lab = labels.astype(np.uint8)
            f.write(memoryview(lab).cast("B"))
            lab_pos = (0, lab.size)
            off = lab.size
            for name, (codes, uniques) in fields.items():
                f.write(memoryview(np.ascontiguousarray(codes)).cast("B"))
                c_off = off
                off += codes.nbytes
                blob = _ipc_bytes(uniques)
                f.write(blob)
                index[name] = (c_off, codes.size, codes.dtype.str, off, blob.size)
                off += blob.size
        self.chunks.append(_SpilledChunk(path, int(labels.size), start, lab_pos, index))

    def read(self, chunk: _SpilledChunk) -> tuple[np.ndarray, dict[str, tuple[np.ndarray, pa.Array]]]:
        raw = pa.memory_map(str(chunk.path)).read_buffer()
        mem = np.frombuffer(raw, dtype=np.uint8)
        lo, n = chunk.labels
        labels = mem[lo : lo + n].astype(np.float32)
        out = {}
        for name, (c_off, c_n, c_dtype, u_off, u_len) in chunk.fields.items():
            dt = np.dtype(c_dtype)
            codes = mem[c_off : c_off + c_n * dt.itemsize].view(dt)
            out[name] = (codes, _ipc_array(raw.slice(u_off, u_len)))
        return labels, out

    def drop(self, chunk: _SpilledChunk) -> None:
        chunk.path.unlink(missing_ok=True)


def run(
    reader: RawReader,
    build: Path,
    *,
    min_count: int,
    split: str,
    split_seed: int,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    progress: bool = False,
) -> dict[str, Any]:
    """Prepare ``reader``'s raw data into ``build`` (``.npy`` arrays); returns the meta fields."""
    with ThreadPoolExecutor(max_workers=max(1, min(usable_cpus(), 8))) as pool, _OneAhead() as behind:
        return _run(
            reader,
            build,
            min_count=min_count,
            split=split,
            split_seed=split_seed,
            chunk_rows=chunk_rows,
            progress=progress,
            pool=pool,
            behind=behind,
        )


def _train_counts(codes: np.ndarray, uniques: pa.Array, train: np.ndarray) -> tuple[pa.Array, np.ndarray]:
    """Train counts of one field in one chunk: ``(values seen in train rows, their counts)``."""
    counts = np.bincount(codes[train], minlength=len(uniques)) if len(uniques) else np.zeros(0, np.int64)
    seen = np.flatnonzero(counts)
    if seen.size == len(uniques):
        return uniques, counts
    return uniques.take(pa.array(seen)), counts[seen]


#: one field of one chunk, factorised, with its train counts when the rows' splits are known
Counted = tuple[np.ndarray, pa.Array, tuple[pa.Array, np.ndarray] | None]


def _factorise_and_count(job: tuple[Column, np.ndarray | None]) -> Counted:
    """One task per field and chunk: a pool round trip costs more than the bincount it would save."""
    col, train = job
    codes, uniques = factorize(col)
    return codes, uniques, (None if train is None else _train_counts(codes, uniques, train))


class _TrainTally:
    """Split sizes, label sums and per-field train value counts, fed chunk by chunk in stream order."""

    def __init__(self) -> None:
        self.counters: dict[str, _ValueCounts] = {}
        self.names_seen: dict[str, None] = {}
        self.sizes = np.zeros(3, dtype=np.int64)
        self.positives = np.zeros(3, dtype=np.float64)

    def add(self, start: int, labels: np.ndarray, cols: dict[str, Counted], codes: np.ndarray) -> None:
        """Count one chunk whose fields carry their train counts (``_factorise_and_count``)."""
        self.sizes += np.bincount(codes, minlength=3)
        self.positives += np.bincount(codes, weights=labels, minlength=3)
        n_train_here = int(np.count_nonzero(codes == TRAIN))
        for name, (_, uniques, counted) in cols.items():
            if name not in self.counters:
                self.counters[name] = _ValueCounts.for_column(uniques)
                if start:
                    # Field first seen mid-stream (e.g. a rare Amazon style key): earlier train
                    # rows had it missing.
                    missing = self.sizes[TRAIN] - n_train_here
                    self.counters[name].add(pa.array([""], pa.string()), np.array([missing]))
                self.names_seen[name] = None
            assert counted is not None
            self.counters[name].add(*counted)
        for name in self.names_seen:
            if name not in cols and n_train_here:
                self.counters[name].add(pa.array([""], pa.string()), np.array([n_train_here]))


class _OneAhead:
    """Runs jobs in order on one background thread, at most one at a time, so that the caller
    prepares the next job (parses the next chunk, encodes the next one) while this one runs;
    ``submit`` waits for, and re-raises from, the job before."""

    def __init__(self) -> None:
        self._thread = ThreadPoolExecutor(max_workers=1)
        self._pending: Future | None = None

    def submit(self, fn: Callable[..., Any], *args: Any) -> None:
        self.wait()
        self._pending = self._thread.submit(fn, *args)

    def wait(self) -> None:
        """Wait for the job in flight and re-raise its exception."""
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()

    def close(self) -> None:
        """Wait for the job in flight without raising (the caller is already failing or done)."""
        self._thread.shutdown(wait=True)

    def __enter__(self) -> _OneAhead:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _run(
    reader: RawReader,
    build: Path,
    *,
    min_count: int,
    split: str,
    split_seed: int,
    chunk_rows: int,
    progress: bool,
    pool: ThreadPoolExecutor,
    behind: _OneAhead,
) -> dict[str, Any]:
    t0 = time.perf_counter()
    spill = _Spill(build / ".spill")
    tally = _TrainTally()

    # ---- pass 1: parse, factorise, spill; split and count train values (random split). A chunk is
    # factorised and counted behind the parsing of the next one, which overlaps the reader's
    # single-threaded conversions with the per-field kernels.
    def factorise_chunk(start: int, batch: Batch) -> None:
        m = len(batch)
        codes = _split_codes(start, m, split, split_seed, None) if split == "random" else None
        train = None if codes is None else codes == TRAIN
        names = list(batch.columns)
        jobs = [(batch.columns[k], train) for k in names]
        cols = dict(zip(names, pool.map(_factorise_and_count, jobs), strict=True))
        spill.write(start, batch.labels, {k: (c, u) for k, (c, u, _) in cols.items()})
        if codes is not None:
            tally.add(start, batch.labels, cols, codes)

    n = 0
    for batch in _batches(reader, chunk_rows):
        behind.submit(factorise_chunk, n, batch)
        n += len(batch)
        del batch
        if progress:
            print(f"\r  pass 1: {n:,} rows", end="", flush=True)
    behind.wait()
    t_pass1 = time.perf_counter() - t0
    # The sequential split's boundaries come from the rows actually produced (after skipped rows,
    # dropped duplicates, blank lines, any line ending), known only now; its counts come from the spill.
    # So do a given split's (``split="given"``: the rows of the reader's train, valid and test files).
    bounds = None if split == "random" else reader.given_bounds() if split == "given" else sequential_bounds(n)
    if bounds is not None:
        for chunk in spill.chunks:
            labels, spilled = spill.read(chunk)
            codes = split_at(chunk.start, chunk.rows, *bounds)
            train = codes == TRAIN
            counted = {k: (c, u, _train_counts(c, u, train)) for k, (c, u) in spilled.items()}
            tally.add(chunk.start, labels, counted, codes)
    t_count = time.perf_counter() - t0 - t_pass1
    counters, names_seen, sizes, positives = tally.counters, tally.names_seen, tally.sizes, tally.positives

    n_train = int(sizes[TRAIN])
    nonmissing = {}
    for name, c in counters.items():
        t = c.table()
        missing = c.count_of("") if pa.types.is_string(t.column("v").type) else 0
        nonmissing[name] = n_train - missing
    fields = reader.select_fields(list(names_seen), nonmissing, n_train)
    vocabs = {f: fit_vocab(counters[f].table(), min_count) for f in fields}
    counters.clear()
    encoders = {f: Encoder(vocabs[f]) for f in fields}
    n_fields = len(fields)
    # A field absent from a whole chunk (an Amazon style key) is the missing token "" there.
    missing_id = {
        f: (int(encoders[f].encode(pa.array([""], pa.string()))[0]) if not encoders[f].is_int else 0) for f in fields
    }

    # ---- pass 2: ids for each chunk's uniques, gathered per row in split order (so each split's
    # rows are one contiguous block, written without a copy), appended per split; a chunk is
    # written and hashed behind the encoding of the next one.
    outs = [
        (
            NpyWriter(build / f"{sname}_X.npy", np.int32, (int(sizes[s]), n_fields)),
            NpyWriter(build / f"{sname}_y.npy", np.float32, (int(sizes[s]),)),
        )
        for s, sname in enumerate(SPLIT_NAMES)
    ]
    oov = np.zeros((3, n_fields), dtype=np.int64)

    def write_chunk(X: np.ndarray, labels: np.ndarray, ends: np.ndarray) -> None:
        for s in range(3):
            lo, hi = int(ends[s]), int(ends[s + 1])
            if hi > lo:
                outs[s][0].write(X[lo:hi])
                outs[s][1].write(labels[lo:hi])

    done = 0
    try:
        for chunk in spill.chunks:
            labels, cols = spill.read(chunk)
            m = chunk.rows
            codes = _split_codes(chunk.start, m, split, split_seed, bounds)
            order = np.argsort(codes, kind="stable")  # train rows, then valid, then test; each in stream order
            ends = np.concatenate(([0], np.cumsum(np.bincount(codes, minlength=3))))
            X = np.empty((m, n_fields), dtype=np.int32)

            def encode(
                j: int, f: str, cols: dict = cols, X: np.ndarray = X, order: np.ndarray = order, ends: np.ndarray = ends
            ) -> None:
                if f not in cols:
                    ids = np.full(len(order), missing_id[f], dtype=np.int32)
                else:
                    fcodes, uniques = cols[f]
                    ids = encoders[f].encode(uniques)[fcodes[order]]
                X[:, j] = ids
                zero = ids == 0
                for s in range(3):
                    oov[s, j] += np.count_nonzero(zero[ends[s] : ends[s + 1]])

            list(pool.map(encode, range(n_fields), fields))
            behind.submit(write_chunk, X, labels[order], ends)
            spill.drop(chunk)
            done += m
            if progress:
                print(f"\r  pass 2: {done:,}/{n:,} rows", end="", flush=True)
        behind.wait()
        if progress:
            print()
    finally:
        behind.close()
        for writers in outs:
            for w in writers:
                w.f.close()
    hashes = {w.path.name: w.close() for writers in outs for w in writers}
    shutil.rmtree(spill.folder, ignore_errors=True)
    elapsed = time.perf_counter() - t0

    info: dict[str, Any] = {
        "n_rows": n,
        "split_sizes": {SPLIT_NAMES[s]: int(sizes[s]) for s in range(3)},
        "label_rates": {SPLIT_NAMES[s]: (positives[s] / sizes[s] if sizes[s] else None) for s in range(3)},
        "skipped_rows": reader.skips.count,
        "skipped_examples": list(reader.skips.examples) or None,
        "duplicates_dropped": reader.duplicates_dropped,
        "distinct_train_values": {f: vocabs[f].n_distinct for f in fields},
        "oov_rate": {
            SPLIT_NAMES[s]: {f: (float(oov[s, j] / sizes[s]) if sizes[s] else None) for j, f in enumerate(fields)}
            for s in range(3)
        },
        "timing_s": {"pass1": t_pass1, "sequential_count": t_count, "total": elapsed},
        "rows_per_s": n / elapsed if elapsed > 0 else None,
    }
    return {
        "field_names": fields,
        "field_dims": [vocabs[f].dim for f in fields],
        "info": info,
        "vocab_preview": {f: _preview(vocabs[f]) for f in fields},
        "array_sha256": hashes,
    }


def _preview(v: Vocab, k: int = 5) -> list[str]:
    """The most frequent train tokens, human-readable (for meta.json)."""
    vals = v.values.slice(0, k).to_pylist()
    if pa.types.is_uint64(v.values.type):
        return [key_repr(int(x)) for x in vals]
    if pa.types.is_integer(v.values.type):
        return [int_token_repr(int(x)) for x in vals]
    return [str(x) for x in vals]


def _batches(reader: RawReader, chunk_rows: int) -> Iterator[Batch]:
    for b in reader.batches(chunk_rows):
        if len(b):
            yield b


class NpyWriter:
    """Streams rows into a ``.npy`` file of known final shape, hashing the bytes as written."""

    def __init__(self, path: Path, dtype: type, shape: tuple[int, ...]) -> None:
        self.path = path
        self.dtype = np.dtype(dtype)
        self.shape = shape
        self.rows = 0
        self.sha = hashlib.sha256()
        self.f = open(path, "wb")
        header = {"descr": np.lib.format.dtype_to_descr(self.dtype), "fortran_order": False, "shape": shape}
        np.lib.format.write_array_header_1_0(self.f, header)
        self.f.flush()
        with open(path, "rb") as r:
            self.sha.update(r.read())

    def write(self, block: np.ndarray) -> None:
        data = np.ascontiguousarray(block, dtype=self.dtype)
        if data.shape[1:] != self.shape[1:] or self.rows + data.shape[0] > self.shape[0]:
            raise ValueError(f"{self.path.name}: block {data.shape} does not fit {self.shape}")
        buf = memoryview(data).cast("B")
        self.f.write(buf)
        self.sha.update(buf)
        self.rows += data.shape[0]

    def close(self) -> str:
        """Close, check the row count, and return the file's sha256."""
        self.f.close()
        if self.rows != self.shape[0]:
            raise ValueError(f"{self.path.name}: wrote {self.rows} rows, expected {self.shape[0]}")
        return self.sha.hexdigest()
