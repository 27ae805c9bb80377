"""The practitioner's answer: which fields can be dropped, per dataset and method, and how sure that is.

For each (block, method) the *smallest safe k* is the smallest budget whose test AUC is shown not to
be meaningfully worse than keeping every field (``none``): practically equal (mean |ΔAUC| <
``stats.EQUIVALENCE_THRESHOLD``), or *non-inferior*: the 95 % confidence interval of the paired ΔAUC
over seeds lies above −``NONINFERIORITY_MARGIN``. Safety must be shown, not presumed: "not
significantly worse" (a test that fails to reject) would call a k safe exactly when the seeds are too
few or too noisy to tell — with 5 seeds and Holm's correction over ~20 methods it passed ``random``
at a 0.04 AUC loss. These are the numbers of :func:`fmpbench.report.summary.main_summary`; nothing
is recomputed here, and each row says which criterion made it safe, with its ΔAUC.

Stability is read from the kept sets of that k: across seeds, the share of seeds that drop each field
and the mean pairwise Jaccard similarity of the kept sets (1 = every seed kept the same fields);
across methods, a consensus: the fields that more than half of the methods with a safe k drop (in a
majority of their seeds). ``random`` is listed but takes no part in the consensus, and ablation
variants (``[...]``) and the model-pruning baselines (``+small``, ``+magnitude``) are left out.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from fmpbench.report.load import LoadedResults, is_variant
from fmpbench.report.summary import REFERENCE, is_baseline, sort_rows
from fmpbench.report.tables import DASH, Cell, Table, fmt_delta, fmt_num, fmt_p
from fmpbench.stats import EQUIVALENCE_THRESHOLD

#: rows whose field choice carries no information, so they do not vote in the consensus
NO_VOTE = ("random",)

PER_METHOD_COLUMNS = ["block", "label", "num_fields", "k", "safe", "basis", "delta_none", "p_t_none", "n",
                      "dropped", "drop_share", "jaccard", "reason"]
CONSENSUS_COLUMNS = ["block", "field", "methods_dropping", "methods", "share"]


@dataclass
class DropList:
    """``per_method``: one row per (block, method) (``PER_METHOD_COLUMNS``); ``consensus``: the fields
    dropped by most methods of a block (``CONSENSUS_COLUMNS``), most agreed first."""

    per_method: pd.DataFrame
    consensus: pd.DataFrame


def answers(label: str) -> bool:
    """A row that answers "which fields can I drop": a selection method at its default parameters."""
    return label != REFERENCE and not is_variant(label) and not is_baseline(label)


#: the largest AUC loss against ``none`` a safe k may have at the lower end of its 95 % interval: half a
#: point of AUC, five times the BARS reproduction threshold
NONINFERIORITY_MARGIN = 0.005


def _basis(row: pd.Series) -> str:
    """Why a k is safe, or "" when it is not.

    A mean within the equivalence threshold is not enough where seeds give an interval: five seeds whose
    ΔAUC scatter ±0.01 around zero have a small mean and rule out nothing, so an interval reaching below
    −``NONINFERIORITY_MARGIN`` makes the k unsafe however close the mean. With one seed there is no
    interval and the point estimate is all there is; the row's seed count says so.
    """
    low = row["ci_low_none"]
    ruled_out = math.isfinite(low) and low >= -NONINFERIORITY_MARGIN
    if row["equivalent_none"] and (ruled_out or not math.isfinite(low)):
        return f"≈ none (|ΔAUC| < {EQUIVALENCE_THRESHOLD:g})"
    if not ruled_out:
        return ""
    if low > 0:
        return f"better (95% CI of ΔAUC > 0; Holm-adjusted t-test p = {fmt_p(row['p_t_none'])})"
    return f"non-inferior (95% CI of ΔAUC ≥ −{NONINFERIORITY_MARGIN:g})"


def _no_safe_reason(rows: pd.DataFrame, has_reference: bool) -> str:
    if not has_reference:
        return f"no `{REFERENCE}` run on this data to compare with: include {REFERENCE} in the methods"
    if not rows["ci_low_none"].map(math.isfinite).any():
        return (f"no k is within {EQUIVALENCE_THRESHOLD:g} of none, and with {int(rows['n'].max())} seed(s) no "
                "paired test is possible: run ≥ 2 (better ≥ 3) seeds")
    return (f"at every k the 95% CI of ΔAUC reaches below −{NONINFERIORITY_MARGIN:g}: a loss of that size is not "
            "ruled out (more seeds narrow the interval)")


def _jaccard(kept: list[frozenset[str]]) -> float:
    pairs = [len(a & b) / len(a | b) if a | b else 1.0 for a, b in itertools.combinations(kept, 2)]
    return float(np.mean(pairs)) if pairs else math.nan


def _choice(runs: pd.DataFrame) -> tuple[tuple[str, ...], dict[str, float], float]:
    """Fields dropped by a majority of seeds (most often first), each field's drop share, kept-set Jaccard."""
    names = list(runs["field_names"].iloc[0])
    kept = [frozenset(fields) for fields in runs["selected_fields"]]
    share = {name: sum(name not in k for k in kept) / len(kept) for name in names}
    dropped = [name for name in names if share[name] > 0.5]
    dropped.sort(key=lambda name: -share[name])  # stable: field order among equal shares
    return tuple(dropped), {name: share[name] for name in dropped}, _jaccard(kept)


