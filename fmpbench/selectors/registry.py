"""The method registry: filled by ``@register`` and by the ``fmpbench.selectors`` entry-point group.

A package outside this repository declares, in its ``pyproject.toml``::

    [project.entry-points."fmpbench.selectors"]
    mymethod = "mypkg.module:MySelector"

and ``python -m fmpbench run --methods mymethod`` finds it after ``pip install``.
"""

from __future__ import annotations

from importlib.metadata import entry_points

from fmpbench.selectors.base import Selector

ENTRY_POINT_GROUP = "fmpbench.selectors"
_REGISTRY: dict[str, type[Selector]] = {}
_entry_points_loaded = False


def register(cls: type[Selector]) -> type[Selector]:
    """Class decorator adding a ``Selector`` subclass under its ``name``."""
    if not cls.name:
        raise ValueError(f"{cls.__qualname__} has no 'name'")
    existing = _REGISTRY.get(cls.name)
    if existing is not None and existing is not cls:
        raise ValueError(f"method name '{cls.name}' is already taken by {existing.__qualname__}")
    _REGISTRY[cls.name] = cls
    return cls


def _load_entry_points() -> None:
    global _entry_points_loaded
    if _entry_points_loaded:
        return
    _entry_points_loaded = True
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        cls = ep.load()
        if not (isinstance(cls, type) and issubclass(cls, Selector)):
            raise TypeError(f"entry point '{ep.name}' ({ep.value}) is not a Selector subclass")
        register(cls)


def available_methods() -> list[str]:
    """Every registered method name, built-in ones first in registration order."""
    _load_entry_points()
    return list(_REGISTRY)


def get_selector_class(name: str) -> type[Selector]:
    _load_entry_points()
    if name not in _REGISTRY:
        raise ValueError(f"unknown method '{name}'; choose from: {', '.join(_REGISTRY)}")
    return _REGISTRY[name]


def make_selector(name: str, **params: object) -> Selector:
    return get_selector_class(name)(**params)
