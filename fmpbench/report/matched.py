"""Light-FMP's pruned model against model-pruning baselines of the same size (the matched-budget table).

"Smaller and as accurate" needs something of the same size to be compared with. At each (dataset, k)
the native ``lightfmp`` row is paired by seed with ``lightfmp+small`` (its architecture trained from
scratch on the same fields) and ``lightfmp+magnitude`` (a full-width model on the same fields,
structured magnitude pruning to the same widths, fine-tuned) — both at exactly its parameter count —
and with ``lightfmp-fs`` (full width, same fields). Only default-parameter runs are used.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from fmpbench import stats
from fmpbench.report.load import LoadedResults, is_variant
from fmpbench.report.summary import ALPHA
from fmpbench.report.tables import Cell, Table, fmt_effect, fmt_int, fmt_p, fmt_pm

NATIVE = "lightfmp"
COMPARED = ("lightfmp+small", "lightfmp+magnitude", "lightfmp-fs")
COLUMNS = ["block", "k", "label", "n", "params", "auc_mean", "auc_std", "delta", "ci_low", "ci_high", "p_t",
           "verdict"]


def _verdict(delta: float, p: float) -> str:
    if not math.isfinite(delta):
        return ""
    if abs(delta) < stats.EQUIVALENCE_THRESHOLD:
        return "equivalent"
    if math.isfinite(p) and p < ALPHA:
        return "Light-FMP better" if delta > 0 else "Light-FMP worse"
    return "no significant difference"


def matched_budget_summary(loaded: LoadedResults) -> pd.DataFrame:
    """Per (block, k): each compared row's AUC and size, and native − row over paired seeds."""
    ok = loaded.ok[loaded.ok["label"].isin((NATIVE, *COMPARED)) & ~loaded.ok["label"].map(is_variant)]
    rows = []
    for (block, k), g in ok.groupby(["block", "k"], sort=True):
        native = g[g["label"] == NATIVE].set_index("seed")
        if native.empty:
            continue
        present = [label for label in COMPARED if (g["label"] == label).any()]
        compared = {label: g[g["label"] == label].set_index("seed") for label in present}
        tests = {}
        for label, other in compared.items():
            seeds = sorted(set(native.index) & set(other.index))
            a, b = native.loc[seeds, "test_auc"].to_numpy(), other.loc[seeds, "test_auc"].to_numpy()
            tests[label] = (len(seeds), *stats.paired_mean_ci(a, b), stats.paired_ttest(a, b))
        adjusted = dict(zip(present, stats.holm([tests[lab][4] for lab in present]), strict=True))
        for label, runs in [(NATIVE, native), *compared.items()]:
            mean, std = stats.mean_std(runs["test_auc"])
            params = float(np.mean(runs["embedding_params"] + runs["dense_params"]))
            n, delta, low, high, _ = tests.get(label, (len(runs), math.nan, math.nan, math.nan, math.nan))
            p = adjusted.get(label, math.nan)
            rows.append({"block": block, "k": int(k), "label": label, "n": n, "params": params, "auc_mean": mean,
                         "auc_std": std, "delta": delta, "ci_low": low, "ci_high": high, "p_t": p,
                         "verdict": _verdict(delta, p)})
    return pd.DataFrame(rows, columns=COLUMNS)


def matched_budget_table(df: pd.DataFrame) -> Table:
    table = Table(
        name="matched_budget",
        title="Light-FMP's pruned model against model-pruning baselines at equal parameters",
        columns=["dataset", "k", "row", "n", "params", "AUC", "Δ lightfmp − row [95% CI]", "p t", "verdict"],
        align="lrlrrllrl",
        section_column=0,
        group_column=1,
    )
    for row in df.itertuples():
        own = row.label == NATIVE
        table.rows.append([
            Cell(row.block), Cell(str(row.k)), Cell(row.label), Cell(str(row.n)), Cell(fmt_int(row.params)),
            Cell(fmt_pm(row.auc_mean, row.auc_std)),
            Cell("ref." if own else fmt_effect(row.delta, row.ci_low, row.ci_high)),
            Cell("" if own else fmt_p(row.p_t)), Cell("" if own else row.verdict),
        ])
    table.notes = [
        "`lightfmp`: Light-FMP's native pipeline (pretraining towards k, physical pruning of fields and hidden "
        "units, continued training). `lightfmp+small`: the same k fields and hidden widths trained from scratch; "
        "`lightfmp+magnitude`: a full-width model trained on the same k fields, hidden units with the smallest "
        "L2 norm of incoming weights removed to the same widths, then fine-tuned — both have exactly the native "
        "model's parameters. `lightfmp-fs`: the full-width retrain on the same fields (more parameters).",
        f"Δ: mean over paired seeds of lightfmp − row, with its 95 % t interval; p: paired t-test, Holm-adjusted "
        f"over the rows of one (dataset, k). Verdict: equivalent when |Δ| < {stats.EQUIVALENCE_THRESHOLD}; better "
        f"/ worse when p < {ALPHA}; otherwise no significant difference.",
    ]
    if df.empty:
        table.notes.insert(0, "No `lightfmp` runs with matched-budget rows (set `matched_baselines`).")
    return table
