"""``python -m fmpbench``: a thin command-line layer over the library API.

Exit codes: 0 success, 1 some runs failed or bad data, 2 a usage error (unknown name, impossible k),
130 interrupted. User mistakes get one line on stderr, never a traceback.

Heavy libraries (torch, scipy, pandas) are imported inside the commands that use them, so that
``--help`` and ``list methods`` answer at once.
"""

from __future__ import annotations

import argparse
import io
import logging
import os
import signal
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from fmpbench.data import PreparedData
    from fmpbench.protocol import ExperimentConfig, Task

DEFAULT_DATA_DIR_NAME = ".fmpbench-data"
DEFAULT_DATA_DIR = os.environ.get("FMPBENCH_DATA", DEFAULT_DATA_DIR_NAME)
DEFAULT_RESULTS_DIR = "results/runs"
DEFAULT_STUDY_DIR = "results/study"


class UsageError(ValueError):
    """A mistake in the command line; reported in one line with exit code 2."""


def _parse_list(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _parse_numbers(text: str) -> list[float]:
    try:
        return [float(v) for v in _parse_list(text)]
    except ValueError:
        raise UsageError(f"--k expects numbers separated by commas, got '{text}'") from None


# What --help derives from the library, read only when that help is shown (the registries of
# backbones and executors live beside torch).
def _datasets() -> str:
    from fmpbench.data import DATASETS

    return "one of: " + ", ".join(DATASETS)


def _real_datasets() -> str:
    from fmpbench.data import REAL_DATASETS

    return "one of: " + ", ".join(REAL_DATASETS)


def _backbones() -> str:
    from fmpbench.models import BACKBONES

    return "one of: " + ", ".join(BACKBONES)


def _executors() -> str:
    from fmpbench.grid import EXECUTORS

    return "one of: " + ", ".join(EXECUTORS)


def _train_default(name: str) -> Callable[[], str]:
    def text() -> str:
        from fmpbench.training import TrainConfig

        return f"default: {getattr(TrainConfig(), name)}"

    return text


def _embed_dim_default() -> str:
    import inspect

    from fmpbench.models import BACKBONES

    return f"default: {inspect.signature(BACKBONES['mlp']).parameters['embed_dim'].default}"


def _min_count_default() -> str:
    from fmpbench.data import DEFAULT_MIN_COUNT

    return "default per dataset: " + ", ".join(f"{name} {count}" for name, count in DEFAULT_MIN_COUNT.items())


class _HelpFormatter(argparse.HelpFormatter):
    """Shows each option's default, and what an option's ``lazy_help`` derives from the library."""

    def _get_help_string(self, action: argparse.Action) -> str:
        lazy: Callable[[], str] | None = getattr(action, "lazy_help", None)
        notes = [lazy()] if lazy is not None else []
        if action.default not in (None, False, argparse.SUPPRESS) and action.option_strings:
            notes.append("default: %(default)s")
        return f"{action.help} ({'; '.join(notes)})" if notes else action.help or ""


def _lazy(action: argparse.Action, text: Callable[[], str]) -> None:
    action.lazy_help = text  # type: ignore[attr-defined]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fmpbench", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    def command(name: str, text: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=text, description=text, formatter_class=_HelpFormatter)

    def loudness(parser: argparse.ArgumentParser) -> None:
        group = parser.add_mutually_exclusive_group()
        group.add_argument("-v", "--verbose", dest="verbosity", action="store_const", const=1, default=0,
                           help="one line per training epoch (in a terminal: instead of the epoch bar)")
        group.add_argument("-q", "--quiet", dest="verbosity", action="store_const", const=-1,
                           help="no epoch bar and no per-run progress lines; summaries and errors only")

    run = command("run", "search, select top-k, retrain and test every method × k × seed")
    loudness(run)
    run.add_argument("--methods", default="all", help="'all' (every registered method) or a comma-separated list")
    _lazy(run.add_argument("--dataset", default="avazu", help="dataset name"), _datasets)
    _lazy(
        run.add_argument("--data-dir", default=None, help="where `prepare` stored real data; must exist when given"),
        lambda: f"default: $FMPBENCH_DATA or {DEFAULT_DATA_DIR_NAME}; now {DEFAULT_DATA_DIR}",
    )
    run.add_argument(
        "--k",
        default=None,
        help="budgets: counts (5,10) or ratios of the field count (0.25,0.5); default 0.25,0.5,0.75",
    )
    run.add_argument("--seeds", type=int, default=1, help="number of seeds (0..N-1)")
    _lazy(
        run.add_argument("--backbone", default="mlp", help="model retrained on the kept fields"),
        _backbones,
    )
    _lazy(run.add_argument("--embed-dim", type=int, default=None, help="embedding dimension"), _embed_dim_default)
    _lazy(
        run.add_argument("--epochs", type=int, default=None, help="maximum epochs (early stopping on validation AUC)"),
        _train_default("max_epochs"),
    )
    _lazy(
        run.add_argument("--batch-size", type=int, default=None, help="training batch size"),
        _train_default("batch_size"),
    )
    _lazy(
        run.add_argument("--lr", type=float, default=None, help="learning rate of dense weights"), _train_default("lr")
    )
    run.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    run.add_argument(
        "--torch-dropout", action="store_true",
        help="dropout masks from torch's nn.Dropout, what the committed study ran (configs/study.toml pins them); "
             "default: fmpbench's cheaper masks, another draw from the same distribution",
    )
    run.add_argument(
        "--torch-adam", action="store_true",
        help="dense weights' Adam as torch's multi-tensor step, what the committed study ran (configs/study.toml "
             "pins it); default: torch's fused Adam kernel, faster, rounding differently (<= 1 ulp a step)",
    )
    run.add_argument(
        "--rows", type=int, default=None, help="rows of the built-in stand-in / synthetic data (default 50000)"
    )
    run.add_argument("--results", default=DEFAULT_RESULTS_DIR, help="directory for run records")
    run.add_argument("--resume", action="store_true", help="skip runs whose record already exists")
    run.add_argument(
        "--jobs", type=int, default=1,
        help="tasks at a time (with stacked retrains: a seed's tasks, or a share of them): this process + jobs-1 "
             "workers, cores/jobs threads each",
    )
    _lazy(run.add_argument("--executor", default="local", help="where tasks run"), _executors)
    run.add_argument("--ray-address", default=None, help="address of a running Ray cluster (default: start one)")
    run.add_argument("--no-predictions", action="store_true", help="do not store test predictions")
    run.add_argument("--search-rows", type=int, default=None, metavar="N",
                     help="every search sees a seeded sample of N training rows (validation whole; the retrain uses "
                          "all rows); default: all rows (README: 'Search fidelity')")
    run.add_argument("--stack-retrains", action=argparse.BooleanOptionalAction, default=None,
                     help="train each k's mlp retrains of a seed's methods as one stacked model (every executor; "
                          "with --jobs N a process takes a seed's tasks, or a share of them when there are "
                          "fewer seeds than jobs); default: on (fmpbench.stacking.STACK_BY_DEFAULT)")
    run.add_argument("--dry-run", action="store_true",
                     help="list every run (id, row, k, seed, finished or not) and train nothing")
    run.add_argument("--set", action="append", default=[], metavar="METHOD.PARAM=VALUE",
                     help="a method hyper-parameter, e.g. lightfmp.subset=0.2 (repeatable; VALUE is a TOML/JSON "
                          "value or a bare string; checked against the method's constructor)")
    run.add_argument("--save-model", default=None, metavar="DIR",
                     help="save each finished top-k retrain's model to DIR/<run_id>.pt (state dict, kept fields, "
                          "backbone, data fingerprint; reload with fmpbench.models.saved.load_model)")
    run.add_argument("--vary-split", action="store_true",
                     help="seed s draws its own random split (split seed + s; vocabularies refitted on its train "
                          "rows), so the spread over seeds includes data sampling (the study does this)")
    run.add_argument("--matched-baselines", default="", metavar="METHODS",
                     help="methods whose k fields also get the matched-budget model-pruning rows <method>+small "
                          "and <method>+magnitude (e.g. lightfmp; default: none)")

    prep = command("prepare", "encode a raw dataset file, or a table of your own, into the cache used by `run`")
    _lazy(prep.add_argument("dataset", help="dataset name, or 'tabular' for a table of your own"), _real_datasets)
    prep.add_argument("--raw", action="append", help="raw file or directory (repeatable; not for tabular)")
    tab = prep.add_argument_group("tabular (your own CSV, gzip CSV or parquet; see README 'Your own data')")
    tab.add_argument("--name", help="the name `run --dataset` will know it by")
    tab.add_argument("--train", help="the table, or its training part when --valid and --test are given")
    tab.add_argument("--valid", help="validation part of a pre-split table (with --test: the split is used as given)")
    tab.add_argument("--test", help="test part of a pre-split table")
    tab.add_argument("--label", help="the 0/1 label column (or `label` in the schema)")
    tab.add_argument("--schema", help="TOML file: categorical/integer/numeric/ignore columns, missing tokens, user")
    prep.add_argument(
        "--data-dir",
        default=DEFAULT_DATA_DIR,
        help="cache directory that `run --data-dir` reads; $FMPBENCH_DATA sets the default",
    )
    _lazy(
        prep.add_argument(
            "--min-count",
            type=int,
            default=None,
            help="values seen fewer times in the training split share the out-of-vocabulary id 0",
        ),
        _min_count_default,
    )
    prep.add_argument(
        "--split",
        choices=("random", "sequential"),
        default="random",
        help="random 8:1:1 (seeded) or sequential 7:2:1 in file order",
    )
    prep.add_argument("--split-seed", type=int, default=2024, help="seed of the random split")
    prep.add_argument("--skip-bad-rows", action="store_true", help="count and skip malformed rows instead of failing")
    prep_loudness = prep.add_mutually_exclusive_group()
    prep_loudness.add_argument("-v", "--verbose", dest="verbosity", action="store_const", const=1, default=0,
                               help="one line per chunk read (in a terminal: instead of the bar of raw bytes read)")
    prep_loudness.add_argument("-q", "--quiet", dest="verbosity", action="store_const", const=-1,
                               help="no progress, only the result and errors")

    rep = command("report", "regenerate tables and figures from stored run records (no training)")
    rep.add_argument("--results", default=DEFAULT_RESULTS_DIR,
                     help="directory of run records, by default where `run` writes them (the study: "
                          f"--results {DEFAULT_STUDY_DIR} --out paper_figures)")
    rep.add_argument("--out", default=None, help="output directory for tables and figures (default: RESULTS/report)")
    rep.add_argument("--no-figures", action="store_true", help="write only the tables (fast)")

    study = command("study", "run a documented multi-dataset grid from a TOML file (resumable)")
    study.add_argument("config", nargs="?", default="configs/study.toml", help="study file (default: %(default)s)")
    loudness(study)
    study.add_argument("--dry-run", action="store_true", help="list every run of the study and train nothing")
    study.add_argument(
        "--datasets",
        default=None,
        help="run only these datasets of the file, comma-separated "
        "(a study can be run and committed in parts; default: all)",
    )

    export = command("export", "write every run record as one row of a CSV or parquet table (docs/record_schema.md)")
    export.add_argument("--results", default=DEFAULT_RESULTS_DIR, help="directory of run records")
    export.add_argument("--format", choices=("csv", "parquet"), required=True, help="file format")
    export.add_argument("--out", required=True, help="file to write")

    lst = command("list", "list registered methods, datasets or backbones")
    lst.add_argument("what", choices=("methods", "datasets", "backbones"), help="what to list")
    return parser


def _check_choice(kind: str, value: str, choices: list[str] | tuple[str, ...]) -> None:
    if value not in choices:
        raise UsageError(f"unknown {kind} '{value}'; choose from: {', '.join(choices)}")


def _check_can_create(directory: Path, what: str = "results directory") -> None:
    """Refuse an unwritable output directory before any work, without creating anything yet."""
    existing = directory
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise UsageError(f"{what} '{directory}' is not writable: '{existing}' is not a writable directory")


def _make_writable_dir(directory: Path) -> None:
    """Create the results directory and prove a record can be written there (catches read-only mounts)."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=directory, prefix=".write-check-"):
            pass
    except OSError as exc:
        raise UsageError(f"results directory '{directory}' is not writable: {exc.strerror or exc}") from None


def _check_device(name: str) -> None:
    """A CUDA device that this machine lacks would fail every run of the grid; say so once instead."""
    import torch

    try:
        device = torch.device(name)
    except RuntimeError:
        raise UsageError(f"unknown device '{name}'; use cpu, cuda or cuda:N") from None
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise UsageError(f"device '{name}' is not available here ({torch.cuda.device_count()} CUDA devices)")


def _resolve_methods(text: str) -> list[str]:
    from fmpbench.selectors import available_methods
    from fmpbench.selectors.registry import plugin_methods

    known = available_methods()
    if text == "all":
        plugins = plugin_methods()
        if plugins:  # installed packages join every `--methods all` grid (and `make run`): never silently
            print(f"fmpbench: --methods all includes installed plug-ins: {', '.join(plugins)}", file=sys.stderr)
        return known
    methods = list(dict.fromkeys(_parse_list(text)))  # a repeated name would run (and write) every row twice
    if not methods:
        raise UsageError(f"--methods is empty; choose from: all, {', '.join(known)}")
    for method in methods:
        _check_choice("method", method, known)
    return methods


def _start_workers_early() -> None:
    """Start the ``--jobs`` workers' fork server before this process's own heavy imports: its import of
    the grid then runs beside them instead of after them, when the first pool needs a worker (~2 s of
    a small run)."""
    from fmpbench.lifetime import worker_context

    worker_context()


def _study_asks_for_workers(path: Path) -> bool:
    """Whether a study file sets ``jobs`` > 1 on the local executor, read before ``load_study`` (which
    imports the grid) checks it; a file it cannot read answers no, and ``load_study`` says why."""
    import tomllib

    try:
        grid = tomllib.loads(path.read_text(encoding="utf-8")).get("grid", {})
    except (OSError, ValueError):  # ValueError: TOML and UTF-8 decoding errors
        return False
    if not isinstance(grid, dict) or grid.get("executor", "local") != "local":
        return False
    jobs = grid.get("jobs", 1)
    return isinstance(jobs, int) and jobs > 1


def command_run(args: argparse.Namespace) -> int:
    if args.jobs > 1 and args.executor == "local":
        _start_workers_early()
    from fmpbench.data import DATASETS, custom_datasets
    from fmpbench.grid import EXECUTORS, build_tasks, check_k_spec, resolve_ks, run_grid
    from fmpbench.models import BACKBONES
    from fmpbench.protocol import ExperimentConfig
    from fmpbench.stacking import STACK_BY_DEFAULT
    from fmpbench.training import TrainConfig

    methods = _resolve_methods(args.methods)
    _check_choice("dataset", args.dataset, (*DATASETS, *custom_datasets(args.data_dir or DEFAULT_DATA_DIR)))
    _check_choice("backbone", args.backbone, list(BACKBONES))
    counts = {
        "--seeds": args.seeds,
        "--jobs": args.jobs,
        "--rows": args.rows,
        "--epochs": args.epochs,
        "--batch-size": args.batch_size,
        "--embed-dim": args.embed_dim,
        "--search-rows": args.search_rows,
    }
    for flag, value in counts.items():
        if value is not None and value < 1:
            raise UsageError(f"{flag} must be at least 1, got {value}")
    if args.lr is not None and not args.lr > 0:
        raise UsageError(f"--lr must be positive, got {args.lr:g}")
    if args.seeds > MAX_SEEDS:  # the grid is listed up front: a typo'd count would exhaust memory first
        raise UsageError(f"--seeds must be at most {MAX_SEEDS:,}, got {args.seeds:,}")
    _check_choice("executor", args.executor, EXECUTORS)
    if args.executor == "local":  # a Ray cluster's workers may have devices this driver lacks
        _check_device(args.device)
    ks_spec = _parse_numbers(args.k) if args.k else None
    if ks_spec:
        check_k_spec(ks_spec)
    if args.data_dir is not None and args.dataset != "synthetic" and not Path(args.data_dir).expanduser().is_dir():
        raise UsageError(f"--data-dir '{args.data_dir}' does not exist (prepared data lives where `prepare` put it)")
    data_dir = args.data_dir or DEFAULT_DATA_DIR
    results_dir = Path(args.results)
    _check_can_create(results_dir)
    if args.save_model is not None:
        if args.executor != "local":  # a cluster's workers would write the models on their own disks
            raise UsageError("--save-model needs --executor local")
        _check_can_create(Path(args.save_model), "--save-model directory")
    overrides = {"max_epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr, "device": args.device,
                 "fast_dropout": False if args.torch_dropout else None,
                 "fused_adam": False if args.torch_adam else None}
    train_config = TrainConfig(**{k: v for k, v in overrides.items() if v is not None})
    baselines = tuple(_resolve_methods(args.matched_baselines)) if args.matched_baselines else ()
    method_params = _method_params(args.set)
    idle = sorted(set(method_params) - set(methods) - set(baselines))
    if idle:  # a parameter for a method the grid does not run would silently do nothing
        raise UsageError(f"--set names {', '.join(idle)}, which --methods does not include")
    data = _load_data(args.dataset, data_dir, args.rows)
    ks = resolve_ks(ks_spec, data.num_fields)
    if not args.dry_run:
        _make_writable_dir(results_dir)  # only now: a usage error above leaves no trace on disk
    _announce_data(data, data_dir, args.rows)
    backbone_params = {"embed_dim": args.embed_dim} if args.embed_dim else {}
    config = ExperimentConfig(
        dataset=args.dataset,
        data_dir=data_dir,
        n_rows=args.rows,
        backbone=args.backbone,
        backbone_params=backbone_params,
        train_config=train_config,
        save_predictions=not args.no_predictions,
        method_params=method_params,
        matched_baselines=baselines,
        model_dir=args.save_model,
        search_rows=args.search_rows,
    )
    tasks = build_tasks(methods, list(range(args.seeds)), ks)
    by_seed = _seed_splits(data, args.seeds, data_dir) if args.vary_split else data
    if args.dry_run:
        from fmpbench.plan import grid_plan, print_plan

        print_plan(grid_plan(tasks, config, by_seed, results_dir), sys.stdout)
        return 0
    print(
        f"fmpbench: {args.dataset} ({data.data_source}), {data.num_fields} fields, k={list(ks)}, "
        f"{len(methods)} methods × {args.seeds} seed(s) → results in {results_dir}",
        file=sys.stderr,
    )
    outcome = run_grid(
        tasks,
        config,
        by_seed,
        results_dir,
        resume=args.resume,
        jobs=args.jobs,
        executor=args.executor,
        ray_address=args.ray_address,
        stream=_progress_stream(args),  # the stream of now, not the one of the grid module's import
        stack_retrains=STACK_BY_DEFAULT if args.stack_retrains is None else args.stack_retrains,
    )
    records = _grid_records(tasks, config, by_seed, results_dir, outcome.records)
    _print_summary(records)
    _print_drop_list(records, results_dir)
    print(
        f"{len(outcome.records)} runs in {outcome.seconds:.1f}s, {outcome.skipped} skipped (--resume), "
        f"{len(outcome.failed)} failed",
        file=sys.stderr,
    )
    return 1 if outcome.failed else 0


def _progress_stream(args: argparse.Namespace) -> TextIO:
    """Where per-run progress lines go: stderr, or nowhere under ``-q``."""
    return sys.stderr if args.verbosity >= 0 else io.StringIO()


def _method_params(items: list[str]) -> dict[str, dict[str, Any]]:
    """``--set`` items as ``ExperimentConfig.method_params``, checked against each selector's constructor."""
    from fmpbench.plan import check_method_params, parse_set

    try:
        return check_method_params(parse_set(items))
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def _load_data(dataset: str, data_dir: str, rows: int | None) -> PreparedData:
    from fmpbench.data import get_dataset

    data_log = logging.getLogger("fmpbench.data")
    level = data_log.level
    data_log.setLevel(logging.ERROR)  # its stand-in notice: :func:`_announce_data` prints a louder one
    try:
        return get_dataset(dataset, data_dir, n_rows=rows, mmap=True)
    finally:
        data_log.setLevel(level)


def _announce_data(data: PreparedData, data_dir: str, rows: int | None) -> None:
    """Say it when the data is a stand-in (and which folder had no prepared data), or ignores --rows."""
    from fmpbench.data.cache import dataset_root

    if data.data_source == "real" and rows is not None:
        print(
            f"fmpbench: warning: --rows {rows} is ignored: '{data.name}' is the prepared real data in "
            f"'{data_dir}' ({len(data.train):,} training rows); --rows sizes only stand-in and synthetic data",
            file=sys.stderr,
        )
    if data.data_source.startswith("standin"):
        print(
            f"*** NOTE: no prepared '{data.name}' data in '{dataset_root(data_dir, data.name)}': using the "
            f"built-in SYNTHETIC STAND-IN ({data.data_source}, {len(data.train)} training rows). Results are "
            f"not real-data results. Run `python -m fmpbench prepare {data.name} --raw FILE` for real data. ***",
            file=sys.stderr,
        )


def _seed_splits(data: PreparedData, seeds: int, data_dir: str) -> dict[int, PreparedData]:
    """Seed s's own random split of ``data`` (split seed = the data's + s), prepared or generated once."""
    from fmpbench.data.refs import with_split_seed

    if data.given_split:
        print(f"fmpbench: note: {data.name} was prepared from given train/valid/test files; --vary-split keeps that "
              "split for every seed (seeds differ only in initialisation)", file=sys.stderr)
    base = data.split_seed if data.split_seed is not None else 2024
    return {seed: with_split_seed(data, base + seed, data_dir) for seed in range(seeds)}


def _grid_records(
    tasks: list[Task], config: ExperimentConfig, data: Any, results_dir: Path, new: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Every record of the grid: this invocation's, and those an earlier one wrote (``--resume``)."""
    from fmpbench.grid import data_for
    from fmpbench.protocol import task_rows
    from fmpbench.results import read_record, record_path

    fresh = {record["run_id"]: record for record in new}
    records = []
    for task in tasks:
        for row in task_rows(task, config, data_for(data, task.seed)):
            if row.run_id in fresh:
                records.append(fresh[row.run_id])
            elif record_path(results_dir, row.run_id).is_file():
                records.append(read_record(record_path(results_dir, row.run_id)))
    return records


def _print_summary(records: list[dict[str, Any]]) -> None:
    """Means over seeds per method × k (AUC, logloss, parameter counts, MFLOPs per sample, seconds), then
    every row that :func:`fmpbench.report.flags.flag_rows` flags."""
    import pandas as pd

    from fmpbench.report.flags import flag_rows

    ok = [r for r in records if r["status"] == "ok"]
    if not ok:
        return
    frame = pd.DataFrame(ok)
    table = (
        frame.groupby(["method", "k"], sort=False)
        .agg(
            auc=("test_auc", "mean"),
            logloss=("test_logloss", "mean"),
            emb_params=("embedding_params", "mean"),
            dense_params=("dense_params", "mean"),
            MFLOPs=("flops_per_sample", lambda v: v.mean() / 1e6),
            search_s=("search_seconds", "mean"),
            retrain_s=("retrain_seconds", "mean"),
            total_s=("total_seconds", "mean"),
            seeds=("seed", "nunique"),
        )
        .reset_index()
        .sort_values(["k", "auc"], ascending=[True, False])
    )
    counts = {column: "{:,.0f}".format for column in ("emb_params", "dense_params")}
    seconds = {column: "{:.1f}".format for column in ("search_s", "retrain_s", "total_s")}
    formats = {"auc": "{:.4f}".format, "logloss": "{:.4f}".format, "MFLOPs": "{:.3f}".format, **counts, **seconds}
    print(table.to_string(index=False, formatters=formats))
    flagged = flag_rows(frame)
    if not flagged.empty:
        print(f"FLAGGED: {len(flagged)} rows to read before publishing (worse than chance, or far worse than none):")
        for row in flagged.itertuples():
            print(f"  {row.method} k={row.k} seed={row.seed}: {row.reason}")


def _print_drop_list(records: list[dict[str, Any]], results_dir: Path) -> None:
    """The grid's answer (:mod:`fmpbench.report.answer`): which fields each method can drop."""
    from fmpbench.report.answer import drop_list, drop_list_lines
    from fmpbench.report.load import records_frame
    from fmpbench.report.summary import main_summary

    loaded = records_frame(records, results_dir)
    if loaded.ok.empty:
        return
    print("\n".join(drop_list_lines(drop_list(main_summary(loaded), loaded))))


_TABULAR_FLAGS = ("name", "train", "valid", "test", "label", "schema")


class _ReadBar(logging.Handler):
    """``prepare``'s progress in a terminal: a bar of the raw bytes read (the data layer logs each chunk);
    it appears only after half a second, so a small file shows none."""

    def __init__(self, stream: TextIO) -> None:
        super().__init__(logging.INFO)
        self.stream = stream
        self.bar: Any = None

    def emit(self, record: logging.LogRecord) -> None:
        from tqdm import tqdm

        if self.bar is None:
            self.bar = tqdm(total=record.bytes_total, desc=f"reading {record.dataset}", unit="B", unit_scale=True,
                            delay=0.5, leave=False, file=self.stream)
        self.bar.set_postfix_str(f"{record.rows:,} rows", refresh=False)
        self.bar.update(record.bytes_read - self.bar.n)
        if record.done:
            self.close()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        super().close()


def _show_preparation(verbosity: int, stream: TextIO) -> logging.Handler | None:
    """As for training epochs (``fmpbench.progress``): a bar in a terminal, lines with ``-v`` (logs, CI),
    nothing with ``-q`` or by default off a terminal (stderr then holds only errors)."""
    from fmpbench.data import PREPARE_LOG

    if verbosity < 0 or (verbosity == 0 and not stream.isatty()):
        return None
    handler: logging.Handler
    if verbosity == 0:
        handler = _ReadBar(stream)
    else:
        handler = logging.StreamHandler(stream)
        handler.setFormatter(logging.Formatter("fmpbench: %(message)s"))
        handler.addFilter(lambda record: record.rows > 0)  # a line per chunk read, none before the first
    logger = logging.getLogger(PREPARE_LOG)
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    return handler


def _hide_preparation(handler: logging.Handler | None) -> None:
    from fmpbench.data import PREPARE_LOG

    if handler is not None:
        logger = logging.getLogger(PREPARE_LOG)
        logger.removeHandler(handler)
        handler.close()
        logger.setLevel(logging.NOTSET)
        logger.propagate = True


def command_prepare(args: argparse.Namespace) -> int:
    shown = _show_preparation(args.verbosity, sys.stderr)
    try:
        return _prepare(args)
    finally:
        _hide_preparation(shown)


def _prepare(args: argparse.Namespace) -> int:
    from fmpbench.data import REAL_DATASETS, DataError, prepare, prepare_tabular
    from fmpbench.data.tabular import KIND, SchemaError

    _check_choice("dataset", args.dataset, (*REAL_DATASETS, KIND))
    if args.min_count is not None and args.min_count < 1:
        raise UsageError(f"--min-count must be at least 1, got {args.min_count}")
    options = {"split": args.split, "split_seed": args.split_seed, "skip_bad_rows": args.skip_bad_rows}
    if args.min_count is not None:
        options["min_count"] = args.min_count
    given = [f"--{flag}" for flag in _TABULAR_FLAGS if getattr(args, flag) is not None]
    if args.dataset == KIND:
        if args.raw:
            raise UsageError("prepare tabular takes --train (and --valid, --test), not --raw")
        if args.name is None or args.train is None:
            raise UsageError("prepare tabular needs --name NAME and --train FILE")
        try:
            data = prepare_tabular(args.name, args.train, args.data_dir, valid=args.valid, test=args.test,
                                   label=args.label, schema=args.schema, **options)
        except SchemaError as exc:
            raise UsageError(str(exc)) from None
    else:
        if not args.raw:
            raise UsageError(f"prepare {args.dataset} needs --raw FILE")
        if given:
            raise UsageError(f"{given[0]} is for `prepare tabular` (a table of your own), not {args.dataset}")
        data = prepare(args.dataset, args.raw[0] if len(args.raw) == 1 else args.raw, args.data_dir, **options)
    sizes = ", ".join(f"{name} {len(getattr(data, name)):,}" for name in ("train", "valid", "test"))
    print(f"prepared {data.name}: {data.num_fields} fields, {sizes} rows"
          + (" (the split of the given files)" if data.given_split else ""))
    print(f"fingerprint {data.fingerprint}, cached in {args.data_dir}")
    try:
        data.check_trainable()
    except DataError as exc:  # cached as asked, but say now what `run` would only say later
        print(f"fmpbench: warning: {exc}; `run` refuses such data", file=sys.stderr)
    skipped = data.info.get("skipped_rows")
    if skipped:
        print(f"skipped {skipped} malformed rows (--skip-bad-rows)")
    duplicates = data.info.get("duplicates_dropped")
    if duplicates:
        read = data.info.get("n_rows", len(data.train) + len(data.valid) + len(data.test)) + duplicates
        print(
            f"dropped {duplicates:,} of {read:,} reviews as duplicates (one review repeated under several product "
            f"variants: same reviewer, time, summary and text; see datasets/amazon.md)"
        )
    return 0


def _records_dir(results_dir: Path) -> Path:
    """The folder of run records under ``results_dir``: itself, or its only subfolder that holds records.

    A report of a folder whose records sit one level down (``results/`` instead of ``results/study``)
    would otherwise be empty tables and exit 0.
    """
    if not results_dir.is_dir():
        raise UsageError(f"results directory '{results_dir}' does not exist")
    if any(results_dir.glob("*.json")):
        return results_dir
    below = sorted({path.parent for path in results_dir.rglob("*.json")})
    if not below:
        raise UsageError(f"no run records (*.json) in '{results_dir}' or its subfolders: nothing to report")
    if len(below) > 1:
        folders = ", ".join(str(folder) for folder in below)
        raise UsageError(f"no run records in '{results_dir}' itself; choose one folder as --results: {folders}")
    print(f"fmpbench: no run records in '{results_dir}' itself; reporting those in '{below[0]}'", file=sys.stderr)
    return below[0]


def command_report(args: argparse.Namespace) -> int:
    from fmpbench.report import generate_report

    results_dir = _records_dir(Path(args.results))
    out = Path(args.out) if args.out is not None else Path(args.results) / "report"
    summary = generate_report(results_dir, out, figures=not args.no_figures)
    print(
        f"{summary.n_records} records ({summary.n_ok} ok, {summary.n_failed} failed, {summary.n_missing} missing, "
        f"{summary.n_corrupt} corrupt) → {len(summary.tables)} tables, {len(summary.figures)} figures in {out}"
    )
    for name, reason in summary.missing_figures.items():
        print(f"not produced: {name}: {reason}")
    return 0


def command_study(args: argparse.Namespace) -> int:
    if not args.dry_run and _study_asks_for_workers(Path(args.config)):
        _start_workers_early()
    from fmpbench.study import StudyError, load_study, run_study

    study = load_study(Path(args.config))
    if study.executor == "local":  # as for `run`: a device this machine lacks would fail every run
        _check_device(study.train_config.device)
    if not args.dry_run:
        _make_writable_dir(study.results)
    only = [d.strip() for d in args.datasets.split(",")] if args.datasets else None
    unknown = [d for d in only or [] if d not in study.datasets]
    if unknown:
        raise StudyError(
            f"{args.config}: --datasets names {', '.join(unknown)}, which the file does not have; "
            f"it has {', '.join(study.datasets)}"
        )
    if args.dry_run:
        run_study(study, stream=sys.stderr, only=only, dry_run=True)
        return 0
    failed = run_study(study, stream=_progress_stream(args), only=only)
    print(f"study finished: {failed} failed runs; records in {study.results}", file=sys.stderr)
    return 1 if failed else 0


def command_export(args: argparse.Namespace) -> int:
    from fmpbench.export import export_results

    results_dir = _records_dir(Path(args.results))
    rows = export_results(results_dir, Path(args.out), args.format)
    print(f"{rows} records from {results_dir} → {args.out}")
    return 0


def command_list(args: argparse.Namespace) -> int:
    if args.what == "methods":
        _print_methods()
    elif args.what == "datasets":
        from fmpbench.data import DATASETS, custom_datasets

        own = [f"{name} (your table, prepared in {DEFAULT_DATA_DIR})" for name in custom_datasets(DEFAULT_DATA_DIR)]
        print("\n".join([*DATASETS, *own]))
    else:
        from fmpbench.models import BACKBONES

        print("\n".join(BACKBONES))
    return 0


def _print_methods(width: int = 100) -> None:
    """Each method's whole summary, wrapped, and the result rows of methods that yield more than one."""
    import textwrap

    from fmpbench.catalog import method_catalog

    methods = method_catalog()
    indent = " " * (max(len(m.name) for m in methods) + 2)
    for method in methods:
        text = method.summary + (" [installed plug-in]" if method.plugin else "")
        if len(method.rows) > 1:
            retrain, native = method.rows
            text += f" Yields two result rows: {retrain} (its ranking, standard top-k retrain)"
            text += f" and {native} (its own pipeline)."
        lines = textwrap.wrap(text, width, initial_indent=indent, subsequent_indent=indent) or [indent]
        lines[0] = method.name + lines[0][len(method.name) :]
        print("\n".join(lines))


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


#: more seeds than any study needs (5 is the default of a study): a larger count is a typo
MAX_SEEDS = 10_000


def _library_errors(*names: str) -> tuple[type[Exception], ...]:
    """The library's error classes among those already imported: one not imported was not raised."""
    places = {"GridError": "fmpbench.grid", "StudyError": "fmpbench.study", "DataError": "fmpbench.data.errors"}
    return tuple(getattr(sys.modules[places[n]], n) for n in names if places[n] in sys.modules)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    signal.signal(signal.SIGTERM, _raise_interrupt)
    from fmpbench.progress import hide_epochs, show_epochs

    epochs = show_epochs(args.verbosity, sys.stderr) if args.command in ("run", "study") else None
    try:
        return _dispatch(args)
    finally:
        hide_epochs(epochs)


def _dispatch(args: argparse.Namespace) -> int:
    commands = {
        "run": command_run,
        "prepare": command_prepare,
        "report": command_report,
        "study": command_study,
        "list": command_list,
        "export": command_export,
    }
    try:
        return commands[args.command](args)
    except (UsageError, *_library_errors("GridError", "StudyError")) as exc:
        print(f"fmpbench: error: {exc}", file=sys.stderr)
        return 2
    except _library_errors("DataError") as exc:
        print(f"fmpbench: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("fmpbench: interrupted; finished runs are saved, rerun with --resume to complete", file=sys.stderr)
        return 130
    except OSError as exc:  # the file system refused: a full disk, a read-only folder, a file where a folder goes
        print(f"fmpbench: error: {_describe_os_error(exc)}", file=sys.stderr)
        return 1


def _describe_os_error(exc: OSError) -> str:
    paths = " -> ".join(f"'{p}'" for p in (exc.filename, exc.filename2) if p is not None)
    return f"{paths}: {exc.strerror or exc}" if paths else str(exc.strerror or exc)
