"""The two references every honest benchmark needs: all fields, and a random ranking."""

from __future__ import annotations

import numpy as np

from fmpbench.data.prepared import PreparedData
from fmpbench.selectors.base import SearchContext, Selector
from fmpbench.selectors.registry import register


@register
class NoSelection(Selector):
    """All fields kept: the unpruned model every method is compared with."""

    name = "none"
    search_cost = 0.0
    keeps_all_fields = True

    def fit(self, data: PreparedData, context: SearchContext | None = None) -> NoSelection:
        self.set_scores(data, np.ones(data.num_fields))
        return self


@register
class RandomSelection(Selector):
    """Uniformly random field scores from the run's seed: the floor every method must beat."""

    name = "random"
    search_cost = 0.0

    def fit(self, data: PreparedData, context: SearchContext | None = None) -> RandomSelection:
        seed = (context or SearchContext()).seed
        self.set_scores(data, np.random.default_rng(seed).random(data.num_fields))
        return self