def drop_list(main: pd.DataFrame, loaded: LoadedResults) -> DropList:
    """The smallest safe k per (block, method), what it drops, and each block's consensus."""
    ok = loaded.ok
    referenced = set(main.loc[main["label"] == REFERENCE, "block"])
    rows = []
    for (block, label), g in main[main["label"].map(answers).astype(bool)].groupby(["block", "label"], sort=True):
        sweep = g[g["k"] < g["num_fields"]].sort_values("k")
        if sweep.empty:
            continue
        safe = sweep[sweep.apply(_basis, axis=1) != ""]
        base = {"block": block, "label": label, "num_fields": int(sweep["num_fields"].iloc[0])}
        if safe.empty:
            rows.append({**base, "k": -1, "safe": False, "basis": "", "delta_none": math.nan,
                         "p_t_none": math.nan, "n": int(sweep["n"].max()), "dropped": (), "drop_share": {},
                         "jaccard": math.nan, "reason": _no_safe_reason(sweep, block in referenced)})
            continue
        best = safe.iloc[0]
        runs = ok[(ok["block"] == block) & (ok["label"] == label) & (ok["k"] == best["k"])]
        dropped, share, jaccard = _choice(runs)
        rows.append({**base, "k": int(best["k"]), "safe": True, "basis": _basis(best),
                     "delta_none": float(best["delta_none"]), "p_t_none": float(best["p_t_none"]),
                     "n": int(best["n"]), "dropped": dropped, "drop_share": share, "jaccard": jaccard, "reason": ""})
    per_method = sort_rows(pd.DataFrame(rows, columns=PER_METHOD_COLUMNS), ["block"])
    return DropList(per_method, _consensus(per_method))


def _consensus(per_method: pd.DataFrame) -> pd.DataFrame:
    out = []
    voters = per_method[per_method["safe"] & ~per_method["label"].isin(NO_VOTE)]
    for block, g in voters.groupby("block", sort=True):
        counts: dict[str, int] = {}
        for dropped in g["dropped"]:
            for name in dropped:
                counts[name] = counts.get(name, 0) + 1
        for name, count in sorted(counts.items(), key=lambda item: -item[1]):
            if count > len(g) / 2:
                out.append({"block": block, "field": name, "methods_dropping": count, "methods": len(g),
                            "share": count / len(g)})
    return pd.DataFrame(out, columns=CONSENSUS_COLUMNS)


def _fields_text(dropped: tuple[str, ...], share: dict[str, float]) -> str:
    """``a, b (0.8), c (0.6)``: a share is shown only where not every seed dropped the field."""
    return ", ".join(name if share[name] == 1 else f"{name} ({share[name]:.1f})" for name in dropped)


