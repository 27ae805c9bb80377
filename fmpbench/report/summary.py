"""The numbers behind every table and figure, as plain DataFrames (formatting lives in ``tables``).

Every statistic comes from ``fmpbench.stats``; this module only decides what is paired with what:

* Comparisons are made within one (block, k). ``none`` runs once per seed at k = F and is the
  reference at every k, paired by seed.
* Against ``none``: paired t-test and Wilcoxon over seeds (``stats.compare_to_reference``), and
  DeLong's test on each seed's stored test predictions. The per-seed DeLong p-values are combined by
  taking their **maximum** — the difference counts as significant only if it is significant in every
  seed (an intersection–union test, valid however the seeds are correlated). Each family of p-values
  is Holm-adjusted across the methods of that (block, k).
* Against the best method of the (block, k) (highest mean AUC): paired t-test, Holm-adjusted.
"""

from __future__ import annotations

import math
import warnings
import zipfile
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fmpbench import stats
from fmpbench.data.prepared import GroundTruth
from fmpbench.data.synthetic import standin_schema, truth_of
from fmpbench.report.load import STANDIN_PREFIX, LoadedResults, is_variant
from fmpbench.results import load_predictions, predictions_path

REFERENCE = "none"
ALPHA = 0.05

SYNTHETIC_ROLE_PREFIXES: tuple[tuple[str, str], ...] = (
    ("strong_", "strong"),
    ("weak_", "weak"),
    ("inter_", "interaction"),
    ("redundant_", "redundant"),
    ("hc_noise_", "high_card_noise"),
    ("noise_", "noise"),
)
"""How ``make_synthetic`` names its fields; records do not store the roles, so they are read back here."""


def label_sort_key(label: str) -> tuple[int, str]:
    """References first (``none``, ``random``), then every other row alphabetically."""
    base = label.split("[", 1)[0]
    return ({"none": 0, "random": 1}.get(base, 2), label)


def sort_labels(labels: Iterable[str]) -> list[str]:
    return sorted(set(labels), key=label_sort_key)


# --------------------------------------------------------------------------------------------------
# Main results and significance
# --------------------------------------------------------------------------------------------------


#: what ``np.load`` raises on a truncated, empty, non-zip or incomplete ``.npz`` file
UNREADABLE_PREDICTIONS = (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zlib.error)


class _Predictions:
    """Stored test predictions, each file read once per report (the reference's are reused a lot)."""

    def __init__(self, results_dir: Path) -> None:
        self.results_dir = results_dir
        self._cache: dict[str, tuple[np.ndarray, np.ndarray] | None] = {}

    def __call__(self, run_id: str) -> tuple[np.ndarray, np.ndarray] | None:
        """The run's labels and probabilities, or None (with a warning naming the file) when unreadable."""
        if run_id not in self._cache:
            try:
                self._cache[run_id] = load_predictions(self.results_dir, run_id)
            except UNREADABLE_PREDICTIONS as exc:
                warnings.warn(f"skipping unreadable predictions {predictions_path(self.results_dir, run_id)}: "
                              f"{type(exc).__name__}: {exc}", stacklevel=2)
                self._cache[run_id] = None
        return self._cache[run_id]


def _delong_max_p(predictions: _Predictions, runs: pd.DataFrame, ref_runs: pd.DataFrame) -> tuple[float, int]:
    """Max over paired seeds of DeLong's p (method vs reference), and how many seeds it covers."""
    ref_by_seed = ref_runs.set_index("seed")
    pvalues = []
    for run in runs.itertuples():
        if run.seed not in ref_by_seed.index or not run.has_predictions:
            continue
        ref = ref_by_seed.loc[run.seed]
        if not ref["has_predictions"]:
            continue
        ours, theirs = predictions(run.run_id), predictions(ref["run_id"])
        if ours is None or theirs is None:
            continue
        (y, p), (y0, p0) = ours, theirs
        if y.shape != y0.shape or not np.array_equal(y, y0):
            continue
        try:
            pvalues.append(stats.delong_test(y, p, p0).p_value)
        except ValueError:
            continue
    return (max(pvalues) if pvalues else math.nan), len(pvalues)


