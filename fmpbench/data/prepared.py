"""The prepared-data contract shared by loaders, the trainer and every selector.

All fields are categorical after preprocessing: ``X[:, f]`` holds *per-field local ids* in
``[0, field_dims[f])`` where id 0 is the out-of-vocabulary / unseen bucket. Each split is stored
contiguously so that the trainer builds batches by slicing or gathering whole index ranges.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fmpbench.data.errors import DataError

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
    #: interaction pairs: fields that matter only together
    pairs: tuple[tuple[str, str], ...] = ()
    #: redundant copy -> its source field
    copies: dict[str, str] = field(default_factory=dict)

    @property
    def strong(self) -> list[str]:
        return [f for f, r in self.roles.items() if r == "strong"]

    @property
    def informative(self) -> list[str]:
        return [f for f, r in self.roles.items() if r in ("strong", "weak", "interaction")]

    def score(self, selected: list[str]) -> dict[str, float]:
        """How well a selection recovers the planted structure, and how much of its budget it wastes.

        ``recall_informative`` / ``recall_strong``: share of those fields kept; ``pair_recall``: share of
        interaction pairs kept *whole* (one member alone carries nothing); ``wasted_on_copies``: kept
        fields whose signal another kept field already carries (a copy beside its source or another
        copy of it); ``wasted_on_noise``: kept noise and high-cardinality noise fields;
        ``budget_wasted``: both as a share of the selection.
        """
        kept = set(selected)
        informative, strong = set(self.informative), set(self.strong)
        signals: dict[str, int] = {}
        for name in kept:
            source = self.copies.get(name, name)
            signals[source] = signals.get(source, 0) + 1
        copies = sum(count - 1 for source, count in signals.items() if source in self.roles)
        noise = sum(self.roles.get(f) in ("noise", "high_card_noise") for f in kept)
        pairs = [a in kept and b in kept for a, b in self.pairs]
        nan = float("nan")
        return {
            "recall_informative": len(kept & informative) / len(informative) if informative else nan,
            "recall_strong": len(kept & strong) / len(strong) if strong else nan,
            "pair_recall": float(np.mean(pairs)) if pairs else nan,
            "wasted_on_copies": float(copies),
            "wasted_on_noise": float(noise),
            "budget_wasted": (copies + noise) / len(kept) if kept else nan,
        }


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

    def check_trainable(self) -> None:
        """Refuse data no run can use, before any training: an empty split, or a split with one class.

        Training stops early on validation AUC and every record reports test AUC; neither exists
        without both classes, and an empty split divides by zero. Without this check such data gave
        records marked ``ok`` with a NaN AUC, or library errors from scikit-learn.
        """
        for split_name, split in (("train", self.train), ("valid", self.valid), ("test", self.test)):
            n = len(split)
            if n == 0:
                raise DataError(f"dataset {self.name}: the {split_name} split is empty (0 rows); nothing to train on")
            positives = int(np.count_nonzero(np.asarray(split.y) > 0.5))
            if positives in (0, n):
                raise DataError(
                    f"dataset {self.name}: the {split_name} split has a single class (all {n} labels are "
                    f"{int(positives == n)}); training and AUC need both clicks and non-clicks"
                )

    @property
    def split_seed(self) -> int | None:
        """The seed of the random split (None for data prepared before it was recorded)."""
        value = (self.info.get("params") or {}).get("split_seed", self.info.get("split_seed"))
        return None if value is None else int(value)

    @property
    def given_split(self) -> bool:
        """Prepared from given train/valid/test files (``prepare tabular --valid --test``): that split is the
        data's, and ``--vary-split`` keeps it for every seed."""
        return (self.info.get("params") or {}).get("split") == "given"

    @property
    def family(self) -> str:
        """A fingerprint of the data *up to its split*: the same raw files (or generator) and every
        preparation parameter except the split seed. A study whose seeds each draw their own split
        compares those runs as one dataset; anything else that differs is a different dataset."""
        params = {k: v for k, v in (self.info.get("params") or {}).items() if k != "split_seed"}
        raw = {role: r.get("sha256") for role, r in (self.info.get("raw") or {}).items() if isinstance(r, dict)}
        if not params and not raw:
            return self.fingerprint
        key = {"name": self.name, "source": self.data_source, "raw": raw, "params": params}
        return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:16]

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
