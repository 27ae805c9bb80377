"""One colour and one marker per method, identical in every figure and stable as methods are added.

Known result rows get hand-picked colours (Okabe–Ito based, readable in print and for colour-blind
readers). Any other name — a method registered later, or a labelled parameter variant such as
``lightfmp[subset=0.05]`` — gets a colour from a second palette chosen by a hash of the name alone,
so its colour never depends on which other methods happen to be in the results.
"""

from __future__ import annotations

import hashlib

FIXED_COLORS: dict[str, str] = {
    "none": "#000000",
    "random": "#999999",
    "lightfmp": "#D55E00",
    "lightfmp-fs": "#E69F00",
    "autofield": "#0072B2",
    "adafs": "#56B4E9",
    "lpfs": "#009E73",
    "mvfs": "#CC79A7",
    "lasso": "#6A3D9A",
    "gbdt": "#8C564B",
    "rf": "#A6A619",
    "pca": "#17BECF",
}

EXTRA_COLORS: tuple[str, ...] = (
    "#E41A1C", "#1F3A93", "#66A61E", "#FB9A99", "#B15928", "#CAB2D6",
    "#A6CEE3", "#F781BF", "#4DAF4A", "#377EB8", "#8DD3C7", "#BC80BD",
)

FIXED_MARKERS: dict[str, str] = {
    "none": "s",
    "random": "x",
    "lightfmp": "*",
    "lightfmp-fs": "P",
    "autofield": "o",
    "adafs": "^",
    "lpfs": "v",
    "mvfs": "D",
    "lasso": "<",
    "gbdt": ">",
    "rf": "h",
    "pca": "p",
}

EXTRA_MARKERS: tuple[str, ...] = ("o", "^", "v", "D", "s", "<", ">", "h", "p", "X")


def _hash_index(name: str, modulo: int) -> int:
    return int(hashlib.sha256(name.encode()).hexdigest(), 16) % modulo


def method_color(name: str) -> str:
    """The colour of result row ``name`` (a hex string)."""
    return FIXED_COLORS.get(name) or EXTRA_COLORS[_hash_index(name, len(EXTRA_COLORS))]


def method_marker(name: str) -> str:
    """The marker of result row ``name``, so that curves stay distinguishable in greyscale."""
    return FIXED_MARKERS.get(name) or EXTRA_MARKERS[_hash_index(name, len(EXTRA_MARKERS))]
