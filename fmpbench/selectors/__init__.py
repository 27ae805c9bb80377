"""Field-selection methods: the ``Selector`` API, the registry and the built-in methods."""

from fmpbench.selectors import reference, lasso  # noqa: F401, I001  (registration order = listing order)
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
