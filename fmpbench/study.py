"""A study: one documented grid over several datasets (plus ablations), read from a TOML file.

The file under version control (``configs/study.toml``) is the record of what the committed
results are: datasets and their raw files, methods, budgets, seeds, backbone and ablations.
Every dataset is prepared (or taken from the cache), then run with ``--resume`` semantics, so an
interrupted study continues where it stopped.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

from fmpbench.data import DATASETS, get_dataset, prepare
from fmpbench.grid import build_tasks, resolve_ks, run_grid
from fmpbench.protocol import ExperimentConfig
from fmpbench.selectors import available_methods


class StudyError(ValueError):
    """A study file that cannot be run as written."""


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


def load_study(path: Path) -> Study:
    """Parse and validate a study file; every mistake is a one-line ``StudyError``."""
    try:
        raw = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise StudyError(f"cannot read study file {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise StudyError(f"{path}: invalid TOML: {exc}") from None
    grid = raw.get("grid", {})
    known = available_methods()
    methods = known if grid.get("methods", "all") == "all" else list(grid["methods"])
    for name in [*methods, *(a.get("method", "") for a in raw.get("ablation", []))]:
        if name not in known:
            raise StudyError(f"{path}: unknown method '{name}'; choose from: {', '.join(known)}")
    datasets = raw.get("datasets", {})
    if not datasets:
        raise StudyError(f"{path}: no [datasets.*] tables")
    for name in datasets:
        if name not in DATASETS:
            raise StudyError(f"{path}: unknown dataset '{name}'; choose from: {', '.join(DATASETS)}")
    return Study(
        results=Path(grid.get("results", "results/study")),
        data_dir=Path(grid.get("data_dir", ".fmpbench-data")),
        methods=methods,
        k=[float(v) for v in grid.get("k", [0.25, 0.5, 0.75])],
        seeds=int(grid.get("seeds", 3)),
        backbone=str(grid.get("backbone", "mlp")),
        jobs=int(grid.get("jobs", 1)),
        datasets=datasets,
        ablations=list(raw.get("ablation", [])),
    )


def run_study(study: Study, stream: Any = sys.stderr) -> int:
    """Run every dataset's grid and every ablation; returns the number of failed runs."""
    failed = 0
    for name, spec in study.datasets.items():
        if "raw" in spec:
            prepare(name, Path(spec["raw"]), study.data_dir)
            data = get_dataset(name, study.data_dir, mmap=True)
        else:
            data = get_dataset(name, n_rows=spec.get("rows"))
        print(f"== {name}: {data.data_source}, {data.num_fields} fields, {len(data.train):,} train rows", file=stream)
        ks = resolve_ks(study.k, data.num_fields)
        variants: list[tuple[list[str], dict[str, dict[str, Any]]]] = [(study.methods, {})]
        for ablation in study.ablations:
            if name in ablation.get("datasets", []):
                variants += [([ablation["method"]], {ablation["method"]: p}) for p in ablation["params"]]
        for methods, method_params in variants:
            config = ExperimentConfig(
                dataset=name,
                data_dir=str(study.data_dir) if "raw" in spec else None,
                n_rows=spec.get("rows"),
                backbone=study.backbone,
                method_params=method_params,
            )
            tasks = build_tasks(methods, list(range(study.seeds)), ks)
            outcome = run_grid(tasks, config, data, study.results, resume=True, jobs=study.jobs, stream=stream)
            failed += len(outcome.failed)
    return failed
