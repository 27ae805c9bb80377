"""A study: one documented grid over several datasets (plus ablations), read from a TOML file.

The file under version control (``configs/study.toml``) is the record of what the committed
results are: datasets and their raw files, methods, budgets, seeds, backbone, matched-budget
baselines and ablations. Every dataset is prepared (or taken from the cache), then run with
``--resume`` semantics, so an interrupted study continues where it stopped; ``datasets`` restricts a
run to some of them (to run and commit a study in parts).

With ``vary_split`` (the default) seed s draws its own random split — split seed = the dataset's
``split_seed`` (default 2024) + s, vocabularies refitted on that split's training rows — so the
standard deviation over seeds includes data-sampling variance, not only initialisation.
"""

from __future__ import annotations

import inspect
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

from fmpbench.data import DATASETS, custom_datasets, get_dataset, prepare
from fmpbench.data.prepared import PreparedData
from fmpbench.data.refs import with_split_seed
from fmpbench.grid import EXECUTORS, build_tasks, resolve_ks, run_grid
from fmpbench.models import BACKBONES
from fmpbench.plan import check_method_params, grid_plan, print_plan
from fmpbench.protocol import ExperimentConfig
from fmpbench.selectors import available_methods
from fmpbench.stacking import STACK_BY_DEFAULT
from fmpbench.training import TrainConfig

#: what ``[grid]`` may hold, each with what its value must be (``_KINDS``); ``methods``, ``matched_baselines``,
#: ``set`` (method parameters, as ``run --set``), ``train`` (any ``TrainConfig`` field) and ``backbone_params``
#: (any parameter of the backbone) are tables or lists checked on their own. Anything else is a mistake,
#: not a silent no-op.
GRID_TYPES = {
    "results": "text", "data_dir": "text", "k": "numbers", "seeds": "count", "backbone": "text", "jobs": "count",
    "vary_split": "bool", "epochs": "count", "batch_size": "count", "lr": "positive", "patience": "count0",
    "device": "text", "embed_dim": "count", "hidden": "counts", "search_rows": "count", "predictions": "bool",
    "executor": "text", "ray_address": "text", "save_model": "text", "stack_retrains": "bool",
}
GRID_KEYS = ("results", "data_dir", "methods", *list(GRID_TYPES)[2:], "matched_baselines", "set", "train",
             "backbone_params")
#: ``[grid]`` keys that are ``run``'s trainer flags, and the ``TrainConfig`` field each sets
TRAIN_KEYS = {"epochs": "max_epochs", "batch_size": "batch_size", "lr": "lr", "patience": "patience",
              "device": "device"}
#: ``[grid]`` keys that are backbone parameters (``run --embed-dim``; ``hidden`` as in the backbones)
BACKBONE_KEYS = ("embed_dim", "hidden")
DATASET_KEYS = ("raw", "rows", "generator_seed", "split_seed")
ABLATION_KEYS = ("method", "datasets", "params")
DEFAULT_SPLIT_SEED = 2024


class StudyError(ValueError):
    """A study file that cannot be run as written."""


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


#: what a value of each kind must be, and how an error says it
_KINDS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "text": (lambda v: isinstance(v, str) and v != "", "a non-empty string"),
    "bool": (lambda v: isinstance(v, bool), "true or false"),
    "count": (lambda v: _is_int(v) and v >= 1, "an integer ≥ 1"),
    "count0": (lambda v: _is_int(v) and v >= 0, "an integer ≥ 0"),
    "positive": (lambda v: _is_number(v) and v > 0, "a positive number"),
    "number": (_is_number, "a number"),
    "numbers": (lambda v: isinstance(v, list) and all(_is_number(x) for x in v), "a list of numbers"),
    "counts": (lambda v: isinstance(v, list) and all(_is_int(x) and x >= 1 for x in v), "a list of integers ≥ 1"),
}


def _kind_of_default(default: Any) -> str:
    """The kind a setting's value must be, judged from its default (a ``TrainConfig`` or backbone parameter)."""
    if isinstance(default, bool):
        return "bool"
    if isinstance(default, int):
        return "count0"
    if isinstance(default, float):
        return "number"
    if isinstance(default, (tuple, list)):
        return "counts"
    return "text"


def _check_value(path: Path, where: str, key: str, value: Any, kind: str) -> None:
    check, wanted = _KINDS[kind]
    if not check(value):
        raise StudyError(f"{path}: {where} {key} = {value!r}: must be {wanted}")