def consensus_text(consensus: pd.DataFrame, block: str) -> str:
    g = consensus[consensus["block"] == block]
    return ", ".join(f"{r.field} ({r.methods_dropping}/{r.methods})" for r in g.itertuples())


def drop_list_table(result: DropList) -> Table:
    """The report's ``drop_list`` table: one row per method, then each dataset's consensus row."""
    table = Table(
        name="drop_list",
        title="Which fields can be dropped: the smallest k not worse than none",
        columns=["dataset", "method", "k / F", "why safe", "ΔAUC", "seeds", "seed agreement (Jaccard)",
                 "fields dropped (share of seeds if < 1)"],
        align="llrlrrrl",
        section_column=0,
    )
    for block, g in result.per_method.groupby("block", sort=True):
        for row in g.itertuples():
            if not row.safe:
                table.rows.append([Cell(block), Cell(row.label), Cell(DASH), Cell("no k is safe"), Cell(DASH),
                                   Cell(str(row.n)), Cell(DASH), Cell(row.reason)])
                continue
            table.rows.append([Cell(block), Cell(row.label), Cell(f"{row.k} / {row.num_fields}"), Cell(row.basis),
                               Cell(fmt_delta(row.delta_none)), Cell(str(row.n)), Cell(fmt_num(row.jaccard)),
                               Cell(_fields_text(row.dropped, row.drop_share) or "none")])
        voters = int((g["safe"] & ~g["label"].isin(NO_VOTE)).sum())
        agreed = consensus_text(result.consensus, block)
        table.rows.append([Cell(block), Cell("consensus", bold=True), Cell(DASH),
                           Cell(f"dropped by > half of {voters} methods with a safe k"), Cell(DASH), Cell(DASH),
                           Cell(DASH), Cell(agreed or "no field", bold=True)])
    table.notes = [
        f"Safe: test AUC practically equal to `{REFERENCE}` (mean |ΔAUC| < {EQUIVALENCE_THRESHOLD:g}) or non-inferior "
        f"(the 95% t interval of the paired ΔAUC over seeds lies above −{NONINFERIORITY_MARGIN:g}). Safety is shown, "
        "not presumed: a k whose seeds cannot rule out a larger loss is not safe, however small its mean ΔAUC; "
        "with one seed there is no interval and the mean alone decides.",
        "A field is listed for a method when a majority of its seeds drop it at that k; the consensus counts "
        "(methods dropping it / methods with a safe k), `random` excluded. Ablation variants and the "
        "model-pruning baselines are not listed.",
    ]
    if result.per_method.empty:
        table.notes.insert(0, "No method swept k below the field count: there is nothing to drop.")
    return table


def drop_list_lines(result: DropList) -> list[str]:
    """The answer as plain lines, for the end of ``fmpbench run``."""
    lines = [f"Which fields can be dropped (smallest k with |ΔAUC| < {EQUIVALENCE_THRESHOLD:g} vs {REFERENCE}, or "
             f"non-inferior: 95% CI of ΔAUC above −{NONINFERIORITY_MARGIN:g}):"]
    if result.per_method.empty:
        return [*lines, "  no method swept k below the field count"]
    for block, g in result.per_method.groupby("block", sort=True):
        lines.append(f" {block}:")
        for row in g.itertuples():
            if not row.safe:
                lines.append(f"  {row.label}: NO SAFE k — {row.reason}")
                continue
            agreement = f"; seeds agree (Jaccard) {row.jaccard:.2f}" if math.isfinite(row.jaccard) else ""
            lines.append(f"  {row.label}: k={row.k} of {row.num_fields}, {row.basis}, ΔAUC "
                         f"{fmt_delta(row.delta_none)}{agreement}; drops {len(row.dropped)}: "
                         f"{_fields_text(row.dropped, row.drop_share) or 'none'}")
        agreed = consensus_text(result.consensus, block)
        lines.append(f"  consensus: {agreed or 'no field is dropped by more than half of the methods'}")
    return lines
