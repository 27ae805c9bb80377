"""What a grid will do, before it does it: the method parameters it is given and the runs it will make.

``run --set method.param=value`` and a study's ``[grid.set]`` table go through :func:`parse_set` and
:func:`check_method_params`, so both accept exactly the constructor parameters of each selector and
reject anything else before any work. ``run --dry-run`` and ``study --dry-run`` print
:func:`grid_plan` — every run id with its row, k, seed and whether a record of it is already
finished — and train nothing.
"""

from __future__ import annotations

import inspect
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

from fmpbench.grid import SeedData, data_for
from fmpbench.protocol import ExperimentConfig, Task, task_rows
from fmpbench.results import finished_run_ids
from fmpbench.selectors import available_methods, get_selector_class


def parse_value(text: str) -> Any:
    """A TOML scalar or array (``0.2``, ``true``, ``[4, 6]``, ``"user"``), a JSON value, else the bare text."""
    try:
        return tomllib.loads(f"value = {text}")["value"]
    except tomllib.TOMLDecodeError:
        pass
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def parse_set(items: list[str]) -> dict[str, dict[str, Any]]:
    """``["lightfmp.subset=0.2", ...]`` → ``{"lightfmp": {"subset": 0.2}}``; a malformed item is a ValueError."""
    out: dict[str, dict[str, Any]] = {}
    for item in items:
        name, sep, value = item.partition("=")
        method, dot, param = name.strip().partition(".")
        if not sep or not dot or not method or not param:
            raise ValueError(f"--set expects METHOD.PARAM=VALUE (e.g. lightfmp.subset=0.2), got '{item}'")
        out.setdefault(method, {})[param.strip()] = parse_value(value.strip())
    return out


def check_method_params(method_params: Mapping[str, Any], where: str = "--set") -> dict[str, dict[str, Any]]:
    """Each method known and each parameter one of its constructor's; the selector is built once so that
    its own checks of a value run now, not in the middle of a grid. Returns the table as plain dicts."""
    known = available_methods()
    checked: dict[str, dict[str, Any]] = {}
    for method, params in method_params.items():
        if method not in known:
            raise ValueError(f"{where}: unknown method '{method}'; choose from: {', '.join(known)}")
        if not isinstance(params, Mapping):
            raise ValueError(f"{where}: '{method}' needs a table of parameters, got {params!r}")
        cls = get_selector_class(method)
        allowed = cls._get_param_names()
        for param in params:
            if param not in allowed:
                raise ValueError(f"{where}: {method} has no parameter '{param}'; it has: {', '.join(allowed)}")
        hints = inspect.signature(cls.__init__).parameters
        for param, value in params.items():
            annotation = hints[param].annotation
            text = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", str(annotation))
            if annotation is not inspect.Parameter.empty and not _fits(value, text):
                raise ValueError(f"{where}: {method}.{param} = {value!r} does not fit its type '{text}'")
        try:
            cls(**params)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{where}: {method} rejects {dict(params)}: {exc}") from None
        checked[method] = dict(params)
    return checked


#: the words of a type annotation that admit a value of each parsed type (an int fits a float)
_ADMITS = {bool: ("bool",), int: ("int", "float"), float: ("float",), str: ("str", "Literal"),
           tuple: ("tuple", "list", "Sequence"),
           list: ("tuple", "list", "Sequence"), dict: ("dict", "Mapping"), type(None): ("None", "Optional")}


def _fits(value: Any, annotation: str) -> bool:
    """Whether a parsed ``--set`` value can be what ``annotation`` (a constructor's hint, as text) declares."""
    words = set(re.findall(r"[A-Za-z_]+", annotation))
    return "Any" in words or bool(words & set(_ADMITS.get(type(value), ())))


@dataclass(frozen=True)
class PlannedRun:
    """One result row of a grid: its run id, row name, k, seed, and whether a finished record exists."""

    run_id: str
    row: str
    k: int
    seed: int
    finished: bool


def grid_plan(tasks: list[Task], config: ExperimentConfig, data: SeedData, results_dir: Path) -> list[PlannedRun]:
    """Every run of the grid in execution order, nothing trained (``--resume`` skips the finished ones)."""
    done = finished_run_ids(results_dir) if Path(results_dir).is_dir() else set()
    return [PlannedRun(row.run_id, row.name, row.k, task.seed, row.run_id in done)
            for task in tasks for row in task_rows(task, config, data_for(data, task.seed))]


def print_plan(plan: list[PlannedRun], stream: TextIO) -> None:
    width = max((len(run.row) for run in plan), default=4)
    print(f"{'run_id':16}  {'row':{width}}  {'k':>4}  {'seed':>4}  status", file=stream)
    for run in plan:
        status = "finished" if run.finished else "to run"
        print(f"{run.run_id:16}  {run.row:{width}}  {run.k:>4}  {run.seed:>4}  {status}", file=stream)
    done = sum(run.finished for run in plan)
    print(f"{len(plan)} runs: {done} finished, {len(plan) - done} to run (dry run: nothing was trained)", file=stream)