def _settings(path: Path, grid: dict[str, Any], backbone: str) -> tuple[TrainConfig, dict[str, Any]]:
    """The trainer settings and backbone parameters of ``[grid]``: its flat keys (as ``run``'s flags), its
    ``[grid.train]`` table (any ``TrainConfig`` field) and ``[grid.backbone_params]`` (any parameter of the
    backbone); one setting given twice is an error."""
    if backbone not in BACKBONES:
        raise StudyError(f"{path}: [grid] backbone = {backbone!r}: choose from: {', '.join(BACKBONES)}")
    tables = {"train": grid.get("train", {}), "backbone_params": grid.get("backbone_params", {})}
    for name, table in tables.items():
        if not isinstance(table, dict):
            raise StudyError(f"{path}: [grid] {name} must be a table, got {table!r}")
    train_fields = {spec.name: spec.default for spec in fields(TrainConfig)}
    signature = inspect.signature(BACKBONES[backbone]).parameters
    backbone_defaults = {name: spec.default for name, spec in signature.items() if name != "field_dims"}
    _check_keys(path, "[grid.train]", tables["train"], tuple(train_fields))
    _check_keys(path, "[grid.backbone_params]", tables["backbone_params"], tuple(backbone_defaults))
    train = dict(tables["train"])
    params = dict(tables["backbone_params"])
    for key, value in grid.items():
        if key not in TRAIN_KEYS and key not in BACKBONE_KEYS:
            continue
        target, name = (train, TRAIN_KEYS[key]) if key in TRAIN_KEYS else (params, key)
        if name in target:
            raise StudyError(f"{path}: [grid] {key} is also set in its table; set it once")
        target[name] = value
    for where, table, defaults in (("[grid.train]", train, train_fields),
                                   ("[grid.backbone_params]", params, backbone_defaults)):
        for key, value in table.items():
            _check_value(path, where, key, value, _kind_of_default(defaults[key]))
    if "hidden" in params:
        params["hidden"] = tuple(params["hidden"])
    return TrainConfig(**train), params


@dataclass
class Study:
    results: Path
    data_dir: Path
    methods: list[str]
    k: list[float]
    seeds: int
    backbone: str
    jobs: int
    datasets: dict[str, dict[str, Any]]
    ablations: list[dict[str, Any]] = field(default_factory=list)
    vary_split: bool = True
    matched_baselines: tuple[str, ...] = ()
    #: ``[grid.set]``: method hyper-parameters of every grid of the study (as ``run --set``)
    method_params: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: trainer settings: ``epochs``, ``batch_size``, ``lr``, ``patience``, ``device`` and ``[grid.train]``
    train_config: TrainConfig = field(default_factory=TrainConfig)
    #: backbone parameters: ``embed_dim``, ``hidden`` and ``[grid.backbone_params]``
    backbone_params: dict[str, Any] = field(default_factory=dict)
    #: training rows each search sees (``run --search-rows``); None: all
    search_rows: int | None = None
    #: ``run --stack-retrains``; default ``fmpbench.stacking.STACK_BY_DEFAULT``
    stack_retrains: bool = STACK_BY_DEFAULT
    save_predictions: bool = True
    executor: str = "local"
    ray_address: str | None = None
    #: where finished retrains' models are saved (``run --save-model``)
    model_dir: str | None = None


def _check_keys(path: Path, where: str, table: dict[str, Any], allowed: Sequence[str]) -> None:
    for key in table:
        if key not in allowed:
            raise StudyError(f"{path}: unknown key '{key}' in {where}; allowed: {', '.join(allowed)}")


def _method_names(path: Path, key: str, value: object) -> list[str]:
    """Method names from a list of strings or, as ``run --methods a,b`` takes them, one comma-separated
    string (a string used to be read as a list of its letters: "unknown method 'n'")."""
    if isinstance(value, str):
        return [name.strip() for name in value.split(",") if name.strip()]
    if isinstance(value, list) and all(isinstance(name, str) for name in value):
        return value
    raise StudyError(f"{path}: [grid] {key} = {value!r}: give a list of method names or one comma-separated string")


