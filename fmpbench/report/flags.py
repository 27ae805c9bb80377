"""Result rows that must not be published unread: worse than chance, or far worse than keeping every field.

Native Light-FMP on the Amazon excerpt (44 test rows) once reached test AUC 0.27–0.31 with logloss
3.6–4.4 and passed through the summary and the report without a remark. A row is flagged when its test
AUC is below 0.5 (a ranking worse than a coin), or when its test logloss exceeds that of ``none`` on the
same data and seed by more than 0.05 (overconfident wrong predictions that AUC alone can hide). Both
the run summary of ``fmpbench run`` and the report's ``flags`` table use :func:`flag_rows`.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from fmpbench.report.tables import Cell, Table

AUC_FLOOR = 0.5
LOGLOSS_MARGIN = 0.05
REFERENCE = "none"


def flag_rows(runs: pd.DataFrame, group: Sequence[str] = ("dataset", "seed")) -> pd.DataFrame:
    """The rows of ``runs`` (successful records: ``method``, ``test_auc``, ``test_logloss`` and the
    ``group`` columns) to look at before publishing, with a ``reason`` and the reference's logloss.

    ``none``'s logloss is its mean over the records of the same ``group`` (normally one); a group
    without a ``none`` record is checked against the AUC floor only.
    """
    group = list(group)
    if runs.empty:
        return runs.assign(reason=pd.Series(dtype=str), none_logloss=pd.Series(dtype=float))
    reference = runs[runs["method"] == REFERENCE].groupby(group)["test_logloss"].mean().rename("none_logloss")
    checked = runs.join(reference, on=group)
    reasons = []
    for auc, logloss, none_logloss in zip(checked["test_auc"], checked["test_logloss"], checked["none_logloss"]):
        found = []
        if auc < AUC_FLOOR:
            found.append(f"test AUC {auc:.4f} < {AUC_FLOOR}")
        if pd.notna(none_logloss) and logloss > none_logloss + LOGLOSS_MARGIN:
            found.append(f"logloss {logloss:.4f} > none's {none_logloss:.4f} + {LOGLOSS_MARGIN}")
        reasons.append("; ".join(found))
    checked["reason"] = reasons
    return checked[checked["reason"] != ""]


def flags_table(flagged: pd.DataFrame) -> Table:
    """The report's ``flags`` table: one line per flagged row of :attr:`LoadedResults.ok`."""
    table = Table(
        name="flags",
        title="Rows to read before publishing",
        columns=["dataset", "method", "k", "seed", "test AUC", "logloss", "reason"],
        align="llrrrrl",
    )
    for row in flagged.itertuples():
        table.rows.append(
            [
                Cell(row.block),
                Cell(row.label),
                Cell(str(row.k)),
                Cell(str(row.seed)),
                Cell(f"{row.test_auc:.4f}"),
                Cell(f"{row.test_logloss:.4f}"),
                Cell(row.reason),
            ]
        )
    table.notes = [
        f"A row is listed when its test AUC is below {AUC_FLOOR} (worse than chance) or its test logloss exceeds "
        f"`{REFERENCE}`'s on the same dataset and seed by more than {LOGLOSS_MARGIN}. Such a row usually means a "
        "test split too small to rank methods, a diverged or overfitted model, or a bug — not a finding."
    ]
    if flagged.empty:
        table.notes.insert(0, "None: no row is worse than chance or far worse calibrated than `none`.")
    return table
