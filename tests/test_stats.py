"""Tests for fmpbench.stats against SciPy, scikit-learn, scikit-posthocs and hand-worked numbers."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import scikit_posthocs as sp
from matplotlib.figure import Figure
from scipy import stats as ss
from sklearn.metrics import roc_auc_score

from fmpbench import stats

# --------------------------------------------------------------------------------------------------
# mean_std, paired tests
# --------------------------------------------------------------------------------------------------


def test_mean_std_hand_values():
    m, s = stats.mean_std([1.0, 2.0, 3.0, 4.0])
    assert m == pytest.approx(2.5)
    assert s == pytest.approx(math.sqrt(5.0 / 3.0))  # sum of squares 5, ddof=1 -> 5/3


def test_mean_std_single_and_empty():
    assert stats.mean_std([0.8]) == (0.8, 0.0)
    m, s = stats.mean_std([])
    assert math.isnan(m) and math.isnan(s)


def test_mean_std_nan_propagates():
    m, s = stats.mean_std([0.8, float("nan")])
    assert math.isnan(m) and math.isnan(s)


def test_paired_ttest_matches_scipy_and_hand():
    d = np.arange(1, 6) * 0.01
    b = np.array([0.70, 0.71, 0.72, 0.73, 0.74])
    a = b + d
    # hand: mean 0.03, sd 0.0158114 -> t = 0.03 / (0.0158114 / sqrt 5) = 4.2426, df 4
    assert stats.paired_ttest(a, b) == pytest.approx(2 * ss.t.sf(3 * math.sqrt(2.0), 4), rel=1e-6)
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=8), rng.normal(size=8)
    assert stats.paired_ttest(x, y) == pytest.approx(ss.ttest_rel(x, y).pvalue, rel=1e-12)


def test_paired_ttest_edge_cases():
    assert stats.paired_ttest([0.7, 0.8, 0.9], [0.7, 0.8, 0.9]) == 1.0
    assert math.isnan(stats.paired_ttest([0.7], [0.6]))
    assert math.isnan(stats.paired_ttest([], []))
    # nan pairs dropped: only one pair left
    assert math.isnan(stats.paired_ttest([0.7, float("nan")], [0.6, 0.5]))
    # nan pair dropped, rest compared as usual
    a, b = [0.71, 0.83, 0.92, float("nan")], [0.70, 0.80, 0.90, 0.5]
    assert stats.paired_ttest(a, b) == pytest.approx(ss.ttest_rel(a[:3], b[:3]).pvalue)
    with pytest.raises(ValueError):
        stats.paired_ttest([1.0, 2.0], [1.0])


def test_paired_ttest_constant_nonzero_difference():
    assert stats.paired_ttest([1.0, 2.0, 3.0], [0.0, 1.0, 2.0]) == 0.0


def test_wilcoxon_hand_and_scipy():
    b = np.array([0.70, 0.71, 0.72, 0.73, 0.74])
    a = b + np.arange(1, 6) * 0.01
    # all 5 differences positive: exact two-sided p = 2 / 2**5
    assert stats.wilcoxon_test(a, b) == pytest.approx(0.0625)
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=12), rng.normal(size=12)
    assert stats.wilcoxon_test(x, y) == pytest.approx(ss.wilcoxon(x, y).pvalue, rel=1e-12)


def test_wilcoxon_edge_cases():
    assert stats.wilcoxon_test([0.7, 0.8, 0.9], [0.7, 0.8, 0.9]) == 1.0
    assert math.isnan(stats.wilcoxon_test([0.7], [0.6]))
    assert math.isnan(stats.wilcoxon_test([0.7, float("nan")], [0.6, 0.5]))


# --------------------------------------------------------------------------------------------------
# Holm, equivalence
# --------------------------------------------------------------------------------------------------


def test_holm_hand_values():
    # sorted: 0.005*4=0.02, 0.01*3=0.03, 0.03*2=0.06, 0.04*1=0.04 -> running max keeps 0.06
    got = stats.holm([0.01, 0.04, 0.03, 0.005])
    np.testing.assert_allclose(got, [0.03, 0.06, 0.06, 0.02], rtol=1e-12)


def test_holm_monotone_and_capped():
    # 0.3*2 = 0.6, then 0.5*1 = 0.5 -> monotone max 0.6
    np.testing.assert_allclose(stats.holm([0.5, 0.3]), [0.6, 0.6])
    # 0.6*2 = 1.2 capped to 1
    np.testing.assert_allclose(stats.holm([0.7, 0.6]), [1.0, 1.0])
    np.testing.assert_allclose(stats.holm([0.2]), [0.2])


def test_holm_nan_excluded_from_count():
    # m = 2, not 3: 0.01*2 = 0.02, 0.04*1 = 0.04
    got = stats.holm([0.01, float("nan"), 0.04])
    assert math.isnan(got[1])
    np.testing.assert_allclose(got[[0, 2]], [0.02, 0.04])
    assert stats.holm([]).shape == (0,)
    assert np.isnan(stats.holm([float("nan")])).all()


def test_practically_equivalent():
    assert stats.practically_equivalent(0.0009)
    assert stats.practically_equivalent(-0.0009)
    assert not stats.practically_equivalent(0.001)
    assert not stats.practically_equivalent(-0.002)
    assert stats.practically_equivalent(0.004, threshold=0.005)
    assert not stats.practically_equivalent(float("nan"))


# --------------------------------------------------------------------------------------------------
# DeLong
# --------------------------------------------------------------------------------------------------


def _brute_force_components(y, s):
    """Structural components V10, V01 from the O(n_pos * n_neg) kernel of DeLong et al. (1988)."""
    y = np.asarray(y).astype(bool)
    x, z = s[y], s[~y]
    psi = (x[:, None] > z[None, :]) + 0.5 * (x[:, None] == z[None, :])
    return psi.mean(axis=1), psi.mean(axis=0)


def _brute_force_cov(y, sa, sb):
    m, n = int(np.sum(y)), int(np.size(y) - np.sum(y))
    a10, a01 = _brute_force_components(y, sa)
    b10, b01 = _brute_force_components(y, sb)
    c10 = np.cov(np.vstack([a10, b10]))
    c01 = np.cov(np.vstack([a01, b01]))
    return np.array([a10.mean(), b10.mean()]), c10 / m + c01 / n


def _noisy_pair(rng, n, noise_a, noise_b, pos_rate=0.3):
    y = (rng.random(n) < pos_rate).astype(int)
    latent = y * 1.0 + rng.normal(size=n)
    return y, latent + noise_a * rng.normal(size=n), latent + noise_b * rng.normal(size=n)


@pytest.mark.parametrize("decimals", [None, 1])
def test_delong_auc_matches_sklearn(decimals):
    rng = np.random.default_rng(2)
    y, a, b = _noisy_pair(rng, 1000, 0.5, 1.5)
    if decimals is not None:  # heavy ties
        a, b = np.round(a, decimals), np.round(b, decimals)
    res = stats.delong_test(y, a, b)
    assert res.auc_a == pytest.approx(roc_auc_score(y, a), abs=1e-9)
    assert res.auc_b == pytest.approx(roc_auc_score(y, b), abs=1e-9)
    assert res.delta == pytest.approx(res.auc_a - res.auc_b, abs=1e-15)


@pytest.mark.parametrize("decimals", [None, 1, 0])
def test_delong_single_variance_matches_brute_force(decimals):
    rng = np.random.default_rng(3)
    y, a, _ = _noisy_pair(rng, 150, 1.0, 1.0)
    if decimals is not None:
        a = np.round(a, decimals)
    aucs, cov = stats.delong_covariance(y, [a])
    v10, v01 = _brute_force_components(y, a)
    m, n = int(y.sum()), int((1 - y).sum())
    var_bf = np.var(v10, ddof=1) / m + np.var(v01, ddof=1) / n
    assert cov.shape == (1, 1)
    assert aucs[0] == pytest.approx(v10.mean(), abs=1e-12)
    assert cov[0, 0] == pytest.approx(var_bf, rel=1e-10)


def test_delong_difference_matches_brute_force():
    rng = np.random.default_rng(4)
    y, a, b = _noisy_pair(rng, 200, 0.8, 1.2)
    b = np.round(b, 1)
    aucs_bf, cov_bf = _brute_force_cov(y, a, b)
    aucs, cov = stats.delong_covariance(y, np.vstack([a, b]))
    np.testing.assert_allclose(aucs, aucs_bf, atol=1e-12)
    np.testing.assert_allclose(cov, cov_bf, rtol=1e-10)
    res = stats.delong_test(y, a, b)
    var_bf = cov_bf[0, 0] + cov_bf[1, 1] - 2 * cov_bf[0, 1]
    z_bf = (aucs_bf[0] - aucs_bf[1]) / math.sqrt(var_bf)
    assert res.var == pytest.approx(var_bf, rel=1e-10)
    assert res.z == pytest.approx(z_bf, rel=1e-10)
    assert res.p_value == pytest.approx(2 * ss.norm.sf(abs(z_bf)), rel=1e-10)


def test_delong_identical_scores_p_one():
    rng = np.random.default_rng(5)
    y, a, _ = _noisy_pair(rng, 500, 1.0, 1.0)
    res = stats.delong_test(y, a, a.copy())
    assert res.delta == 0.0 and res.z == 0.0 and res.p_value == 1.0 and res.var == 0.0


def test_delong_zero_variance_nonzero_delta():
    y = [0, 0, 1, 1]
    res = stats.delong_test(y, [0.0, 1.0, 2.0, 3.0], [3.0, 2.0, 1.0, 0.0])
    assert (res.auc_a, res.auc_b, res.var) == (1.0, 0.0, 0.0)
    assert res.z == math.inf and res.p_value == 0.0


def test_delong_better_model_significant():
    rng = np.random.default_rng(6)
    y, a, b = _noisy_pair(rng, 5000, 0.3, 2.0)
    res = stats.delong_test(y, a, b)
    assert res.delta > 0 and res.z > 0
    assert res.p_value < 1e-3
    # antisymmetric in the argument order
    rev = stats.delong_test(y, b, a)
    assert rev.z == pytest.approx(-res.z) and rev.p_value == pytest.approx(res.p_value)


def test_delong_null_pvalues_roughly_uniform():
    rng = np.random.default_rng(7)
    ps = np.array([stats.delong_test(*_noisy_pair(rng, 300, 1.0, 1.0)).p_value for _ in range(200)])
    assert 0.01 <= np.mean(ps < 0.05) <= 0.10
    assert 0.40 <= np.mean(ps < 0.5) <= 0.60
    assert ss.kstest(ps, "uniform").pvalue > 1e-3


def test_delong_label_validation():
    s = np.arange(6, dtype=float)
    with pytest.raises(ValueError):
        stats.delong_test([0, 1, 2, 0, 1, 0], s, s)  # not binary
    with pytest.raises(ValueError):
        stats.delong_test([0, 0, 0, 0, 0, 1], s, s)  # one positive
    with pytest.raises(ValueError):
        stats.delong_test([0, 1, 0, 1, 0, 1], s, s[:5])  # length mismatch
    res = stats.delong_test(np.array([0, 1, 0, 1, 0, 1], dtype=bool), s, s[::-1])
    assert res.auc_a == pytest.approx(roc_auc_score([0, 1, 0, 1, 0, 1], s))


# --------------------------------------------------------------------------------------------------
# AUKC, selection, Kendall
# --------------------------------------------------------------------------------------------------


def test_aukc_hand_value_and_sorting():
    # x = k/F = .25, .5, 1; trapezoids .25*(.7+.8)/2 + .5*(.8+.8)/2 = .1875 + .4 = .5875; / .75
    assert stats.aukc([4, 1, 2], [0.8, 0.7, 0.8], n_fields=4) == pytest.approx(0.5875 / 0.75)


def test_aukc_flat_curve_and_single_point():
    assert stats.aukc([2, 5, 10], [0.8, 0.8, 0.8], 10) == pytest.approx(0.8, rel=1e-14)
    assert stats.aukc([3], [0.77], 10) == 0.77
    # linear curve from .7 to .8 over the range -> mean .75
    assert stats.aukc([0, 5, 10], [0.7, 0.75, 0.8], 10) == pytest.approx(0.75)


def test_aukc_rejects_bad_input():
    with pytest.raises(ValueError):
        stats.aukc([1, 1], [0.7, 0.8], 4)
    with pytest.raises(ValueError):
        stats.aukc([1, 5], [0.7, 0.8], 4)
    with pytest.raises(ValueError):
        stats.aukc([1, 2], [0.7], 4)


def test_selection_precision_recall():
    p, r = stats.selection_precision_recall(["a", "b", "c"], ["b", "c", "d", "e"])
    assert p == pytest.approx(2 / 3) and r == pytest.approx(0.5)
    assert stats.selection_precision_recall(["a"], ["a"]) == (1.0, 1.0)
    p, r = stats.selection_precision_recall([], ["a"])
    assert math.isnan(p) and r == 0.0


def test_kendall_tau_matrix_hand_and_scipy():
    rng = np.random.default_rng(8)
    scores = {
        "m1": np.array([1.0, 2.0, 3.0, 4.0]),
        "m2": np.array([1.0, 2.0, 4.0, 3.0]),  # one discordant pair of 6 -> (5 - 1) / 6
        "m3": np.array([4.0, 3.0, 2.0, 1.0]),
        "m4": rng.normal(size=4),
    }
    t = stats.kendall_tau_matrix(scores)
    assert list(t.index) == list(t.columns) == ["m1", "m2", "m3", "m4"]
    np.testing.assert_allclose(np.diag(t), 1.0)
    assert t.loc["m1", "m2"] == pytest.approx(4 / 6)
    assert t.loc["m1", "m3"] == pytest.approx(-1.0)
    assert t.loc["m2", "m4"] == pytest.approx(ss.kendalltau(scores["m2"], scores["m4"]).statistic)
    np.testing.assert_allclose(t.to_numpy(), t.to_numpy().T)
    with pytest.raises(ValueError):
        stats.kendall_tau_matrix({"a": np.ones(3), "b": np.ones(4)})


# --------------------------------------------------------------------------------------------------
# compare_to_reference
# --------------------------------------------------------------------------------------------------


def _runs_table():
    ref = np.array([0.70, 0.71, 0.72, 0.73, 0.74])
    rows = []
    for seed, v in enumerate(ref):
        rows.append(("none", seed, v))
        rows.append(("A", seed, v + 0.01 * (seed + 1)))
        rows.append(("B", seed, v + [0.0005, -0.0003, 0.0002, 0.00015, -0.0001][seed]))
        if seed != 2:  # C misses seed 2
            rows.append(("C", seed, v - 0.02 - 0.001 * seed))
    return pd.DataFrame(rows, columns=["method", "seed", "auc"]).sample(frac=1.0, random_state=0)


def test_compare_to_reference_pairs_by_seed():
    df = _runs_table()
    out = stats.compare_to_reference(df, "method", "seed", "auc", reference="none")
    assert set(out["method"]) == {"A", "B", "C"}
    out = out.set_index("method")
    a = out.loc["A"]
    assert a["n_pairs"] == 5
    assert a["mean_delta"] == pytest.approx(0.03)
    assert a["ttest_p"] == pytest.approx(2 * ss.t.sf(3 * math.sqrt(2.0), 4), rel=1e-6)
    assert a["wilcoxon_p"] == pytest.approx(0.0625)
    assert not a["equivalent"]
    assert out.loc["B", "equivalent"]
    assert out.loc["B", "mean_delta"] == pytest.approx(0.00045 / 5)
    assert out.loc["C", "n_pairs"] == 4
    assert out.loc["C", "mean_delta"] == pytest.approx(-0.02 - 0.001 * np.mean([0, 1, 3, 4]))
    # Holm across the three methods compared
    for col in ("ttest_p", "wilcoxon_p"):
        np.testing.assert_allclose(out[f"{col}_holm"], stats.holm(out[col].to_numpy()))
    # C's Wilcoxon: 4 negative differences -> exact 2 / 2**4
    assert out.loc["C", "wilcoxon_p"] == pytest.approx(0.125)


def test_compare_to_reference_no_shared_seeds():
    df = pd.concat([_runs_table(), pd.DataFrame({"method": ["D"], "seed": [99], "auc": [0.9]})])
    out = stats.compare_to_reference(df, "method", "seed", "auc", "none").set_index("method")
    assert out.loc["D", "n_pairs"] == 0
    assert np.isnan(out.loc["D", ["mean_delta", "ttest_p", "ttest_p_holm"]].astype(float)).all()
    assert not out.loc["D", "equivalent"]
    # D's nan does not count in Holm: still m = 3 over A, B, C
    np.testing.assert_allclose(
        out.loc[["A", "B", "C"], "ttest_p_holm"], stats.holm(out.loc[["A", "B", "C"], "ttest_p"])
    )


def test_compare_to_reference_errors():
    df = _runs_table()
    with pytest.raises(ValueError):
        stats.compare_to_reference(df, "method", "seed", "auc", reference="missing")
    with pytest.raises(ValueError):
        stats.compare_to_reference(pd.concat([df, df.iloc[:1]]), "method", "seed", "auc", "none")


# --------------------------------------------------------------------------------------------------
# Friedman, Nemenyi, CD
# --------------------------------------------------------------------------------------------------

# Demšar (2006), Table 5(a): q_alpha for the two-tailed Nemenyi test, k = 2..10 (printed to 3
# decimals, some truncated rather than rounded, e.g. 2.3437 -> 2.343, hence the 1e-3 tolerance).
DEMSAR_Q = {
    0.05: [1.960, 2.343, 2.569, 2.728, 2.850, 2.949, 3.031, 3.102, 3.164],
    0.10: [1.645, 2.052, 2.291, 2.459, 2.589, 2.693, 2.780, 2.855, 2.920],
}


@pytest.mark.parametrize("alpha", [0.05, 0.10])
def test_critical_difference_matches_demsar_table(alpha):
    n = 7
    for k, q in zip(range(2, 11), DEMSAR_Q[alpha], strict=True):
        scale = math.sqrt(k * (k + 1) / (6.0 * n))
        assert stats.critical_difference(k, n, alpha) == pytest.approx(q * scale, abs=1e-3 * scale)
    assert math.isnan(stats.critical_difference(1, n))


def _friedman_table():
    # ranks (1 = best): three rows A > B > C, one row B > A > C
    return pd.DataFrame(
        [[0.80, 0.79, 0.75], [0.81, 0.80, 0.78], [0.70, 0.69, 0.60], [0.76, 0.77, 0.71]],
        columns=["A", "B", "C"],
        index=["d1", "d2", "d3", "d4"],
    )


def test_friedman_hand_values():
    res = stats.friedman_nemenyi(_friedman_table())
    pd.testing.assert_series_equal(
        res.avg_ranks, pd.Series([1.25, 1.75, 3.0], index=["A", "B", "C"], name="avg_rank")
    )
    # chi2_F = 12N/(k(k+1)) * (sum R^2 - k(k+1)^2/4) = 4 * (13.625 - 12) = 6.5; df 2 -> p = e^-3.25
    assert res.statistic == pytest.approx(6.5)
    assert res.p_value == pytest.approx(math.exp(-3.25))
    # CD = 2.343 * sqrt(3*4 / (6*4))
    assert res.cd == pytest.approx(2.343 * math.sqrt(0.5), abs=1e-3)


def test_friedman_nemenyi_matches_scipy_and_posthocs():
    rng = np.random.default_rng(9)
    t = pd.DataFrame(
        rng.normal(size=(8, 5)) + np.arange(5) * 0.5, columns=list("pqrst"), index=range(8)
    )
    t.iloc[0, :2] = 0.5  # a tie inside a block
    res = stats.friedman_nemenyi(t)
    ref = ss.friedmanchisquare(*(t[c] for c in t.columns))
    assert res.statistic == pytest.approx(ref.statistic)
    assert res.p_value == pytest.approx(ref.pvalue)
    pd.testing.assert_frame_equal(res.nemenyi, sp.posthoc_nemenyi_friedman(t))
    expected = pd.Series(ss.rankdata(-t.to_numpy(), axis=1).mean(axis=0), index=t.columns)
    np.testing.assert_allclose(res.avg_ranks.to_numpy(), expected.to_numpy())
    # a column beating every other in every block gets average rank exactly 1
    dominant = stats.friedman_nemenyi(t.assign(top=t.max(axis=1) + 1.0))
    assert dominant.avg_ranks["top"] == 1.0
    # Nemenyi p for one pair by hand: q = |R_i - R_j| / sqrt(k(k+1)/(6N)), p = P(Q > q sqrt 2)
    q = abs(res.avg_ranks["p"] - res.avg_ranks["t"]) / math.sqrt(5 * 6 / (6 * 8))
    p_hand = ss.studentized_range.sf(q * math.sqrt(2), 5, np.inf)
    assert res.nemenyi.loc["p", "t"] == pytest.approx(p_hand)


def test_friedman_two_methods_and_missing_rows():
    t = _friedman_table()[["A", "B"]]
    res = stats.friedman_nemenyi(t)
    assert math.isnan(res.statistic) and math.isnan(res.p_value)
    assert res.nemenyi.shape == (2, 2)
    assert res.cd == pytest.approx(1.960 * math.sqrt(2 * 3 / 24), abs=1e-3)
    t3 = _friedman_table()
    t3.loc["d5"] = [0.9, np.nan, 0.1]
    res3 = stats.friedman_nemenyi(t3)
    assert res3.statistic == pytest.approx(6.5)  # incomplete block dropped


def test_plot_cd_diagram_draws_on_axes():
    rng = np.random.default_rng(10)
    t = pd.DataFrame(rng.normal(size=(10, 4)) + np.arange(4), columns=["w", "x", "y", "z"])
    res = stats.friedman_nemenyi(t)
    ax = Figure().subplots()  # no pyplot state, no backend needed
    artists = stats.plot_cd_diagram(res.avg_ranks, res.nemenyi, ax, cd=res.cd)
    assert isinstance(artists, dict) and artists
    texts = " ".join(tx.get_text() for tx in ax.texts)
    for name in t.columns:
        assert name in texts


_CD_SCRIPT = """
import json
import pandas as pd
from matplotlib.figure import Figure
from fmpbench import stats
names = ["alpha", "beta", "gamma", "delta"]
ranks = pd.Series([1.0, 2.0, 2.5, 3.5], index=names)
p = pd.DataFrame(0.01, index=names, columns=names)
for a, b in (("alpha", "beta"), ("alpha", "gamma"), ("gamma", "delta")):  # cliques {a,b} {a,g} {g,d}
    p.loc[a, b] = p.loc[b, a] = 0.5