def load_study(path: Path) -> Study:
    """Parse and validate a study file; every mistake (an unknown key included) is a one-line ``StudyError``."""
    try:
        raw = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise StudyError(f"cannot read study file {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise StudyError(f"{path}: invalid TOML: {exc}") from None
    _check_keys(path, "the file", raw, ("grid", "datasets", "ablation"))
    grid = raw.get("grid", {})
    _check_keys(path, "[grid]", grid, GRID_KEYS)
    for key, kind in GRID_TYPES.items():
        if key in grid:
            _check_value(path, "[grid]", key, grid[key], kind)
    if grid.get("executor", "local") not in EXECUTORS:
        raise StudyError(f"{path}: [grid] executor = {grid['executor']!r}: choose from: {', '.join(EXECUTORS)}")
    train_config, backbone_params = _settings(path, grid, str(grid.get("backbone", "mlp")))
    known = available_methods()
    methods = known if grid.get("methods", "all") == "all" else _method_names(path, "methods", grid["methods"])
    ablations = list(raw.get("ablation", []))
    for ablation in ablations:
        _check_keys(path, "[[ablation]]", ablation, ABLATION_KEYS)
    baselines = tuple(_method_names(path, "matched_baselines", grid.get("matched_baselines", [])))
    for name in [*methods, *baselines, *(a.get("method", "") for a in ablations)]:
        if name not in known:
            raise StudyError(f"{path}: unknown method '{name}'; choose from: {', '.join(known)}")
    try:
        method_params = check_method_params(grid.get("set", {}), "[grid.set]")
        for ablation in ablations:
            for params in ablation.get("params", []):
                check_method_params({ablation["method"]: params}, "[[ablation]] params")
    except ValueError as exc:
        raise StudyError(f"{path}: {exc}") from None
    datasets = raw.get("datasets", {})
    if not datasets:
        raise StudyError(f"{path}: no [datasets.*] tables")
    own = custom_datasets(grid.get("data_dir", ".fmpbench-data"))  # tables prepared with `prepare tabular`
    for name, spec in datasets.items():
        if name not in DATASETS and name not in own:
            raise StudyError(f"{path}: unknown dataset '{name}'; choose from: {', '.join([*DATASETS, *own])}")
        _check_keys(path, f"[datasets.{name}]", spec, DATASET_KEYS if name in DATASETS else ("split_seed",))
    return Study(
        results=Path(grid.get("results", "results/study")),
        data_dir=Path(grid.get("data_dir", ".fmpbench-data")),
        methods=methods,
        k=[float(v) for v in grid.get("k", [0.25, 0.5, 0.75])],
        seeds=int(grid.get("seeds", 5)),
        backbone=str(grid.get("backbone", "mlp")),
        jobs=int(grid.get("jobs", 1)),
        datasets=datasets,
        ablations=ablations,
        vary_split=bool(grid.get("vary_split", True)),
        matched_baselines=baselines,
        method_params=method_params,
        train_config=train_config,
        backbone_params=backbone_params,
        search_rows=grid.get("search_rows"),
        stack_retrains=bool(grid.get("stack_retrains", STACK_BY_DEFAULT)),
        save_predictions=bool(grid.get("predictions", True)),
        executor=str(grid.get("executor", "local")),
        ray_address=grid.get("ray_address"),
        model_dir=grid.get("save_model"),
    )


def _seed_data(name: str, spec: dict[str, Any], study: Study) -> dict[int, PreparedData]:
    """Each seed's data: one split per seed with ``vary_split``, else the same split for every seed."""
    base_seed = int(spec.get("split_seed", DEFAULT_SPLIT_SEED))
    if "raw" in spec:
        base = prepare(name, Path(spec["raw"]), study.data_dir, split_seed=base_seed)
    elif name not in DATASETS:  # a table of your own, prepared under the study's data_dir
        base = with_split_seed(get_dataset(name, study.data_dir), base_seed, study.data_dir)
    else:
        base = get_dataset(name, n_rows=spec.get("rows"), seed=int(spec.get("generator_seed", 0)))
        base = with_split_seed(base, base_seed)
    if not study.vary_split:
        return {seed: base for seed in range(study.seeds)}
    return {seed: with_split_seed(base, base_seed + seed, study.data_dir) for seed in range(study.seeds)}


def _split_note(data: PreparedData) -> str:
    if data.given_split:
        return " (all on the split of its given train/valid/test files)"
    return " (each its own split)"


def run_study(study: Study, stream: Any = sys.stderr, only: Sequence[str] | None = None, dry_run: bool = False) -> int:
    """Run every dataset's grid (or those in ``only``) and every ablation; returns the number of failed runs.

    ``dry_run`` prints each grid's runs (:func:`fmpbench.plan.print_plan`) to stdout instead, training nothing.
    """
    failed = 0
    for name, spec in study.datasets.items():
        if only and name not in only:
            continue
        by_seed = _seed_data(name, spec, study)
        data = by_seed[0]
        print(
            f"== {name}: {data.data_source}, {data.num_fields} fields, {len(data.train):,} train rows, "
            f"{study.seeds} seeds{_split_note(data) if study.vary_split else ''}",
            file=stream,
        )
        ks = resolve_ks(study.k, data.num_fields)
        variants: list[tuple[list[str], dict[str, dict[str, Any]]]] = [(study.methods, study.method_params)]
        for ablation in study.ablations:
            if name in ablation.get("datasets", []):
                method = ablation["method"]
                variants += [([method], {method: {**study.method_params.get(method, {}), **p}})
                             for p in ablation["params"]]
        for index, (methods, method_params) in enumerate(variants):
            config = ExperimentConfig(
                dataset=name,
                data_dir=str(study.data_dir) if "raw" in spec or name not in DATASETS else None,
                n_rows=spec.get("rows"),
                backbone=study.backbone,
                backbone_params=study.backbone_params,
                train_config=study.train_config,
                method_params=method_params,
                save_predictions=study.save_predictions,
                search_rows=study.search_rows,
                matched_baselines=study.matched_baselines if index == 0 else (),
                model_dir=study.model_dir,
            )
            tasks = build_tasks(methods, list(range(study.seeds)), ks)
            if dry_run:
                print_plan(grid_plan(tasks, config, by_seed, study.results), sys.stdout)
                continue
            outcome = run_grid(tasks, config, by_seed, study.results, resume=True, jobs=study.jobs,
                               executor=study.executor, ray_address=study.ray_address, stream=stream,
                               stack_retrains=study.stack_retrains)
            failed += len(outcome.failed)
    return failed
