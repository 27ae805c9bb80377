"""Statistics for comparing feature-selection methods (SPEC §7).

Everything here is a pure function of its arguments: no files, no global state, so ``report`` can
recompute every number from stored results and tests can check each one against SciPy,
scikit-learn, scikit-posthocs or hand-worked values.

Conventions
-----------
* Higher is better (AUC). Deltas are always ``method - reference``.
* Per-seed tests are *paired by seed*: seed ``s`` of a method is compared with seed ``s`` of the
  reference, because both runs share the data split and initialisation stream.
* Undefined quantities are ``nan`` rather than an exception where a report can still be printed
  (too few pairs, a method with no shared seeds); malformed input raises ``ValueError``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
from scipy import stats as ss

ArrayLike = Sequence[float] | np.ndarray

EQUIVALENCE_THRESHOLD = 0.001
"""|ΔAUC| below this counts as practically equivalent (the BARS convention)."""


# --------------------------------------------------------------------------------------------------
# Per-seed summaries and paired tests
# --------------------------------------------------------------------------------------------------


def mean_std(values: ArrayLike) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof=1) over seeds.

    ddof=1 because seeds are a sample of the run-to-run distribution. One value has std 0.0 (no
    spread observed) rather than nan so tables stay readable; an empty input gives (nan, nan).
    NaN values propagate on purpose: a failed seed must not silently vanish from a table.
    """
    x = np.asarray(values, dtype=np.float64).ravel()
    if x.size == 0:
        return float("nan"), float("nan")
    mean = float(np.mean(x))
    std = float(np.std(x, ddof=1)) if x.size > 1 else (0.0 if np.isfinite(mean) else float("nan"))
    return mean, std


def _paired_diffs(a: ArrayLike, b: ArrayLike) -> np.ndarray:
    """Differences a - b over the pairs where both values are finite."""
    xa = np.asarray(a, dtype=np.float64).ravel()
    xb = np.asarray(b, dtype=np.float64).ravel()
    if xa.shape != xb.shape:
        raise ValueError(f"paired samples differ in length: {xa.size} vs {xb.size}")
    keep = np.isfinite(xa) & np.isfinite(xb)
    return xa[keep] - xb[keep]


def paired_ttest(a: ArrayLike, b: ArrayLike) -> float:
    """Two-sided paired t-test p-value (``scipy.stats.ttest_rel``) of ``a`` against ``b``.

    Pairs with a non-finite value on either side are dropped. Fewer than 2 remaining pairs gives
    nan (no variance estimate). All-zero differences give 1.0: no evidence of any difference,
    where SciPy would return nan. Constant non-zero differences have t = ±inf and p = 0.
    """
    d = _paired_diffs(a, b)
    if d.size < 2:
        return float("nan")
    if np.all(d == 0):
        return 1.0
    if np.all(d == d[0]):
        return 0.0
    return float(ss.ttest_rel(d, np.zeros_like(d)).pvalue)


def wilcoxon_test(a: ArrayLike, b: ArrayLike) -> float:
    """Two-sided Wilcoxon signed-rank p-value (``scipy.stats.wilcoxon``) of ``a`` against ``b``.

    The distribution-free companion of :func:`paired_ttest` for few seeds. Non-finite pairs are
    dropped; fewer than 2 pairs gives nan; all-zero differences give 1.0. Zero differences are
    otherwise handled by SciPy's default (``zero_method="wilcox"``, i.e. discarded). Note that with
    n pairs the exact test cannot go below 2 / 2**n (0.0625 for 5 seeds).
    """
    d = _paired_diffs(a, b)
    if d.size < 2:
        return float("nan")
    if np.all(d == 0):
        return 1.0
    return float(ss.wilcoxon(d).pvalue)


def wilcoxon_min_p(n_pairs: int) -> float:
    """The smallest two-sided p-value the exact Wilcoxon signed-rank test can give with ``n_pairs`` pairs.

    2 / 2**n: every difference of one sign. With 5 seeds it is 0.0625, so no Wilcoxon test over 5
    seeds can be significant at 0.05 — a report must say so rather than print the p-value as evidence.
    """
    return 2.0 / 2.0**n_pairs if n_pairs >= 1 else float("nan")


