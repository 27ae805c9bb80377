"""Field-selection methods: the ``Selector`` API, the registry and the built-in methods."""

# registration order = listing order: references, the study's method, gate methods, filter methods
from fmpbench.selectors import reference, lightfmp, autofield, adafs, lpfs, mvfs, lasso, gbdt, rf, pca  # noqa: F401, I001
# ERASE's further methods and newer (issue 13): model-based scorers, then gates
from fmpbench.selectors import shark, sfs, permutation, optfs, shufflegate  # noqa: F401, I001
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
