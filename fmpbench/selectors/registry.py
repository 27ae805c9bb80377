"""The method registry: filled by ``@register`` and by the ``fmpbench.selectors`` entry-point group.

A package outside this repository declares, in its ``pyproject.toml``::

    [project.entry-points."fmpbench.selectors"]
    mymethod = "mypkg.module:MySelector"

and ``python -m fmpbench run --methods mymethod`` finds it after ``pip install`` (a complete example
package is in ``examples/plugin/``). A plug-in that cannot be loaded is skipped with a one-line
warning naming its entry point: one broken package must not break every command.
"""

from __future__ import annotations

import logging
from importlib import metadata

from fmpbench.catalog import ENTRY_POINT_GROUP
from fmpbench.selectors.base import Selector

_REGISTRY: dict[str, type[Selector]] = {}
_PLUGINS: list[str] = []
_entry_points_loaded = False
log = logging.getLogger("fmpbench.selectors")


def register(cls: type[Selector]) -> type[Selector]:
    """Class decorator adding a ``Selector`` subclass under its ``name``."""
    if not cls.name:
        raise ValueError(f"{cls.__qualname__} has no 'name'")
    existing = _REGISTRY.get(cls.name)
    if existing is not None and existing is not cls:
        raise ValueError(f"method name '{cls.name}' is already taken by {existing.__qualname__}")
    _REGISTRY[cls.name] = cls
    return cls


def _load_plugin(ep: metadata.EntryPoint) -> type[Selector]:
    cls = ep.load()
    if not (isinstance(cls, type) and issubclass(cls, Selector)):
        raise TypeError(f"{cls!r} is not a Selector subclass")
    return register(cls)


def _load_entry_points() -> None:
    global _entry_points_loaded
    if _entry_points_loaded:
        return
    _entry_points_loaded = True
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        try:
            cls = _load_plugin(ep)
        except Exception as exc:  # noqa: BLE001 - any failure of third-party code is reported, not raised
            reason = " ".join(f"{type(exc).__name__}: {exc}".split())
            log.warning("fmpbench: warning: skipped plug-in '%s' (%s = %s): %s", ep.name, ep.name, ep.value, reason)
            continue
        if cls.name not in _PLUGINS:
            _PLUGINS.append(cls.name)


def available_methods() -> list[str]:
    """Every registered method name, built-in ones first in registration order."""
    _load_entry_points()
    return list(_REGISTRY)


def plugin_methods() -> list[str]:
    """The names that installed plug-ins (entry points) added to the registry."""
    _load_entry_points()
    return list(_PLUGINS)


def get_selector_class(name: str) -> type[Selector]:
    _load_entry_points()
    if name not in _REGISTRY:
        raise ValueError(f"unknown method '{name}'; choose from: {', '.join(_REGISTRY)}")
    return _REGISTRY[name]


def make_selector(name: str, **params: object) -> Selector:
    return get_selector_class(name)(**params)