def can_reach(test: str, n_pairs: int, alpha: float = 0.05) -> bool:
    """Whether ``test`` ("t" or "wilcoxon") can reach p < ``alpha`` at all with ``n_pairs`` pairs."""
    if test == "wilcoxon":
        return wilcoxon_min_p(n_pairs) < alpha
    return n_pairs >= 2


def paired_mean_ci(a: ArrayLike, b: ArrayLike, level: float = 0.95) -> tuple[float, float, float]:
    """Mean of the paired differences a − b and its two-sided t confidence interval (the effect size
    beside a p-value). Fewer than 2 finite pairs: the interval is (nan, nan)."""
    d = _paired_diffs(a, b)
    if d.size == 0:
        return float("nan"), float("nan"), float("nan")
    mean = float(np.mean(d))
    if d.size < 2:
        return mean, float("nan"), float("nan")
    half = float(ss.t.ppf(0.5 + level / 2, d.size - 1) * np.std(d, ddof=1) / math.sqrt(d.size))
    return mean, mean - half, mean + half


def holm(pvalues: ArrayLike) -> np.ndarray:
    """Holm–Bonferroni step-down adjusted p-values, in the input order.

    Controls the family-wise error over the methods compared with a reference, and is uniformly
    more powerful than Bonferroni. With the m finite p-values sorted ascending, the i-th (1-based)
    gets ``max_{j<=i} min(1, (m - j + 1) p_(j))``, so the result is monotone in the raw p and capped
    at 1. NaN entries (tests that could not be run) stay nan and do not count towards m.
    """
    p = np.asarray(pvalues, dtype=np.float64).ravel()
    out = np.full(p.shape, np.nan)
    ok = np.flatnonzero(~np.isnan(p))
    m = ok.size
    if m == 0:
        return out
    order = ok[np.argsort(p[ok], kind="stable")]
    scaled = (m - np.arange(m)) * p[order]
    out[order] = np.minimum(1.0, np.maximum.accumulate(scaled))
    return out


def practically_equivalent(delta_auc: float, threshold: float = EQUIVALENCE_THRESHOLD) -> bool:
    """True when |ΔAUC| < threshold (BARS: 0.001 AUC is below what matters in CTR practice).

    Shown beside p-values because with large test sets tiny, irrelevant gaps become "significant".
    NaN is never equivalent.
    """
    return bool(abs(delta_auc) < threshold)


# --------------------------------------------------------------------------------------------------
# DeLong's test for correlated AUCs
# --------------------------------------------------------------------------------------------------


class DeLongResult(NamedTuple):
    """DeLong test of ``auc_a - auc_b`` on one test set.

    ``var`` is the estimated variance of ``delta`` (Var a + Var b - 2 Cov a,b); ``z = delta /
    sqrt(var)``; ``p_value`` is two-sided.
    """

    auc_a: float
    auc_b: float
    delta: float
    z: float
    p_value: float
    var: float


def _binary_labels(y_true: ArrayLike) -> np.ndarray:
    """Boolean positive mask; rejects labels other than {0, 1}."""
    y = np.asarray(y_true).ravel()
    if y.dtype != bool:
        yf = y.astype(np.float64)
        if not np.all((yf == 0) | (yf == 1)):
            raise ValueError("y_true must be binary with values in {0, 1}")
        y = yf == 1
    return y