MAIN_COLUMNS = ["block", "k", "num_fields", "label", "n", "auc_mean", "auc_std", "logloss_mean", "logloss_std",
                "gauc_mean", "delta_none", "ci_low_none", "ci_high_none", "p_t_none", "p_w_none", "w_reachable",
                "p_delong_none", "delong_seeds", "equivalent_none", "best_label", "delta_best", "ci_low_best",
                "ci_high_best", "p_t_best", "equivalent_best"]


def main_summary(loaded: LoadedResults) -> pd.DataFrame:
    """Per (block, k, label): AUC/logloss mean ± std and the tests against ``none`` and the best."""
    ok = loaded.ok
    predictions = _Predictions(loaded.results_dir)
    rows = []
    for block, bdf in ok.groupby("block", sort=True):
        ref_runs = bdf[bdf["label"] == REFERENCE]
        for k, kdf in bdf.groupby("k", sort=True):
            labels = sort_labels(kdf["label"])
            by_label = {lab: kdf[kdf["label"] == lab] for lab in labels}
            means = {lab: stats.mean_std(g["test_auc"]) for lab, g in by_label.items()}
            best = max(labels, key=lambda lab: (np.nan_to_num(means[lab][0], nan=-np.inf), -labels.index(lab)))
            vs_best = _compare(kdf, best)
            others = [lab for lab in labels if lab != REFERENCE]
            vs_none = _compare(pd.concat([kdf[kdf["label"] != REFERENCE], ref_runs]), REFERENCE)
            delong = {lab: _delong_max_p(predictions, by_label[lab], ref_runs) for lab in others}
            delong_holm = dict(zip(others, stats.holm([delong[lab][0] for lab in others]), strict=True))
            for lab in labels:
                g = by_label[lab]
                ll_mean, ll_std = stats.mean_std(g["test_logloss"])
                cmp_none = vs_none.get(lab, {})
                cmp_best = vs_best.get(lab, {})
                rows.append({
                    "block": block, "k": int(k), "num_fields": int(g["num_fields"].iloc[0]), "label": lab,
                    "n": len(g), "auc_mean": means[lab][0], "auc_std": means[lab][1],
                    "logloss_mean": ll_mean, "logloss_std": ll_std,
                    "gauc_mean": float(g["test_gauc"].mean()) if g["test_gauc"].notna().any() else math.nan,
                    "delta_none": cmp_none.get("mean_delta", math.nan),
                    "ci_low_none": cmp_none.get("ci_low", math.nan),
                    "ci_high_none": cmp_none.get("ci_high", math.nan),
                    "p_t_none": cmp_none.get("ttest_p_holm", math.nan),
                    "p_w_none": cmp_none.get("wilcoxon_p_holm", math.nan),
                    "w_reachable": stats.can_reach("wilcoxon", int(cmp_none.get("n_pairs", 0)), ALPHA),
                    "p_delong_none": delong_holm.get(lab, math.nan),
                    "delong_seeds": delong.get(lab, (math.nan, 0))[1],
                    "equivalent_none": bool(cmp_none.get("equivalent", False)),
                    "best_label": best,
                    "delta_best": cmp_best.get("mean_delta", math.nan),
                    "ci_low_best": cmp_best.get("ci_low", math.nan),
                    "ci_high_best": cmp_best.get("ci_high", math.nan),
                    "p_t_best": cmp_best.get("ttest_p_holm", math.nan),
                    "equivalent_best": bool(cmp_best.get("equivalent", False)),
                })
    return pd.DataFrame(rows, columns=MAIN_COLUMNS)


def _compare(df: pd.DataFrame, reference: str) -> dict[str, dict]:
    if reference not in set(df["label"]) or df["label"].nunique() < 2:
        return {}
    table = stats.compare_to_reference(df[["label", "seed", "test_auc"]], "label", "seed", "test_auc", reference)
    return {row["method"]: row for row in table.to_dict("records")}


# --------------------------------------------------------------------------------------------------
# Efficiency
# --------------------------------------------------------------------------------------------------

EFFICIENCY_FIELDS = ("embedding_params", "embedding_params_full", "dense_params", "dense_params_full",
                     "flops_per_sample", "flops_per_sample_full", "search_seconds", "retrain_seconds",
                     "total_seconds", "epochs")


