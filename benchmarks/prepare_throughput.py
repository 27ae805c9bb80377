"""Preparation speed and peak memory, as whole processes, against a polars script doing the same work.

In one run, for each row count: generate a Criteo ``train.txt`` (``generate_raw.py``; or reuse it from
``--raw-dir``), then run, alternately and ``--repeats`` times each, in fresh processes:

- ``python -m fmpbench prepare criteo --raw FILE --data-dir DIR`` (the command users run: start-up,
  the raw file's checksum, both passes, the cache's finalisation and its verified reload), and
- the polars reference (``polars_reference`` below, this script with ``--polars-child``): parse,
  integer buckets as fmpbench makes them, the same seeded random 8:1:1 split, train-only
  vocabularies with ``min_count`` 10 (ids by decreasing count, ties by value), int32 ``.npy`` output.

Each process's wall-clock, CPU seconds and peak resident set size are its own (``os.wait4``). The
reference's six arrays are checked to be byte-identical to fmpbench's, so both did the same work.
Printed: per row count the medians and the ratios fmpbench / polars of wall-clock and peak RSS (one
run, interleaved: the ratios hold on a shared, noisy machine where the absolute figures do not), and
fmpbench's memory scaling from the smallest to the largest row count. ``--dataset avazu`` times
fmpbench only (the reference is Criteo's).

Bars: fmpbench's wall-clock <= polars' and its peak RSS <= polars'; >= 200,000 rows/s at the largest
row count; peak RSS there within 1.3x of the smallest's and under 2 GiB.

Usage: python benchmarks/prepare_throughput.py [--rows 1000000 5000000] [--repeats 3]
       [--dataset criteo avazu] [--raw-dir DIR] [--gzip] [--json out.json]
Needs polars for the reference: pip install 'fmpbench[bench]'.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

MIN_ROWS_PER_S = 200_000
MAX_PEAK_RATIO = 1.3
MAX_PEAK_BYTES = 2 << 30
SUFFIX = {"criteo": "txt", "avazu": "csv"}
ARRAYS = [f"{s}_{k}.npy" for s in ("train", "valid", "test") for k in ("X", "y")]
#: fmpbench's defaults for Criteo, which the reference reproduces
MIN_COUNT, SPLIT_SEED = 10, 2024


def load() -> float:
    return round(os.getloadavg()[0], 2)


# ---------------------------------------------------------------- the polars reference


def _splitmix64(x: np.ndarray) -> np.ndarray:
    z = x.astype(np.uint64)
    with np.errstate(over="ignore"):
        z += np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def random_split_codes(n: int, seed: int) -> np.ndarray:
    """fmpbench's random split, restated: in each block of 10 rows the row with the smallest hash
    goes to valid (1), the next to test (2), the rest to train (0)."""
    blocks = -(-n // 10)
    keys = _splitmix64(np.arange(blocks * 10, dtype=np.uint64) ^ _splitmix64(np.array([seed], np.uint64))[0])
    ranks = np.argsort(np.argsort(keys.reshape(blocks, 10), axis=1, kind="stable"), axis=1, kind="stable")
    ranks = ranks.reshape(-1)[:n]
    return np.where(ranks == 0, 1, np.where(ranks == 1, 2, 0)).astype(np.int8)


def polars_reference(raw: Path, out: Path, min_count: int = MIN_COUNT, split_seed: int = SPLIT_SEED) -> None:
    """Criteo preparation written the way a polars user would: one multi-threaded read, column
    expressions, per-field vocabularies and encodings each collected in parallel, one write per array."""
    import polars as pl

    ints, cats = [f"I{i}" for i in range(1, 14)], [f"C{i}" for i in range(1, 27)]
    fields = ints + cats
    schema = {"label": pl.Float32, **{c: pl.Int64 for c in ints}, **{c: pl.String for c in cats}}
    df = pl.read_csv(raw, separator="\t", has_header=False, schema=schema, quote_char=None)
    missing, bucket_offset = np.iinfo(np.int64).min, 1 << 60  # fmpbench's integer tokens

    def bucket(name: str) -> pl.Expr:
        v = pl.col(name)
        log_bucket = bucket_offset + (v.cast(pl.Float64).log() ** 2).floor().cast(pl.Int64)
        return pl.when(v.is_null()).then(missing).when(v > 2).then(log_bucket).otherwise(v).alias(name)

    df = df.with_columns(
        [bucket(c) for c in ints] + [pl.col(c).fill_null("") for c in cats],
        split=pl.Series(random_split_codes(df.height, split_seed)),
    )
    train = df.lazy().filter(pl.col("split") == 0)
    vocab_plans = [
        train.group_by(f)
        .len()
        .filter(pl.col("len") >= min_count)
        .sort(["len", f], descending=[True, False])
        .select(f, pl.int_range(1, pl.len() + 1, dtype=pl.Int32).alias(f"{f}_id"))
        for f in fields
    ]
    vocabs = dict(zip(fields, pl.collect_all(vocab_plans), strict=True))
    # Strings: a cast to an Enum of the vocabulary (its physical code is the position); integers: a join.
    # Both keep the row order, and were the fastest of the order-keeping ways measured.
    int_ids = [
        df.lazy()
        .select(f)
        .join(vocabs[f].lazy(), on=f, how="left", maintain_order="left")
        .select(pl.col(f"{f}_id").fill_null(0))
        for f in ints
    ]
    cat_ids = df.lazy().select(
        [
            pl.col(f)
            .cast(pl.Enum(vocabs[f][f]), strict=False)
            .to_physical()
            .cast(pl.Int32)
            .add(1)
            .fill_null(0)
            .alias(f"{f}_id")
            for f in cats
        ]
        + ["label", "split"]
    )
    encoded = pl.concat([*int_ids, cat_ids], how="horizontal").collect()
    del df
    for s, name in enumerate(("train", "valid", "test")):
        part = encoded.filter(pl.col("split") == s)
        np.save(out / f"{name}_X.npy", np.ascontiguousarray(part.select([f"{f}_id" for f in fields]).to_numpy()))
        np.save(out / f"{name}_y.npy", part["label"].to_numpy())


# ---------------------------------------------------------------- measuring whole processes


def run_process(cmd: list[str], what: str) -> dict[str, float]:
    """Run ``cmd`` to completion: its wall-clock, CPU seconds and peak RSS, of this process alone."""
    load_before = load()
    with tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            err.seek(0)
            raise SystemExit(f"{what} failed (exit {proc.returncode}):\n{err.read().decode(errors='replace')}")
    return {
        "wall_s": wall,
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "peak_rss_bytes": usage.ru_maxrss * 1024,  # Linux reports KiB
        "load_before": load_before,
        "load_after": load(),
    }


def measure_fmpbench(dataset: str, raw: Path, work: Path) -> dict[str, Any]:
    data_dir = work / "fmpbench"
    shutil.rmtree(data_dir, ignore_errors=True)
    cmd = [sys.executable, "-m", "fmpbench", "prepare", dataset, "--raw", str(raw), "--data-dir", str(data_dir)]
    res = run_process(cmd, f"fmpbench prepare {dataset} {raw}")
    root = data_dir / dataset
    meta = json.loads((root / (root / "CURRENT").read_text().strip() / "meta.json").read_text())
    res.update(
        rows=meta["info"]["n_rows"],
        vocabulary=sum(meta["field_dims"]),
        passes_s=meta["info"]["timing_s"],
        array_sha256={f: meta["arrays"][f]["sha256"] for f in ARRAYS},
    )
    shutil.rmtree(data_dir, ignore_errors=True)
    return res


def measure_polars(raw: Path, work: Path) -> dict[str, Any]:
    from fmpbench.data.cache import sha256_path  # not at the top: the polars child must not load fmpbench

    out = work / "polars"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir()
    res = run_process([sys.executable, __file__, "--polars-child", str(raw), str(out)], f"polars reference {raw}")
    res["array_sha256"] = {f: sha256_path(out / f) for f in ARRAYS}
    shutil.rmtree(out, ignore_errors=True)
    return res


def median_of(trials: list[dict[str, Any]]) -> dict[str, float]:
    return {k: statistics.median(t[k] for t in trials) for k in ("wall_s", "cpu_s", "peak_rss_bytes")}


def raw_file(dataset: str, rows: int, folder: Path, gz: bool, seed: int) -> Path:
    from generate_raw import write_raw  # beside this script, which is on sys.path when run as one

    path = folder / f"{dataset}_{rows}_seed{seed}.{SUFFIX[dataset]}{'.gz' if gz else ''}"
    if not path.exists():
        t = time.perf_counter()
        write_raw(dataset, rows, path, seed=seed, gzip_level=1 if gz else None)
        print(f"generated {path} ({path.stat().st_size / 1e6:,.0f} MB) in {time.perf_counter() - t:.1f}s", flush=True)
    return path


def compare(dataset: str, raw: Path, work: Path, repeats: int) -> dict[str, Any]:
    """``repeats`` runs of each, interleaved (the order alternates), and their medians and ratios."""
    fmp: list[dict[str, Any]] = []
    pol: list[dict[str, Any]] = []
    with_polars = dataset == "criteo"
    for r in range(repeats):
        order = ["fmpbench", "polars"] if r % 2 == 0 else ["polars", "fmpbench"]
        for who in order if with_polars else ["fmpbench"]:
            if who == "fmpbench":
                fmp.append(measure_fmpbench(dataset, raw, work))
            else:
                pol.append(measure_polars(raw, work))
            t = (fmp if who == "fmpbench" else pol)[-1]
            print(
                f"  {who:8} {t['wall_s']:6.2f} s  cpu {t['cpu_s']:6.2f} s  peak RSS "
                f"{t['peak_rss_bytes'] / 2**20:6,.0f} MiB  load {t['load_before']:.2f} -> {t['load_after']:.2f}",
                flush=True,
            )
    res: dict[str, Any] = {"rows": fmp[0]["rows"], "vocabulary": fmp[0]["vocabulary"], "fmpbench": fmp}
    res["fmpbench_median"] = m = median_of(fmp)
    res["rows_per_s"] = res["rows"] / m["wall_s"]
    if with_polars:
        res["polars"] = pol
        res["polars_median"] = p = median_of(pol)
        res["wall_ratio"] = m["wall_s"] / p["wall_s"]
        res["peak_ratio"] = m["peak_rss_bytes"] / p["peak_rss_bytes"]
        res["identical_output"] = all(t["array_sha256"] == fmp[0]["array_sha256"] for t in fmp + pol)
    return res


def verdict(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The bars: fmpbench against polars at every size, and its largest run against its smallest."""
    small, big = min(runs, key=lambda r: r["rows"]), max(runs, key=lambda r: r["rows"])
    peak = big["fmpbench_median"]["peak_rss_bytes"]
    ratio = peak / small["fmpbench_median"]["peak_rss_bytes"]
    out = {
        "rows_small": small["rows"],
        "rows_large": big["rows"],
        "peak_scaling": ratio,
        "rows_per_s_large": big["rows_per_s"],
        "meets_speed": big["rows_per_s"] >= MIN_ROWS_PER_S,
        "meets_memory_scaling": ratio <= MAX_PEAK_RATIO,
        "meets_memory_cap": peak < MAX_PEAK_BYTES,
    }
    if all("polars" in r for r in runs):
        out["at_least_as_fast_as_polars"] = all(r["wall_ratio"] <= 1 for r in runs)
        out["memory_no_higher_than_polars"] = all(r["peak_ratio"] <= 1 for r in runs)
        out["identical_output"] = all(r["identical_output"] for r in runs)
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 5_000_000])
    ap.add_argument("--repeats", type=int, default=3, help="runs of each program per row count (medians)")
    ap.add_argument("--dataset", nargs="+", choices=list(SUFFIX), default=["criteo"])
    ap.add_argument("--raw-dir", type=Path, default=None, help="keep/reuse generated raw files here")
    ap.add_argument("--gzip", action="store_true", help="gzip the raw files (level 1)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--polars-child", nargs=2, metavar=("RAW", "OUT"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.polars_child:
        polars_reference(Path(args.polars_child[0]), Path(args.polars_child[1]))
        return
    if args.repeats < 1:
        ap.error(f"--repeats must be at least 1, got {args.repeats}")
    if "criteo" in args.dataset:
        try:
            import polars  # noqa: F401
        except ImportError:
            ap.error("the polars reference needs polars: pip install 'fmpbench[bench]'")

    work = Path(tempfile.mkdtemp(prefix="fmpbench-prepare-"))
    raw_dir = args.raw_dir or work
    report: dict[str, Any] = {"cpus": os.cpu_count(), "affinity": len(os.sched_getaffinity(0)), "datasets": {}}
    try:
        for dataset in args.dataset:
            runs = []
            for rows in sorted(args.rows):
                raw = raw_file(dataset, rows, raw_dir, args.gzip, args.seed)
                print(f"{dataset} {rows:,} rows ({raw.stat().st_size / 1e6:,.0f} MB):", flush=True)
                r = compare(dataset, raw, work, args.repeats)
                r.update(dataset=dataset, raw=str(raw), raw_bytes=raw.stat().st_size)
                runs.append(r)
                m = r["fmpbench_median"]
                line = (
                    f"  median fmpbench {m['wall_s']:.2f} s ({r['rows_per_s']:,.0f} rows/s), "
                    f"peak {m['peak_rss_bytes'] / 2**20:,.0f} MiB"
                )
                if "polars" in r:
                    p = r["polars_median"]
                    line += (
                        f"; polars {p['wall_s']:.2f} s, peak {p['peak_rss_bytes'] / 2**20:,.0f} MiB; "
                        f"fmpbench/polars: wall {r['wall_ratio']:.2f}, peak {r['peak_ratio']:.2f}; "
                        f"identical output: {r['identical_output']}"
                    )
                print(line, flush=True)
            v = verdict(runs)
            print(
                f"{dataset}: " + "  ".join(f"{k} {v[k]:.2f}" if isinstance(v[k], float) else f"{k} {v[k]}" for k in v),
                flush=True,
            )
            report["datasets"][dataset] = {"runs": runs, "verdict": v}
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
