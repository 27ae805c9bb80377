"""The ``Selector`` API (scikit-learn style) and the context a search runs in.

A selector only *scores* fields; ``get_support(k)`` turns the scores into exactly k kept fields, so
one search serves every budget k. ``__init__`` stores hyper-parameters only; fitted state ends in
``_``. Randomness comes from ``context.seed`` so that the harness controls seeds for every method.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch

from fmpbench.data.prepared import PreparedData
from fmpbench.models import CTRModel, build_backbone
from fmpbench.training import SplitTensors, TrainConfig, Trainer, TrainHooks


@dataclass
class SearchContext:
    """What the harness hands a search: seed, backbone, trainer settings, device."""

    seed: int = 0
    backbone: str = "mlp"
    backbone_params: dict[str, Any] = field(default_factory=dict)
    train_config: TrainConfig = field(default_factory=TrainConfig)

    @property
    def device(self) -> torch.device:
        return torch.device(self.train_config.device)

    def make_model(self, field_dims: list[int], label_rate: float | None = None) -> CTRModel:
        """A fresh backbone, seeded so that the same seed gives the same initial weights.

        With ``label_rate`` the output starts at that click rate (see ``CTRModel.init_output_bias``).
        """
        torch.manual_seed(self.seed)
        model = build_backbone(self.backbone, field_dims, **self.backbone_params)
        if label_rate is not None:
            model.init_output_bias(label_rate)
        return model

    def trainer(self, hooks: TrainHooks | None = None) -> Trainer:
        return Trainer(self.train_config, hooks, seed=self.seed)

    def tensors(self, data: PreparedData, fields: np.ndarray | None = None) -> tuple[SplitTensors, SplitTensors]:
        """Train and validation splits on the device, restricted to ``fields`` when given."""
        return SplitTensors(data.train, self.device, fields), SplitTensors(data.valid, self.device, fields)


@dataclass
class NativeOutcome:
    """A model a method trained through its own pipeline (e.g. Light-FMP's pruned network)."""

    model: CTRModel
    fields: np.ndarray
    train_seconds: float
    epochs: int
    extra: dict[str, Any] = field(default_factory=dict)


class Selector:
    """Base class of every field-selection method.

    Subclasses set ``name``, store their hyper-parameters in ``__init__`` (keyword arguments with
    defaults, each saved under the same attribute name) and implement :meth:`fit`, which sets
    ``scores_`` (one float per field, higher = keep) and returns ``self``.

    Methods that also produce a model through their own pipeline set ``native_name`` and implement
    :meth:`fit_native`; the harness then reports that pipeline as an extra row.
    """

    name: ClassVar[str] = ""
    #: the result-row name of the method's own pipeline, when it has one (e.g. ``lightfmp``)
    native_name: ClassVar[str | None] = None
    #: the result-row name of the standard top-k retrain when a native pipeline also exists
    retrain_name: ClassVar[str | None] = None
    #: ``none`` keeps every field; the harness runs it once at k = F instead of once per k
    keeps_all_fields: ClassVar[bool] = False
    #: rough cost of :meth:`fit` in units of one retrain of the backbone (measured on the stand-ins);
    #: a grid starts its most expensive tasks first, so that no worker idles while one finishes late
    search_cost: ClassVar[float] = 1.0

    scores_: np.ndarray
    n_features_in_: int
    feature_names_in_: list[str]

    def get_params(self) -> dict[str, Any]:
        """Hyper-parameters as given to ``__init__`` (recorded with every run)."""
        sig = inspect.signature(type(self).__init__)
        named = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
        return {n: getattr(self, n) for n, p in sig.parameters.items() if n != "self" and p.kind in named}

    def fit(self, data: PreparedData, context: SearchContext | None = None) -> Selector:
        raise NotImplementedError

    def _set_scores(self, data: PreparedData, scores: np.ndarray) -> None:
        scores = np.asarray(scores, dtype=np.float64).ravel()
        if scores.shape != (data.num_fields,):
            raise ValueError(f"{self.name}: expected {data.num_fields} scores, got {scores.shape}")
        if not np.all(np.isfinite(scores)):
            raise ValueError(f"{self.name}: non-finite field scores {scores.tolist()}")
        self.scores_ = scores
        self.n_features_in_ = data.num_fields
        self.feature_names_in_ = list(data.field_names)

    def ranking(self) -> np.ndarray:
        """Field indices from most to least important; ties go to the lower field index."""
        return np.lexsort((np.arange(len(self.scores_)), -self.scores_))

    def get_support(self, k: int) -> np.ndarray:
        """Indices (ascending) of exactly ``k`` top-scoring fields."""
        if not hasattr(self, "scores_"):
            raise RuntimeError(f"{self.name}: call fit() before get_support()")
        if not 1 <= k <= len(self.scores_):
            raise ValueError(f"k must be between 1 and {len(self.scores_)}, got {k}")
        return np.sort(self.ranking()[:k])

    def fit_native(self, k: int, data: PreparedData, context: SearchContext) -> NativeOutcome:
        raise NotImplementedError(f"{self.name} has no native pipeline")

    def describe(self) -> dict[str, Any]:
        """Anything a method wants in each run record besides its parameters (e.g. subsample size)."""
        return {}

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({params})"
