"""The ``Selector`` API (scikit-learn style) and the context a search runs in.

A selector only *scores* fields; ``get_support(k)`` turns the scores into exactly k kept fields, so
one search serves every budget k. ``__init__`` stores hyper-parameters only; fitted state ends in
``_``. Randomness comes from ``context.seed`` so that the harness controls seeds for every method.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted

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


class Selector(BaseEstimator):
    """Base class of every field-selection method: score each field, higher = keep.

    Subclasses set ``name`` (the ``--methods`` name), store their hyper-parameters in ``__init__``
    (keyword arguments with defaults, each saved under the same attribute name, nothing else) and
    implement :meth:`fit`, which calls :meth:`set_scores` once and returns ``self``. The harness then
    keeps the top-k fields for every budget k (:meth:`get_support`) and retrains a fresh backbone on
    them; the selector never sees the test split.

    What ``fit(data, context)`` receives:

    ``data`` — a :class:`fmpbench.data.PreparedData`; a search may read only these members:

    * ``data.train.X`` — int32 array ``[n_train, F]`` of per-field ids in ``[0, field_dims[f])``
      (id 0 = out of vocabulary; possibly memory-mapped, so read-only);
      ``data.train.y`` — float32 ``[n_train]`` click labels in {0, 1};
    * ``data.valid.X`` / ``data.valid.y`` — the validation split, same layout: tune and stop on it;
    * ``data.field_dims`` — ``list[int]``, the vocabulary size of each field (including id 0);
    * ``data.field_names`` — ``list[str]``, one name per field; ``data.num_fields`` = F;
    * ``data.user_field`` — index of the field that identifies a user, or ``None``.

    ``data.test`` and ``data.truth`` (planted ground truth of ``synthetic``) are for the harness only.

    ``context`` — a :class:`SearchContext` (``None`` when called by hand: use ``SearchContext()``):

    * ``context.seed`` — the run's seed: draw every random number from it;
    * ``context.backbone`` / ``context.backbone_params`` — the backbone the harness retrains;
    * ``context.train_config`` — a :class:`fmpbench.training.TrainConfig` (epochs, batch size, lr,
      device, early-stopping patience);
    * ``context.device``, ``context.make_model(field_dims)``, ``context.trainer(hooks)`` and
      ``context.tensors(data)`` — for deep methods that train a gated backbone during the search.

    Methods that also produce a model through their own pipeline set ``native_name`` and implement
    :meth:`fit_native`; the harness then reports that pipeline as an extra row. A complete plug-in
    package is in ``examples/plugin/``.

    A ``Selector`` is a scikit-learn estimator (``get_params(deep)``, ``set_params``,
    ``sklearn.base.clone``, ``check_is_fitted``); :class:`fmpbench.FieldSelector` wraps one as a
    transformer of pandas DataFrames.
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

    def fit(self, data: PreparedData, context: SearchContext | None = None) -> Selector:
        raise NotImplementedError

    def set_scores(self, data: PreparedData, scores: Sequence[float] | np.ndarray) -> None:
        """Record the search's result: one finite float per field of ``data`` (higher = keep).

        Sets ``scores_`` (float64), ``n_features_in_`` and ``feature_names_in_``; call it once at the
        end of :meth:`fit`. A wrong length or a NaN is an error naming the method.
        """
        scores = np.asarray(scores, dtype=np.float64).ravel()
        if scores.shape != (data.num_fields,):
            raise ValueError(f"{self.name}: expected {data.num_fields} scores, got {scores.shape}")
        if not np.all(np.isfinite(scores)):
            raise ValueError(f"{self.name}: non-finite field scores {scores.tolist()}")
        self.scores_ = scores
        self.n_features_in_ = data.num_fields
        self.feature_names_in_ = list(data.field_names)

    _set_scores = set_scores  # the name used before set_scores was public; kept for existing plug-ins

    def ranking(self) -> np.ndarray:
        """Field indices from most to least important; ties go to the lower field index."""
        return np.lexsort((np.arange(len(self.scores_)), -self.scores_))

    def get_support(self, k: int) -> np.ndarray:
        """Indices (ascending) of exactly ``k`` top-scoring fields."""
        check_is_fitted(self)
        if not 1 <= k <= len(self.scores_):
            raise ValueError(f"k must be between 1 and {len(self.scores_)}, got {k}")
        return np.sort(self.ranking()[:k])

    def support(self, k: int, data: PreparedData, context: SearchContext) -> np.ndarray:
        """The k fields the harness keeps for budget k: ``get_support(k)`` of the one search, unless a
        method searches per budget (Light-FMP pretrains towards each k)."""
        return self.get_support(k)

    def selection_info(self, k: int, data: PreparedData, context: SearchContext) -> dict[str, Any]:
        """Which search produced the fields of budget k, recorded with that row (empty: the task's search)."""
        return {}

    def fit_native(self, k: int, data: PreparedData, context: SearchContext) -> NativeOutcome:
        raise NotImplementedError(f"{self.name} has no native pipeline")

    def __sklearn_is_fitted__(self) -> bool:
        return hasattr(self, "scores_")

    def describe(self) -> dict[str, Any]:
        """Anything a method wants in each run record besides its parameters (e.g. subsample size)."""
        return {}
