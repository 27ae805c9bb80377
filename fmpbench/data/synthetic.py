"""Synthetic data with known ground truth, and schema-faithful stand-ins for the real datasets.

The real datasets may not be redistributed, so every code path must also run without them. Two
generators share one engine:

* ``make_synthetic``: a dataset whose label model is known field by field (strong, weak,
  interaction-only, redundant copy, high-cardinality noise, pure noise), so a method's selection can
  be scored for precision and recall.
* ``make_standin(name)``: a dataset with the field names a real loader produces for ``name`` (the
  schema is ``standin_fields`` in the dataset's own module, e.g. ``fmpbench.data.criteo``),
  scaled-down but realistic cardinalities, the real label rate and planted signal on a documented
  subset of fields. ``data_source`` says ``standin:<name>`` so results are never confused with real
  ones.

Label model: ``y ~ Bernoulli(sigmoid(b + sum_f scale_f * w_f[x_f] + sum_pairs beta * s[x_a] * t[x_b]))``.
Every field draws its values from a Zipf-like law, interaction fields included (real fields are
skewed; a uniform interaction field is the easy case). An interaction field's value vector ``s`` is
centred and scaled *under that field's own Zipf margin* (E[s] = 0, E[s²] = 1), so with independent
fields each interaction field alone has exactly zero first-order effect in the population: it can only
be found through its partner. Redundant fields are a deterministic relabelling (optionally a
coarsening) of their source field: picking both spends budget on one signal. A weak field's
``scale`` can put it near the noise floor. The bias ``b`` is tuned by bisection to hit the label rate.

Generator version 2 (this one) introduced Zipf margins for interaction fields, a second interaction
pair and a faint weak field; version 1 had uniform interaction fields and one pair.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import numpy as np

from fmpbench.data.prepared import GroundTruth, PreparedData, Split
from fmpbench.data.splits import SPLIT_NAMES, random_split, sequential_split
from fmpbench.data.vocab import encode_dense_columns

if TYPE_CHECKING:
    from fmpbench.data.spec import DatasetSpec

GENERATOR_VERSION = 2

ROLES = ("strong", "weak", "interaction", "redundant", "high_card_noise", "noise")


@dataclass(frozen=True)
class FieldSpec:
    """One generated field. ``source``/``coarsen`` only for ``redundant``; ``zipf`` is the exponent;
    ``scale`` multiplies the role's effect size (strong/weak only)."""

    name: str
    card: int
    role: str
    zipf: float = 1.1
    source: str | None = None
    coarsen: int = 1
    scale: float = 1.0


def truth_of(specs: tuple[FieldSpec, ...]) -> GroundTruth:
    """The planted structure of a schema: roles, interaction pairs (consecutive interaction fields, in
    schema order) and the source of each redundant copy."""
    inter = [s.name for s in specs if s.role == "interaction"]
    if len(inter) % 2:
        raise ValueError("interaction fields must come in pairs")
    return GroundTruth(
        roles={s.name: s.role for s in specs},
        pairs=tuple(zip(inter[::2], inter[1::2], strict=True)),
        copies={s.name: s.source for s in specs if s.role == "redundant" and s.source},
    )


# --------------------------------------------------------------------------------------------
# Schemas
# --------------------------------------------------------------------------------------------

# Fixed, scrambled order so that no method gains from the position of a field (e.g. by stable
# tie-breaking): informative fields are neither first nor contiguous.
_SYNTHETIC_FIELDS: tuple[FieldSpec, ...] = (
    FieldSpec("noise_0", 3, "noise", 0.8),
    FieldSpec("hc_noise_0", 2000, "high_card_noise", 1.05),
    FieldSpec("weak_0", 10, "weak", 0.9),
    FieldSpec("noise_1", 7, "noise", 0.9),
    FieldSpec("strong_0", 20, "strong", 0.9),
    FieldSpec("inter_a", 8, "interaction", 0.9),
    FieldSpec("inter_b", 12, "interaction", 1.0),  # pairs with inter_a
    FieldSpec("redundant_0", 20, "redundant", source="strong_0"),
    FieldSpec("hc_noise_1", 5000, "high_card_noise", 1.05),
    FieldSpec("strong_1", 50, "strong", 1.0),
    FieldSpec("weak_1", 30, "weak", 1.0),
    FieldSpec("noise_3", 40, "noise", 1.0),
    FieldSpec("inter_c", 8, "interaction", 0.9),
    FieldSpec("redundant_1", 10, "redundant", source="strong_0", coarsen=2),
    FieldSpec("strong_2", 100, "strong", 1.0),
    FieldSpec("hc_noise_2", 3000, "high_card_noise", 1.05),
    FieldSpec("weak_2", 60, "weak", 1.0, scale=0.4),  # near the noise floor
    FieldSpec("inter_d", 30, "interaction", 1.0),  # pairs with inter_c
)


