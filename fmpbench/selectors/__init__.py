"""Field-selection methods: the ``Selector`` API, the registry and the built-in methods."""

from fmpbench.selectors import lasso, reference  # noqa: F401  (registers the built-in methods)
from fmpbench.selectors.base import NativeOutcome, SearchContext, Selector
from fmpbench.selectors.registry import available_methods, get_selector_class, make_selector, register

__all__ = [
    "NativeOutcome",
    "SearchContext",
    "Selector",
    "available_methods",
    "get_selector_class",
    "make_selector",
    "register",
]
