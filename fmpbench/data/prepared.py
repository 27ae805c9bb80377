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

#: Field names that identify a user in the built-in datasets (MovieLens ``user_id``, Amazon's reviewer
#: ``user``). A dataset may also declare its own in ``info["user_field"]``.
USER_FIELD_NAMES = ("user_id", "user")


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

    @property
    def user_field(self) -> int | None:
        """Index of the field that identifies a user, or None when the data has none.

        User-grouped metrics (GAUC) and Light-FMP's activity-stratified pretraining subset need it;
        ``info["user_field"]`` (a field name) wins over the built-in names.
        """
        declared = self.info.get("user_field")
        for name in ([declared] if declared else USER_FIELD_NAMES):
            if name in self.field_names:
                return self.field_names.index(name)
        return None