def standin_schema(name: str) -> tuple[FieldSpec, ...]:
    """The field specs of a stand-in (documented roles: the planted signal), from the dataset's spec module."""
    return _standin_spec(name).standin_fields()


def _standin_spec(name: str) -> DatasetSpec:
    from fmpbench.data.registry import SPECS  # the spec modules import FieldSpec from here

    if name not in SPECS:
        raise ValueError(f"no stand-in for dataset {name!r}; choose from: {', '.join(SPECS)}")
    return SPECS[name]


# --------------------------------------------------------------------------------------------
# Engine
# --------------------------------------------------------------------------------------------


def _zipf_draw(rng: np.random.Generator, card: int, a: float, n: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` codes in ``[0, card)`` with P(rank k) ~ (k+1)^-a by inverse CDF, and each code's probability."""
    p = np.arange(1, card + 1, dtype=np.float64) ** (-a)
    p /= p.sum()
    codes = np.searchsorted(np.cumsum(p), rng.random(n), side="right")
    np.minimum(codes, card - 1, out=codes)
    # Shuffle which code is frequent so code order carries no information.
    perm = rng.permutation(card)
    prob = np.empty(card)
    prob[perm] = p
    return perm[codes], prob


def _centred_signs(rng: np.random.Generator, prob: np.ndarray) -> np.ndarray:
    """Random ±1 per value, centred and scaled under ``prob``: E[s] = 0 and E[s²] = 1 exactly."""
    signs = rng.permutation(np.resize([1.0, -1.0], len(prob)))
    centred = signs - prob @ signs
    return centred / np.sqrt(prob @ centred**2)


def _tune_bias(logit: np.ndarray, rate: float) -> float:
    """Bias ``b`` with ``mean(sigmoid(b + logit)) == rate`` (bisection; deterministic)."""
    lo, hi = -30.0, 30.0
    for _ in range(60):
        mid = (lo + hi) / 2
        if np.mean(1.0 / (1.0 + np.exp(-(mid + logit)))) < rate:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def _generate(
    *,
    name: str,
    data_source: str,
    specs: tuple[FieldSpec, ...],
    n_rows: int,
    seed: int,
    label_rate: float,
    min_count: int,
    split: str,
    split_seed: int,
    strong_scale: float,
    weak_scale: float,
    interaction_scale: float,
) -> PreparedData:
    if n_rows < 10:
        raise ValueError(f"n_rows must be >= 10, got {n_rows}")
    if not 0.0 < label_rate < 1.0:
        raise ValueError(f"label_rate must be in (0, 1), got {label_rate}")
    if split not in ("random", "sequential"):
        raise ValueError(f"unknown split {split!r}; choose from: random, sequential")
    params = {
        "name": name,
        "data_source": data_source,
        "n_rows": n_rows,
        "seed": seed,
        "label_rate": label_rate,
        "min_count": min_count,
        "split": split,
        "split_seed": split_seed,
        "strong_scale": strong_scale,
        "weak_scale": weak_scale,
        "interaction_scale": interaction_scale,
        "version": GENERATOR_VERSION,
        "fields": [asdict(s) for s in specs],
    }
    fingerprint = hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:16]

    rng = np.random.default_rng([seed, 0x5EED])
    by_name = {s.name: i for i, s in enumerate(specs)}
    raw = np.empty((n_rows, len(specs)), dtype=np.int64)
    cards: list[int] = []
    logit = np.zeros(n_rows)
    inter: list[int] = []
    margins: dict[int, np.ndarray] = {}
    for i, s in enumerate(specs):
        if s.role == "redundant":
            src = by_name[s.source] if s.source is not None else -1
            if not 0 <= src < i:
                raise ValueError(f"redundant field {s.name} needs an earlier source field")
            card = -(-cards[src] // s.coarsen)
            raw[:, i] = rng.permutation(card)[raw[:, src] // s.coarsen]
        elif s.role == "interaction":
            card = s.card
            raw[:, i], margins[i] = _zipf_draw(rng, card, s.zipf, n_rows)
            inter.append(i)
        else:
            card = s.card
            raw[:, i], _ = _zipf_draw(rng, card, s.zipf, n_rows)
            scale = s.scale * {"strong": strong_scale, "weak": weak_scale}.get(s.role, 0.0)
            if scale:
                w = rng.normal(0.0, scale, card)
                logit += w[raw[:, i]]
        cards.append(card)
    truth = truth_of(specs)
    for a, b in zip(inter[::2], inter[1::2], strict=True):
        sa, sb = _centred_signs(rng, margins[a]), _centred_signs(rng, margins[b])
        logit += interaction_scale * sa[raw[:, a]] * sb[raw[:, b]]
    bias = _tune_bias(logit, label_rate)
    prob = 1.0 / (1.0 + np.exp(-(bias + logit)))
    y = (rng.random(n_rows) < prob).astype(np.float32)

    if split == "random":
        codes = random_split(0, n_rows, split_seed)
    else:
        codes = sequential_split(0, n_rows, n_rows)
    X, dims = encode_dense_columns(raw, codes == 0, cards, min_count)

    splits = {}
    for k, sname in enumerate(SPLIT_NAMES):
        m = codes == k
        splits[sname] = Split(X=np.ascontiguousarray(X[m]), y=y[m])
    info = {
        "n_rows": n_rows,
        "seed": seed,
        "params": {k: v for k, v in params.items() if k != "fields"},
        "split": split,
        "split_seed": split_seed,
        "split_sizes": {k: len(v) for k, v in splits.items()},
        "label_rates": {k: float(v.y.mean()) if len(v) else float("nan") for k, v in splits.items()},
        "bias": bias,
        "cardinalities": dict(zip([s.name for s in specs], cards, strict=True)),
        "redundant_of": {s.name: s.source for s in specs if s.role == "redundant"},
        "interaction_pairs": [[specs[a].name, specs[b].name] for a, b in zip(inter[::2], inter[1::2], strict=True)],
    }
    return PreparedData(
        name=name,
        field_names=[s.name for s in specs],
        field_dims=dims,
        train=splits["train"],
        valid=splits["valid"],
        test=splits["test"],
        fingerprint=fingerprint,
        data_source=data_source,
        info=info,
        truth=truth,
    )


def make_synthetic(
    n_rows: int = 50_000,
    seed: int = 0,
    *,
    label_rate: float = 0.2,
    min_count: int = 2,
    split: str = "random",
    split_seed: int = 2024,
    strong_scale: float = 1.0,
    weak_scale: float = 0.35,
    interaction_scale: float = 1.2,
) -> PreparedData:
    """The ``synthetic`` dataset: 18 fields with known roles (see ``GroundTruth``).

    3 strong, 3 weak (``weak_2`` near the noise floor, at 0.4 × the weak effect), 4 interaction-only
    fields in two pairs (Zipf margins, no first-order effect), 2 redundant copies of ``strong_0`` (an
    exact relabelling and a 2:1 coarsening), 3 high-cardinality noise fields (2k-5k values) and 3 pure
    noise fields. Deterministic for ``seed``; the split uses ``split_seed``. Method defaults and tests
    use generator seeds 0-2; the committed study reports seed 7, which nothing was tuned on.
    """
    return _generate(
        name="synthetic",
        data_source="synthetic",
        specs=_SYNTHETIC_FIELDS,
        n_rows=n_rows,
        seed=seed,
        label_rate=label_rate,
        min_count=min_count,
        split=split,
        split_seed=split_seed,
        strong_scale=strong_scale,
        weak_scale=weak_scale,
        interaction_scale=interaction_scale,
    )


def make_standin(
    name: str,
    n_rows: int = 50_000,
    seed: int = 0,
    *,
    min_count: int = 2,
    split: str = "random",
    split_seed: int = 2024,
) -> PreparedData:
    """A seeded stand-in for real dataset ``name`` (criteo, avazu, movielens, amazon).

    Same field names as the real loader, scaled cardinalities, the real label rate, and planted
    signal whose roles are in ``truth``. ``data_source`` is ``standin:<name>``.
    """
    spec = _standin_spec(name)
    return _generate(
        name=name,
        data_source=f"standin:{name}",
        specs=spec.standin_fields(),
        n_rows=n_rows,
        seed=seed,
        label_rate=spec.standin_label_rate,
        min_count=min_count,
        split=split,
        split_seed=split_seed,
        strong_scale=0.8,
        weak_scale=0.3,
        interaction_scale=1.0,
    )


def regenerate(params: dict) -> PreparedData:
    """The generated dataset described by ``info["params"]`` of one (synthetic or stand-in), e.g. in a
    worker process, or with another ``split_seed``; the same parameters give the same fingerprint."""
    kwargs = {k: params[k] for k in ("n_rows", "seed", "label_rate", "min_count", "split", "split_seed")}
    kwargs |= {k: params[k] for k in ("strong_scale", "weak_scale", "interaction_scale")}
    if params.get("version") != GENERATOR_VERSION:
        raise ValueError(f"generator version {params.get('version')} is not this one ({GENERATOR_VERSION})")
    specs = _SYNTHETIC_FIELDS if params["data_source"] == "synthetic" else standin_schema(params["name"])
    return _generate(name=params["name"], data_source=params["data_source"], specs=specs, **kwargs)