ax = Figure().subplots()
artists = stats.plot_cd_diagram(ranks, p, ax)
bars = [[list(map(float, line.get_xdata())), list(map(float, line.get_ydata()))]
        for group in artists["crossbars"] for line in group]
print(json.dumps({"bars": bars, "labels": sorted(t.get_text() for t in artists["labels"])}))
"""


def test_cd_diagram_is_the_same_drawing_whatever_the_string_hash_seed():
    """Two crossbars that start at one rank ({alpha, beta}, {alpha, gamma}) took their levels from the
    order of a set of method names, which changes with PYTHONHASHSEED: figures differed between runs."""
    drawings = []
    for seed in ("1", "2", "3", "4", "5"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        out = subprocess.run([sys.executable, "-c", _CD_SCRIPT], env=env, capture_output=True, text=True, check=True)
        drawings.append(json.loads(out.stdout))
    assert all(d == drawings[0] for d in drawings)
    assert len(drawings[0]["bars"]) == 3
    assert drawings[0]["labels"] == ["(2.5) gamma", "(3.5) delta", "alpha (1)", "beta (2)"]


# -- effect sizes, reachability, Iman–Davenport, Wilcoxon–Holm cliques ------------------------------


def test_paired_mean_ci_is_the_t_interval_of_the_differences():
    from scipy import stats as ss

    from fmpbench.stats import paired_mean_ci

    a, b = np.array([0.71, 0.73, 0.70, 0.74, 0.72]), np.array([0.70, 0.70, 0.71, 0.72, 0.70])
    d = a - b
    lo, hi = ss.t.interval(0.95, len(d) - 1, loc=d.mean(), scale=ss.sem(d))
    assert paired_mean_ci(a, b) == pytest.approx((d.mean(), lo, hi))
    assert np.isnan(paired_mean_ci([0.7], [0.6])[1])


def test_wilcoxon_cannot_reach_significance_with_five_seeds():
    from fmpbench.stats import can_reach, wilcoxon_min_p, wilcoxon_test

    assert wilcoxon_min_p(5) == 0.0625
    assert wilcoxon_test([1, 2, 3, 4, 5], [0, 0, 0, 0, 0]) == pytest.approx(0.0625)  # the best case
    assert not can_reach("wilcoxon", 5) and can_reach("wilcoxon", 6) and can_reach("t", 5)


def test_iman_davenport_matches_the_formula_and_friedman():
    from scipy import stats as ss

    from fmpbench.stats import friedman_nemenyi, iman_davenport

    rng = np.random.default_rng(1)
    table = pd.DataFrame(rng.random((7, 4)) + np.arange(4) * 0.3, columns=list("abcd"))
    result = friedman_nemenyi(table)
    chi2 = ss.friedmanchisquare(*(table[c] for c in table)).statistic
    f = (7 - 1) * chi2 / (7 * 3 - chi2)
    assert result.iman_davenport == pytest.approx(f)
    assert result.iman_davenport_p == pytest.approx(ss.f.sf(f, 3, 3 * 6))
    assert iman_davenport(chi2=21.0, n_blocks=7, k=4) == (float("inf"), 0.0)  # perfect concordance


def test_wilcoxon_holm_matrix_is_holm_over_all_pairs():
    from fmpbench.stats import holm, wilcoxon_holm, wilcoxon_test

    rng = np.random.default_rng(2)
    table = pd.DataFrame(rng.random((8, 3)) + np.array([0.0, 0.5, 0.52]), columns=["x", "y", "z"])
    matrix = wilcoxon_holm(table)
    raw = [wilcoxon_test(table["x"], table["y"]), wilcoxon_test(table["x"], table["z"]),
           wilcoxon_test(table["y"], table["z"])]
    expected = holm(raw)
    assert matrix.loc["x", "y"] == pytest.approx(expected[0]) == pytest.approx(matrix.loc["y", "x"])
    assert matrix.loc["y", "z"] == pytest.approx(expected[2])
    assert matrix.loc["x", "y"] < 0.05 < matrix.loc["y", "z"]  # x is separated; y and z form a clique
    assert np.all(np.diag(matrix) == 1.0)