def efficiency_summary(loaded: LoadedResults) -> pd.DataFrame:
    """Per (block, k, label): mean sizes, FLOPs and wall-clock times over seeds."""
    ok = loaded.ok
    if ok.empty:
        return pd.DataFrame(columns=["block", "k", "label", "n", *EFFICIENCY_FIELDS])
    grouped = ok.groupby(["block", "k", "label"], sort=True)
    out = grouped[list(EFFICIENCY_FIELDS)].mean()
    out.insert(0, "n", grouped.size())
    out = out.reset_index()
    return sort_rows(out, ["block", "k"])


USER_GROUPED_COLUMNS = ["block", "k", "label", "n", "gauc_mean", "gauc_std", "ndcg10_mean", "ndcg10_std",
                        "gauc_users", "gauc_users_skipped", "ndcg_users"]


def user_grouped_summary(loaded: LoadedResults) -> pd.DataFrame:
    """Per (block, k, label) of the blocks whose data has a user field: GAUC and NDCG@10 mean ± std over
    seeds, the test users GAUC averages over and skips (one class only) and those NDCG@10 averages over
    (at least one click), as means over seeds.

    A block counts as having a user field when its records carry ``gauc_users`` (records of data
    without one store None there); records written before the user-grouped metrics existed are left out.
    """
    ok = loaded.ok
    ok = ok[ok["gauc_users"].notna()] if not ok.empty else ok
    if ok.empty:
        return pd.DataFrame(columns=USER_GROUPED_COLUMNS)
    rows = []
    for (block, k, label), g in ok.groupby(["block", "k", "label"], sort=True):
        gauc_mean, gauc_std = stats.mean_std(g["test_gauc"])
        ndcg_mean, ndcg_std = stats.mean_std(g["test_ndcg10"])
        rows.append({
            "block": block, "k": int(k), "label": label, "n": len(g),
            "gauc_mean": gauc_mean, "gauc_std": gauc_std, "ndcg10_mean": ndcg_mean, "ndcg10_std": ndcg_std,
            "gauc_users": float(g["gauc_users"].mean()), "gauc_users_skipped": float(g["gauc_users_skipped"].mean()),
            "ndcg_users": float(g["ndcg_users"].mean()),
        })
    return sort_rows(pd.DataFrame(rows, columns=USER_GROUPED_COLUMNS), ["block", "k"])