def delong_covariance(
    y_true: ArrayLike, scores: Sequence[ArrayLike] | np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """AUCs of K score vectors on the same labels and DeLong's K×K covariance of those AUCs.

    Uses the fast midrank algorithm of Sun & Xu (2014), O(K n log n) instead of the
    O(n_pos · n_neg) pairwise kernel of DeLong et al. (1988): with midranks T_z of each positive in
    the pooled sample and T_x within the positives, the structural component of positive i is
    V10_i = (T_z,i - T_x,i) / n_neg, i.e. the fraction of negatives it beats (ties count 1/2);
    symmetrically V01_j = 1 - (T_z,j - T_y,j) / n_pos for negative j. Then AUC = mean(V10) and
    Cov = S10 / n_pos + S01 / n_neg with S the sample (ddof=1) covariances of the components.
    Needs at least two positives and two negatives.
    """
    pos = _binary_labels(y_true)
    s = np.atleast_2d(np.asarray(scores, dtype=np.float64))
    if s.ndim != 2 or s.shape[1] != pos.size:
        raise ValueError(f"scores must be (K, {pos.size}); got shape {s.shape}")
    if not np.all(np.isfinite(s)):
        raise ValueError("scores contain nan or inf")
    m = int(pos.sum())
    n = pos.size - m
    if m < 2 or n < 2:
        raise ValueError(f"DeLong needs >= 2 positives and >= 2 negatives; got {m} and {n}")
    x, y = s[:, pos], s[:, ~pos]
    tx = ss.rankdata(x, axis=1)
    ty = ss.rankdata(y, axis=1)
    tz = ss.rankdata(np.concatenate([x, y], axis=1), axis=1)
    v10 = (tz[:, :m] - tx) / n
    v01 = 1.0 - (tz[:, m:] - ty) / m
    aucs = v10.mean(axis=1)
    cov = np.atleast_2d(np.cov(v10)) / m + np.atleast_2d(np.cov(v01)) / n
    return aucs, cov


def delong_test(y_true: ArrayLike, scores_a: ArrayLike, scores_b: ArrayLike) -> DeLongResult:
    """DeLong et al. (1988) test that two models have equal AUC on the same test set.

    The two AUCs are correlated because they score the same examples, so their difference is
    tested with the joint covariance from :func:`delong_covariance`. When the variance of the
    difference is 0 (e.g. identical scores) a zero delta gives z = 0, p = 1 and a non-zero delta
    gives z = ±inf, p = 0.
    """
    aucs, cov = delong_covariance(y_true, [scores_a, scores_b])
    delta = float(aucs[0] - aucs[1])
    var = float(max(cov[0, 0] + cov[1, 1] - 2.0 * cov[0, 1], 0.0))
    if var <= 0.0 or delta == 0.0:
        z = 0.0 if delta == 0.0 else math.copysign(math.inf, delta)
    else:
        z = delta / math.sqrt(var)
    p = float(2.0 * ss.norm.sf(abs(z)))
    return DeLongResult(float(aucs[0]), float(aucs[1]), delta, float(z), min(p, 1.0), var)


# --------------------------------------------------------------------------------------------------
# Curves, selections, rank agreement
# --------------------------------------------------------------------------------------------------


def aukc(ks: ArrayLike, aucs: ArrayLike, n_fields: int) -> float:
    """Normalised area under the AUC-versus-k curve: one number for a whole budget sweep.

    x = k / n_fields (so datasets with different field counts are comparable); points are sorted
    by k; the trapezoid area is divided by the covered range x_max - x_min, making the result a
    mean AUC over the swept budgets: a flat curve at value a gives exactly a. A single k returns
    its AUC. ks must be distinct and within [0, n_fields]; aucs must be finite.
    """
    k = np.asarray(ks, dtype=np.float64).ravel()
    a = np.asarray(aucs, dtype=np.float64).ravel()
    if k.size != a.size or k.size == 0:
        raise ValueError(f"ks and aucs must be non-empty, equal length; got {k.size}, {a.size}")
    if n_fields <= 0:
        raise ValueError(f"n_fields must be positive; got {n_fields}")
    if np.any(k < 0) or np.any(k > n_fields):
        raise ValueError(f"every k must lie in [0, {n_fields}]")
    if np.unique(k).size != k.size:
        raise ValueError("ks must be distinct")
    if not np.all(np.isfinite(a)):
        raise ValueError("aucs must be finite")
    order = np.argsort(k)
    x, y = k[order] / n_fields, a[order]
    if x.size == 1:
        return float(y[0])
    area = float(np.sum(np.diff(x) * (y[1:] + y[:-1]) / 2.0))
    return area / float(x[-1] - x[0])


def selection_precision_recall(
    selected: Sequence[str], relevant: Sequence[str]
) -> tuple[float, float]:
    """Precision and recall of a selected field set against the known relevant fields.

    Used on ``synthetic`` data where the informative fields are planted. Inputs are treated as
    sets (duplicates ignored). An empty selection has undefined precision (nan); an empty relevant
    set has undefined recall (nan).
    """
    s, r = set(selected), set(relevant)
    hit = len(s & r)
    precision = hit / len(s) if s else float("nan")
    recall = hit / len(r) if r else float("nan")
    return precision, recall


def kendall_tau_matrix(scores: Mapping[str, ArrayLike]) -> pd.DataFrame:
    """Pairwise Kendall τ-b (``scipy.stats.kendalltau``) between methods' per-field score vectors.

    Measures whether methods agree on the *ranking* of fields regardless of score scale. Rows and
    columns follow the mapping's order; the diagonal is 1; a pair involving a constant vector is
    nan (τ undefined). All vectors must score the same fields, hence have equal length.
    """
    names = list(scores)
    vecs = [np.asarray(scores[n], dtype=np.float64).ravel() for n in names]
    if len({v.size for v in vecs}) > 1:
        raise ValueError("all score vectors must have the same length")
    k = len(names)
    out = np.eye(k)
    for i in range(k):
        for j in range(i + 1, k):
            tau = float(ss.kendalltau(vecs[i], vecs[j]).statistic)
            out[i, j] = out[j, i] = tau
    return pd.DataFrame(out, index=names, columns=names)


# --------------------------------------------------------------------------------------------------
# Across methods: one reference over seeds, many methods over datasets
# --------------------------------------------------------------------------------------------------


def compare_to_reference(
    df: pd.DataFrame,
    method_col: str,
    seed_col: str,
    value_col: str,
    reference: str,
    threshold: float = EQUIVALENCE_THRESHOLD,
) -> pd.DataFrame:
    """Compare every method with ``reference`` (e.g. ``none`` or the best method) over seeds.

    Pairing is by seed: a method's value for seed s is matched with the reference's value for the
    same seed; seeds missing or non-finite on either side are dropped from that pair of methods.
    One row per other method, in order of first appearance, with columns: ``method``, ``n_pairs``,
    ``mean`` (method mean over the paired seeds), ``mean_delta`` (mean of method - reference) with its
    95 % t interval (``ci_low``, ``ci_high``),
    ``ttest_p``, ``wilcoxon_p``, their Holm-adjusted versions across the methods compared
    (``ttest_p_holm``, ``wilcoxon_p_holm``), and ``equivalent`` (|mean_delta| < threshold).
    A (method, seed) appearing twice is ambiguous and raises ``ValueError``.
    """
    for col in (method_col, seed_col, value_col):
        if col not in df.columns:
            raise ValueError(f"column {col!r} not in table")
    if df.duplicated([method_col, seed_col]).any():
        raise ValueError(f"duplicate ({method_col}, {seed_col}) rows: pairing by seed is ambiguous")
    methods = list(pd.unique(df[method_col]))
    if reference not in methods:
        raise ValueError(f"reference method {reference!r} not in table")
    wide = df.pivot(index=seed_col, columns=method_col, values=value_col).astype(np.float64)
    ref = wide[reference]
    rows: list[dict[str, Any]] = []
    for name in methods:
        if name == reference:
            continue
        both = wide[name].notna() & ref.notna() & np.isfinite(wide[name]) & np.isfinite(ref)
        a, b = wide[name][both].to_numpy(), ref[both].to_numpy()
        delta = float(np.mean(a - b)) if a.size else float("nan")
        rows.append(
            {
                "method": name,
                "n_pairs": int(a.size),
                "mean": float(np.mean(a)) if a.size else float("nan"),
                "mean_delta": delta,
                "ci_low": paired_mean_ci(a, b)[1],
                "ci_high": paired_mean_ci(a, b)[2],
                "ttest_p": paired_ttest(a, b),
                "wilcoxon_p": wilcoxon_test(a, b),
                "equivalent": practically_equivalent(delta, threshold),
            }
        )
    cols = ["method", "n_pairs", "mean", "mean_delta", "ci_low", "ci_high", "ttest_p", "wilcoxon_p", "ttest_p_holm",
            "wilcoxon_p_holm", "equivalent"]
    out = pd.DataFrame(rows, columns=[c for c in cols if not c.endswith("_holm")])
    out["ttest_p_holm"] = holm(out["ttest_p"].to_numpy(dtype=np.float64))
    out["wilcoxon_p_holm"] = holm(out["wilcoxon_p"].to_numpy(dtype=np.float64))
    return out[cols]


def critical_difference(k: int, n_blocks: int, alpha: float = 0.05) -> float:
    """Nemenyi critical difference of average ranks (Demšar 2006, eq. 5).

    CD = q_alpha * sqrt(k (k + 1) / (6 N)), with q_alpha the studentized-range quantile for k
    groups and infinite degrees of freedom divided by sqrt(2) (Demšar's table: 2.728 for k = 5,
    3.164 for k = 10 at alpha = 0.05). Two methods whose average ranks differ by more than CD differ
    significantly. Needs k >= 2 and N >= 1, else nan.
    """
    if k < 2 or n_blocks < 1:
        return float("nan")
    q = ss.studentized_range.ppf(1.0 - alpha, k, np.inf) / math.sqrt(2.0)
    return float(q * math.sqrt(k * (k + 1) / (6.0 * n_blocks)))


class FriedmanResult(NamedTuple):
    """Friedman test (and its Iman–Davenport F form) over datasets, Nemenyi post-hoc and critical
    difference, and pairwise Wilcoxon–Holm p-values (the cliques of Benavoli et al. 2016)."""

    statistic: float
    p_value: float
    avg_ranks: pd.Series
    nemenyi: pd.DataFrame
    cd: float
    iman_davenport: float = float("nan")
    iman_davenport_p: float = float("nan")
    wilcoxon_holm: pd.DataFrame | None = None
    n_blocks: int = 0


def iman_davenport(chi2: float, n_blocks: int, k: int) -> tuple[float, float]:
    """Iman–Davenport's F = (N−1)χ² / (N(k−1) − χ²) on (k−1, (k−1)(N−1)) degrees of freedom.

    Friedman's χ² is conservative for few blocks (Demšar 2006 §3.2.2); F is the recommended form.
    A perfect concordance (denominator 0) gives F = inf and p = 0.
    """
    if not (math.isfinite(chi2) and n_blocks >= 2 and k >= 2):
        return float("nan"), float("nan")
    denominator = n_blocks * (k - 1) - chi2
    if denominator <= 0:
        return float("inf"), 0.0
    f = (n_blocks - 1) * chi2 / denominator
    return float(f), float(ss.f.sf(f, k - 1, (k - 1) * (n_blocks - 1)))


def wilcoxon_holm(table: pd.DataFrame) -> pd.DataFrame:
    """Pairwise two-sided Wilcoxon signed-rank p-values between the columns (methods) of ``table``
    over its rows (blocks), Holm-adjusted over all pairs; a symmetric matrix with 1 on the diagonal.

    Methods whose adjusted p ≥ alpha form cliques (joined by a bar in the diagram) — the pairwise
    procedure Benavoli, Corani and Mangili (2016) recommend over the Nemenyi mean-rank test.
    """
    t = table.dropna(axis=0, how="any").astype(np.float64)
    names = list(t.columns)
    pairs = [(i, j) for i in range(len(names)) for j in range(i + 1, len(names))]
    raw = [wilcoxon_test(t.iloc[:, i], t.iloc[:, j]) for i, j in pairs]
    adjusted = holm(raw)
    out = pd.DataFrame(np.ones((len(names), len(names))), index=names, columns=names)
    for (i, j), p in zip(pairs, adjusted, strict=True):
        out.iloc[i, j] = out.iloc[j, i] = 1.0 if math.isnan(p) else p
    return out


def friedman_nemenyi(table: pd.DataFrame, alpha: float = 0.05) -> FriedmanResult:
    """Friedman test and Nemenyi post-hoc for methods compared across datasets (Demšar 2006).

    ``table`` has one row per block (dataset) and one column per method, higher is better (AUC).
    Ranks are taken within each row with rank 1 = best and ties sharing the average rank;
    ``avg_ranks`` is their mean per method. Rows with any missing value are dropped (the tests
    need complete blocks). The Friedman statistic and p come from
    ``scipy.stats.friedmanchisquare`` and need >= 3 methods (nan otherwise); the pairwise
    p-values come from ``scikit_posthocs.posthoc_nemenyi_friedman`` (symmetric in rank direction,
    so it is fed the table as is); ``cd`` is :func:`critical_difference` at ``alpha``.
    """
    import scikit_posthocs as sp

    t = table.dropna(axis=0, how="any").astype(np.float64)
    n, k = t.shape
    if n == 0 or k == 0:
        raise ValueError("friedman_nemenyi needs at least one complete row and one method")
    ranks = ss.rankdata(-t.to_numpy(), axis=1, method="average")
    avg_ranks = pd.Series(ranks.mean(axis=0), index=t.columns, name="avg_rank")
    if k >= 3 and n >= 2:
        res = ss.friedmanchisquare(*(t[c].to_numpy() for c in t.columns))
        stat, p = float(res.statistic), float(res.pvalue)
    else:
        stat, p = float("nan"), float("nan")
    if k >= 2:
        nemenyi = sp.posthoc_nemenyi_friedman(t)
    else:
        nemenyi = pd.DataFrame(np.ones((k, k)), index=t.columns, columns=t.columns)
    f, f_p = iman_davenport(stat, n, k)
    return FriedmanResult(stat, p, avg_ranks, nemenyi, critical_difference(k, n, alpha), f, f_p,
                          wilcoxon_holm(t), n)


def plot_cd_diagram(
    avg_ranks: pd.Series,
    nemenyi_pvalues: pd.DataFrame,
    ax: Any,
    alpha: float = 0.05,
    cd: float | None = None,
) -> dict[str, list]:
    """Draw a critical-difference diagram on ``ax`` (no file is written).

    Thin wrapper over ``scikit_posthocs.critical_difference_diagram`` (0.17 signature:
    ``ranks, sig_matrix, *, cd, alpha, ax, ...``): methods are placed at their average rank and
    groups not separated by Nemenyi at ``alpha`` are joined by a crossbar; ``cd`` optionally draws
    the critical-difference bar. Returns the dict of artists it created.

    The methods go in as integer codes and their labels are written back afterwards: scikit-posthocs
    finds the crossbars as Python sets of the index labels, and with strings their order — which
    decides the level of two crossbars that start at the same rank — followed the interpreter's
    string-hash seed, so the same results drew different figures from one run to the next.
    """
    import scikit_posthocs as sp

    names = list(avg_ranks.index)
    codes = {name: i for i, name in enumerate(names)}
    artists = sp.critical_difference_diagram(avg_ranks.rename(index=codes),
                                             nemenyi_pvalues.rename(index=codes, columns=codes),
                                             cd=cd, alpha=alpha, ax=ax)
    for text in artists["labels"]:
        left = re.match(r"^(\d+)( \(.*\))$", text.get_text())
        right = re.match(r"^(\(.*\) )(\d+)$", text.get_text())
        if left:
            text.set_text(names[int(left.group(1))] + left.group(2))
        elif right:
            text.set_text(right.group(1) + names[int(right.group(2))])
    return artists
