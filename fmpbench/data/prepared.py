"""The prepared-data contract shared by loaders, the trainer and every selector.

All fields are categorical after preprocessing: ``X[:, f]`` holds *per-field local ids* in
``[0, field_dims[f])`` where id 0 is the out-of-vocabulary / unseen bucket. Each split is stored
contiguously so that the trainer builds batches by slicing or gathering whole index ranges.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

OOV_ID = 0


@dataclass(frozen=True)
class Split:
    """One split: ``X`` int32 ``[n, F]`` (possibly memory-mapped), ``y`` float32 ``[n]`` in {0, 1}."""

    X: np.ndarray
    y: np.ndarray

    def __len__(self) -> int:
        return int(self.y.shape[0])


@dataclass(frozen=True)
class GroundTruth:
    """Planted structure of a synthetic dataset, used to score a method's selection.

    ``roles`` maps each field name to one of: ``strong``, ``weak``, ``interaction``, ``redundant``,
    ``high_card_noise``, ``noise``. ``strong`` are the strongly informative fields; ``informative``
    are all fields that carry label signal on their own or through an interaction
    (strong + weak + interaction), excluding redundant copies.
    """

    roles: dict[str, str]

    @property
    def strong(self) -> list[str]:
        return [f for f, r in self.roles.items() if r == "strong"]

    @property
    def informative(self) -> list[str]:
        return [f for f, r in self.roles.items() if r in ("strong", "weak", "interaction")]


@dataclass(frozen=True)
class PreparedData:
    """A dataset ready for training: vocabularies fitted on train only, three contiguous splits."""

    name: str
    field_names: list[str]
    field_dims: list[int]
    train: Split
    valid: Split
    test: Split
    fingerprint: str
    data_source: str
    info: dict[str, Any] = field(default_factory=dict)
    truth: GroundTruth | None = None

    @property
    def num_fields(self) -> int:
        return len(self.field_names)