def sort_rows(df: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Rows ordered by ``keys``, then by method (``label_sort_key``); a fresh index."""
    order = df["label"].map(label_sort_key)
    return (df.assign(_order=order).sort_values([*keys, "_order"], kind="stable")
            .drop(columns="_order").reset_index(drop=True))


# --------------------------------------------------------------------------------------------------
# Ground-truth recovery
# --------------------------------------------------------------------------------------------------


def ground_truth(run: Any) -> GroundTruth | None:
    """The planted structure a record's data had (stored in the record), or None (real data).

    Records written before the truth was stored fall back to the schema: ``make_synthetic``'s field
    names, or a stand-in's ``standin_schema`` when the record's fields are exactly the schema's.
    """
    stored = getattr(run, "ground_truth", None)
    if isinstance(stored, dict) and stored.get("roles"):
        return GroundTruth(roles=dict(stored["roles"]), pairs=tuple(tuple(p) for p in stored.get("pairs") or ()),
                           copies=dict(stored.get("copies") or {}))
    field_names = tuple(run.field_names)
    if run.data_source == "synthetic":
        roles = {}
        for name in field_names:
            role = next((r for prefix, r in SYNTHETIC_ROLE_PREFIXES if name.startswith(prefix)), None)
            if role is None:
                return None
            roles[name] = role
        inter = sorted(name for name, role in roles.items() if role == "interaction")
        copies = {name: "strong_0" for name, role in roles.items() if role == "redundant" and "strong_0" in roles}
        return GroundTruth(roles=roles, pairs=tuple(zip(inter[::2], inter[1::2])), copies=copies)
    if run.data_source.startswith(STANDIN_PREFIX):
        try:
            schema = standin_schema(run.data_source[len(STANDIN_PREFIX):])
        except ValueError:
            return None
        truth = truth_of(schema)
        return truth if set(truth.roles) == set(field_names) else None
    return None


RECOVERY_FIELDS = ("recall_informative", "recall_strong", "pair_recall", "wasted_on_copies", "wasted_on_noise",
                   "budget_wasted")


def recovery_summary(loaded: LoadedResults) -> pd.DataFrame:
    """Per (block, k, label) on data with planted truth: selection precision/recall, mean ± std."""
    rows = []
    for run in loaded.ok.itertuples():
        if run.k >= run.num_fields:
            continue
        truth = ground_truth(run)
        if truth is None:
            continue
        rows.append({"block": run.block, "k": run.k, "label": run.label, "seed": run.seed,
                     **truth.score(list(run.selected_fields))})
    columns = ["block", "k", "label", "n"] + [f"{f}_{s}" for f in RECOVERY_FIELDS for s in ("mean", "std")]
    if not rows:
        return pd.DataFrame(columns=columns)
    per_run = pd.DataFrame(rows)
    out = []
    for (block, k, label), g in per_run.groupby(["block", "k", "label"], sort=True):
        row = {"block": block, "k": k, "label": label, "n": len(g)}
        for f in RECOVERY_FIELDS:
            row[f"{f}_mean"], row[f"{f}_std"] = stats.mean_std(g[f])
        out.append(row)
    return sort_rows(pd.DataFrame(out, columns=columns), ["block", "k"])


# --------------------------------------------------------------------------------------------------
# AUKC ranking and the critical-difference blocks
# --------------------------------------------------------------------------------------------------


def keeps_all_fields(df: pd.DataFrame) -> bool:
    """A row that only ever ran at k = F (``none``): its AUC-vs-k curve is a constant."""
    return bool((df["k"] == df["num_fields"]).all())


def budget_grid(block_runs: pd.DataFrame) -> list[int]:
    """The ks swept in a block: every k run by a method that does select fields."""
    ks: set[int] = set()
    for _, g in block_runs.groupby("label"):
        if not keeps_all_fields(g):
            ks.update(int(k) for k in g["k"])
    return sorted(ks)


@dataclass
class AukcResult:
    """AUKC per (block, label) and the mean rank per label across blocks."""

    per_block: pd.DataFrame
    overall: pd.DataFrame


def aukc_summary(loaded: LoadedResults) -> AukcResult:
    """AUKC (``stats.aukc``) per seed over the block's whole k grid, then mean ± std and ranks.

    A seed counts only if it has every k of the grid (else the areas would cover different budgets);
    a row that always keeps every field has a flat curve, so its AUKC is its AUC.
    """
    rows = []
    for block, bdf in loaded.ok.groupby("block", sort=True):
        grid = budget_grid(bdf)
        for label in sort_labels(bdf["label"]):
            g = bdf[bdf["label"] == label]
            n_fields = int(g["num_fields"].iloc[0])
            flat = keeps_all_fields(g)
            values, missing = [], set()
            for _, s in g.groupby("seed", sort=True):
                if flat:
                    values.append(float(s["test_auc"].mean()))
                    continue
                by_k = s.set_index("k")["test_auc"]
                lacking = [k for k in grid if k not in by_k.index]
                if lacking:
                    missing.update(lacking)
                    continue
                values.append(stats.aukc(grid, [by_k[k] for k in grid], n_fields))
            mean, std = stats.mean_std(values)
            rows.append({"block": block, "label": label, "n": len(values), "aukc_mean": mean,
                         "aukc_std": std, "flat": flat, "missing_k": tuple(sorted(missing))})
    per_block = pd.DataFrame(rows, columns=["block", "label", "n", "aukc_mean", "aukc_std", "flat", "missing_k"])
    # ranks compare the methods as the Friedman test does: default-parameter selection methods only
    # (ablation variants and matched-budget baselines are shown unranked), and the mean rank leaves out
    # datasets too small to rank
    ranked = ~per_block["label"].map(lambda label: is_variant(label) or is_baseline(label)).astype(bool)
    per_block["rank"] = per_block[ranked].groupby("block")["aukc_mean"].rank(ascending=False, method="average")
    rankable = ~per_block["block"].isin(unrankable_blocks(loaded))
    overall = (per_block[rankable].dropna(subset=["rank"]).groupby("label")["rank"].agg(["mean", "count"])
               .rename(columns={"mean": "mean_rank", "count": "n_blocks"}).reset_index())
    overall = overall.assign(_order=overall["label"].map(label_sort_key)).sort_values(["mean_rank", "_order"])
    return AukcResult(per_block, overall.drop(columns="_order").reset_index(drop=True))


#: a dataset whose test split has fewer positives or negatives than this (in any seed) is reported but
#: not ranked: its AUCs move by several hundredths with one row (Amazon's 44-row excerpt test split)
MIN_TEST_CLASS = 100
#: row-name suffixes of the matched-budget model-pruning baselines; compared with Light-FMP in their own
#: table, not ranked as feature-selection methods
BASELINE_SUFFIXES = ("+small", "+magnitude")


def is_baseline(label: str) -> bool:
    return label.split("[", 1)[0].endswith(BASELINE_SUFFIXES)


def unrankable_blocks(loaded: LoadedResults) -> dict[str, str]:
    """Blocks too small to rank methods, with the reason (``MIN_TEST_CLASS``)."""
    out = {}
    for block, bdf in loaded.ok.groupby("block", sort=True):
        smallest = int(min(bdf["test_positives"].min(), bdf["test_negatives"].min()))
        if 0 <= smallest < MIN_TEST_CLASS:
            out[block] = f"test split has {smallest} of one class in some seed (< {MIN_TEST_CLASS})"
    return out


@dataclass
class CdInput:
    """The methods × blocks table a Friedman/Nemenyi analysis runs on, and what it left out."""

    table: pd.DataFrame
    block_kind: str
    dropped: list[str]
    variants: list[str]
    unrankable: dict[str, str] = field(default_factory=dict)


def cd_input(loaded: LoadedResults, aukc: AukcResult, main: pd.DataFrame) -> CdInput:
    """Datasets as blocks (values: AUKC) when there are ≥ 2 of them, else (dataset, k) blocks (AUC).

    Methods missing from any block are dropped (Friedman needs complete blocks) and listed; runs with
    non-default parameters (ablation variants) are not ranked against the methods.
    """
    variants = sort_labels(label for label in aukc.per_block["label"]
                           if is_variant(label) or is_baseline(label))
    unrankable = unrankable_blocks(loaded)
    per_block = aukc.per_block[~aukc.per_block["label"].isin(variants) & ~aukc.per_block["block"].isin(unrankable)]
    per_block = per_block.dropna(subset=["aukc_mean"])
    main = main[~main["label"].isin(variants) & ~main["block"].isin(unrankable)]
    if per_block["block"].nunique() >= 2:
        table = per_block.pivot(index="block", columns="label", values="aukc_mean")
        kind = "datasets (value: AUKC)"
    else:
        cells = []
        for block, bdf in loaded.ok.groupby("block", sort=True):
            if block in unrankable:
                continue
            grid = budget_grid(bdf) or sorted(int(k) for k in bdf["k"].unique())
            bmain = main[main["block"] == block]
            for label in sort_labels(bmain["label"]):
                lm = bmain[bmain["label"] == label].set_index("k")["auc_mean"]
                flat = keeps_all_fields(bdf[bdf["label"] == label])
                for k in grid:
                    value = lm.iloc[0] if flat else lm.get(k, math.nan)
                    cells.append({"block": f"{block}, k={k}", "label": label, "value": value})
        table = (pd.DataFrame(cells).pivot(index="block", columns="label", values="value")
                 if cells else pd.DataFrame())
        kind = "(dataset, k) pairs (value: mean AUC) — fewer than 2 datasets"
    dropped = sort_labels(c for c in table.columns if table[c].isna().any())
    table = table[[c for c in sort_labels(table.columns) if c not in dropped]] if not table.empty else table
    return CdInput(table, kind, dropped, variants, unrankable)


# --------------------------------------------------------------------------------------------------
# Failed, superseded, corrupt and missing runs
# --------------------------------------------------------------------------------------------------


def _first_line(text: str, limit: int = 160) -> str:
    line = " ".join(text.strip().splitlines()[0].split()) if text.strip() else "(no reason recorded)"
    return line if len(line) <= limit else line[: limit - 1] + "…"


def failures_summary(loaded: LoadedResults) -> pd.DataFrame:
    """One row per failed/diverged record, superseded duplicate, corrupt file and missing (k, seed)."""
    runs = loaded.runs
    columns = ["kind", "block", "label", "k", "seed", "reason"]
    rows = []
    ok_keys = set(map(tuple, runs.loc[runs["status"] == "ok", ["block", "label", "k", "seed"]].to_numpy()))
    for run in runs.itertuples():
        key = (run.block, run.label, run.k, run.seed)
        if run.status != "ok":
            reason = _first_line(run.error)
            if key in ok_keys:
                reason += " (a successful run of the same row exists)"
            rows.append({"kind": run.status, "block": run.block, "label": run.label, "k": str(run.k),
                         "seed": str(run.seed), "reason": reason})
        elif run.superseded:
            rows.append({"kind": "superseded", "block": run.block, "label": run.label, "k": str(run.k),
                         "seed": str(run.seed), "reason": f"older duplicate {run.file}; the newest record is used"})
    for (block, label), g in runs.groupby(["block", "label"], sort=True):
        expected = set(g["k"])
        for seed, s in g.groupby("seed", sort=True):
            for k in sorted(expected - set(s["k"])):
                rows.append({"kind": "missing", "block": block, "label": label, "k": str(k), "seed": str(seed),
                             "reason": "no record, although this method and seed ran at other k"})
    out = pd.DataFrame(rows, columns=columns)
    if not out.empty:
        out = out.assign(_o=out["label"].map(label_sort_key), _k=out["k"].astype(int), _s=out["seed"].astype(int))
        out = out.sort_values(["block", "_o", "_k", "_s", "kind"], kind="stable").drop(columns=["_o", "_k", "_s"])
    corrupt = pd.DataFrame([{"kind": "corrupt", "block": "", "label": "", "k": "", "seed": "",
                             "reason": f"{name}: {_first_line(msg)}"} for name, msg in loaded.corrupt],
                           columns=columns)
    return pd.concat([out, corrupt], ignore_index=True) if not corrupt.empty else out.reset_index(drop=True)


# --------------------------------------------------------------------------------------------------
# Light-FMP pretraining-subset ablation
# --------------------------------------------------------------------------------------------------

ABLATION_SELECTOR = "lightfmp"


def _subset_key(params: dict) -> str | None:
    """The method parameter holding the pretraining-subset fraction: the numeric one named *subset*."""
    keys = [k for k, v in params.items() if "subset" in k.lower() and isinstance(v, (int, float))]
    return sorted(keys)[0] if keys else None


def subset_ablation(loaded: LoadedResults) -> pd.DataFrame:
    """AUC mean ± std per (block, row, k, subset fraction), only where ≥ 2 fractions were run.

    Only runs whose other parameters equal those of the plain (default) ``lightfmp`` runs are used, so
    a point never mixes the subset with another ablation.
    """
    columns = ["block", "method", "k", "subset", "n", "auc_mean", "auc_std"]
    runs = loaded.ok[loaded.ok["selector"] == ABLATION_SELECTOR]
    rows = []
    for block, bdf in runs.groupby("block", sort=True):
        keyed = []
        for run in bdf.itertuples():
            key = _subset_key(run.params)
            if key is None:
                continue
            rest = {k: v for k, v in run.params.items() if k != key}
            keyed.append((run, float(run.params[key]), repr(sorted(rest.items()))))
        if not keyed:
            continue
        plain = [rest for run, _, rest in keyed if "[" not in run.label] or [rest for _, _, rest in keyed]
        chosen = max(sorted(set(plain)), key=plain.count)
        kept = pd.DataFrame([{"method": r.method, "k": r.k, "subset": s, "test_auc": r.test_auc}
                             for r, s, rest in keyed if rest == chosen])
        if kept["subset"].nunique() < 2:
            continue
        for (method, k, subset), g in kept.groupby(["method", "k", "subset"], sort=True):
            mean, std = stats.mean_std(g["test_auc"])
            rows.append({"block": block, "method": method, "k": k, "subset": subset, "n": len(g),
                         "auc_mean": mean, "auc_std": std})
    return pd.DataFrame(rows, columns=columns)
