"""The methods ``--methods`` accepts, with their summaries and result rows, read without importing them.

Importing a selector module imports torch (seconds); ``list methods`` should answer at once. So the
built-in methods are read from the source with ``ast``: the modules that ``fmpbench/selectors/__init__.py``
imports, in that order (registration order), and in them the ``@register`` classes with their ``name``,
``native_name``, ``retrain_name`` and docstring. The docstring stays each method's one summary, and
``tests/test_first_contact.py`` checks this reading against the imported registry. Installed plug-ins
can only be described by importing them, which happens only when some are installed.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

SELECTORS = Path(__file__).resolve().parent / "selectors"
PACKAGE = "fmpbench.selectors"
ENTRY_POINT_GROUP = "fmpbench.selectors"
_NAMES = ("name", "native_name", "retrain_name")


@dataclass(frozen=True)
class MethodInfo:
    """One ``--methods`` name: its summary (the class docstring's first paragraph) and result rows."""

    name: str
    summary: str
    rows: tuple[str, ...]
    plugin: bool = False


def summary_of(doc: str | None) -> str:
    """The first paragraph of a docstring on one line."""
    return " ".join((doc or "").strip().split("\n\n")[0].split())


def rows_of(name: str, native_name: str | None, retrain_name: str | None) -> tuple[str, ...]:
    """The result rows a method yields: its top-k retrain, and its own pipeline when it has one."""
    return (retrain_name or name, native_name) if native_name else (retrain_name or name,)


@dataclass
class _Class:
    bases: list[str]
    constants: dict[str, str | None]
    doc: str | None
    registered: bool


def _classes(module: str) -> dict[str, _Class]:
    tree = ast.parse((SELECTORS / f"{module}.py").read_text(encoding="utf-8"))
    found = {}
    for node in tree.body:
        if not isinstance(node, ast.ClassDef):
            continue
        constants: dict[str, str | None] = {}
        for item in node.body:
            target = item.targets[0] if isinstance(item, ast.Assign) and len(item.targets) == 1 else None
            target = item.target if isinstance(item, ast.AnnAssign) else target
            value = getattr(item, "value", None)
            if isinstance(target, ast.Name) and target.id in _NAMES and isinstance(value, ast.Constant):
                constants[target.id] = value.value
        registered = any(isinstance(d, ast.Name) and d.id == "register" for d in node.decorator_list)
        bases = [b.id for b in node.bases if isinstance(b, ast.Name)]
        found[node.name] = _Class(bases, constants, ast.get_docstring(node, clean=False), registered)
    return found


def _builtin_modules() -> list[str]:
    tree = ast.parse((SELECTORS / "__init__.py").read_text(encoding="utf-8"))
    return [
        alias.name
        for node in tree.body
        if isinstance(node, ast.ImportFrom) and node.module == PACKAGE
        for alias in node.names
    ]


def builtin_methods() -> list[MethodInfo]:
    """The built-in methods in registration order, read from the source."""
    modules = _builtin_modules()
    parsed = {module: _classes(module) for module in dict.fromkeys(["base", "gates", *modules])}
    classes = {name: cls for module_classes in parsed.values() for name, cls in module_classes.items()}

    def constant(cls: _Class, attribute: str) -> str | None:
        if attribute in cls.constants:
            return cls.constants[attribute]
        return next((constant(classes[b], attribute) for b in cls.bases if b in classes), None)

    methods = []
    for module in modules:
        for cls in parsed[module].values():
            if cls.registered:
                name = str(constant(cls, "name"))
                rows = rows_of(name, constant(cls, "native_name"), constant(cls, "retrain_name"))
                methods.append(MethodInfo(name, summary_of(cls.doc), rows))
    return methods


def method_catalog() -> list[MethodInfo]:
    """Built-in methods, then installed plug-ins (these are imported, so only when there are some)."""
    methods = builtin_methods()
    if not list(metadata.entry_points(group=ENTRY_POINT_GROUP)):
        return methods
    from fmpbench.selectors import registry

    for name in registry.plugin_methods():
        cls = registry.get_selector_class(name)
        methods.append(
            MethodInfo(name, summary_of(cls.__doc__), rows_of(name, cls.native_name, cls.retrain_name), True)
        )
    return methods
