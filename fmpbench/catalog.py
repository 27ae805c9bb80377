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
import functools
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


_NO_INIT = object()


def _init_defaults(node: ast.ClassDef) -> dict[str, object] | None | object:
    """The keyword defaults of a class's own ``__init__`` as values; None when one is not a literal, and
    ``_NO_INIT`` when the class inherits its ``__init__``."""
    init = next((item for item in node.body if isinstance(item, ast.FunctionDef) and item.name == "__init__"), None)
    if init is None:
        return _NO_INIT
    args = init.args.args[1:] + init.args.kwonlyargs
    defaults = [None] * (len(init.args.args) - 1 - len(init.args.defaults)) + list(init.args.defaults)
    defaults += list(init.args.kw_defaults)
    try:
        pairs = zip(args, defaults, strict=True)
        return {arg.arg: ast.literal_eval(value) for arg, value in pairs if value is not None}
    except ValueError:
        return None


@functools.cache
def builtin_defaults() -> dict[str, dict[str, object]]:
    """Every built-in method's constructor defaults, read from the source like :func:`builtin_methods` (the
    report labels ablation variants with them without importing torch); a method whose defaults are not
    all literals is left out. ``tests/test_export.py`` checks them against ``Selector.get_params()``."""
    nodes: dict[str, ast.ClassDef] = {}
    registered: dict[str, str] = {}
    for module in dict.fromkeys(["base", "gates", *_builtin_modules()]):
        tree = ast.parse((SELECTORS / f"{module}.py").read_text(encoding="utf-8"))
        nodes.update({node.name: node for node in tree.body if isinstance(node, ast.ClassDef)})
        for class_name, info in _classes(module).items():
            if info.registered and info.constants.get("name"):
                registered[class_name] = str(info.constants["name"])

    def defaults(class_name: str) -> dict[str, object] | None:
        found = _init_defaults(nodes[class_name])
        if found is not _NO_INIT:
            return found  # type: ignore[return-value]
        bases = [b.id for b in nodes[class_name].bases if isinstance(b, ast.Name) and b.id in nodes]
        return defaults(bases[0]) if bases else {}

    out = {name: defaults(class_name) for class_name, name in registered.items()}
    return {name: found for name, found in out.items() if found is not None}


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
