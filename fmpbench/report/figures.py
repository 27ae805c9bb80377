"""Figures for the paper, drawn on ``matplotlib.figure.Figure`` objects (no pyplot global state).

Sizes follow a two-column paper: 3.5 in (one column) or 7 in (full width); fonts 6.5–8 pt. Each
method keeps its colour and marker from ``colors`` in every figure, and legends sit below the axes,
never on the data. A figure whose inputs do not exist is not drawn: its builder returns a reason,
which the index lists instead of a placeholder.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import matplotlib as mpl
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import EngFormatter, MaxNLocator
from scipy import stats as ss

from fmpbench import stats
from fmpbench.report.colors import method_color, method_marker
from fmpbench.report.load import LoadedResults, is_variant, slug
from fmpbench.report.summary import CdInput, ground_truth, keeps_all_fields, sort_labels

SINGLE_COLUMN_IN = 3.5
DOUBLE_COLUMN_IN = 7.0
PANEL_HEIGHT_IN = 2.0
DPI = 200
STYLE = {
    "font.size": 7, "axes.titlesize": 7.5, "axes.labelsize": 7, "legend.fontsize": 6.5,
    "xtick.labelsize": 6.5, "ytick.labelsize": 6.5, "axes.spines.top": False, "axes.spines.right": False,
    "pdf.fonttype": 42, "lines.linewidth": 1.2, "lines.markersize": 4, "axes.grid": True,
    "grid.alpha": 0.3, "grid.linewidth": 0.5, "svg.hashsalt": "fmpbench",
}
ROLE_ORDER = ("strong", "weak", "interaction", "redundant", "high_card_noise", "noise")
ROLE_COLORS = {"strong": "#1B7837", "weak": "#7FBF7B", "interaction": "#762A83", "redundant": "#C2A5CF",
               "high_card_noise": "#B2182B", "noise": "#D6604D"}


@dataclass
class FigureOutput:
    """A drawn figure, the file stem it is saved under, and what it shows (for the index)."""

    stem: str
    figure: Figure
    description: str


@contextmanager
def paper_style() -> Iterator[None]:
    with mpl.rc_context(STYLE):
        yield


def save_figure(output: FigureOutput, out_dir: Path) -> list[Path]:
    """PNG (for viewing) and PDF (for the paper), without timestamps so reruns give the same files."""
    paths = [out_dir / f"{output.stem}.png", out_dir / f"{output.stem}.pdf"]
    output.figure.savefig(paths[0], dpi=DPI, metadata={"Software": None})
    output.figure.savefig(paths[1], metadata={"CreationDate": None, "Creator": None, "Producer": None})
    return paths


def _panel_grid(n: int, height: float = PANEL_HEIGHT_IN, max_cols: int = 3) -> tuple[Figure, list]:
    cols = min(n, max_cols)
    rows = math.ceil(n / cols)
    width = SINGLE_COLUMN_IN if cols == 1 else DOUBLE_COLUMN_IN
    fig = Figure(figsize=(width, height * rows + 0.5), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).ravel().tolist()
    for ax in axes[n:]:
        ax.set_visible(False)
    return fig, axes[:n]


def _legend_below(fig: Figure, labels: list[str], extra: list[tuple[object, str]] = (),
                  dashed: frozenset[str] = frozenset()) -> None:
    handles = [Line2D([], [], color=method_color(lab), marker=None if lab in dashed else method_marker(lab),
                      linestyle="--" if lab in dashed else "-") for lab in labels]
    handles += [h for h, _ in extra]
    names = labels + [n for _, n in extra]
    width_in = fig.get_size_inches()[0]
    ncols = max(1, min(len(handles), int(width_in / 1.05)))
    fig.legend(handles, names, loc="outside lower center", ncols=ncols, frameon=False)


VARIANT_NOTE = (" Runs with non-default method parameters (`[key=value]` rows) are left out here; they are in the "
                "tables and the ablation figure.")


def _defaults_only(df: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """Rows of default-parameter runs, and the caption note to add when variants were left out."""
    keep = ~df["label"].map(is_variant).astype(bool)
    return df[keep], ("" if keep.all() else VARIANT_NOTE)


# --------------------------------------------------------------------------------------------------
# AUC against the budget and against cost
# --------------------------------------------------------------------------------------------------


def auc_vs_k(main: pd.DataFrame, loaded: LoadedResults) -> FigureOutput | str:
    """Mean test AUC ± std against k, one panel per dataset; all-field rows as horizontal bands."""
    main, note = _defaults_only(main)
    if main.empty:
        return "no successful runs"
    band_alpha = 0.15 if main["label"].nunique() <= 6 else 0.07
    blocks = sorted(main["block"].unique())
    fig, axes = _panel_grid(len(blocks))
    flat: set[str] = set()
    for ax, block in zip(axes, blocks):
        bmain = main[main["block"] == block]
        bruns = loaded.ok[loaded.ok["block"] == block]
        ks = sorted(bmain["k"].unique())
        lo, hi = min(ks), max(ks)
        for label in sort_labels(bmain["label"]):
            g = bmain[bmain["label"] == label].sort_values("k")
            color = method_color(label)
            if keeps_all_fields(bruns[bruns["label"] == label]):
                flat.add(label)
                m, s = g["auc_mean"].iloc[0], g["auc_std"].iloc[0]
                ax.plot([lo, hi], [m, m], color=color, linestyle="--", linewidth=1.0)
                ax.fill_between([lo, hi], m - s, m + s, color=color, alpha=0.10, linewidth=0)
                continue
            ax.plot(g["k"], g["auc_mean"], color=color, marker=method_marker(label))
            ax.fill_between(g["k"], g["auc_mean"] - g["auc_std"], g["auc_mean"] + g["auc_std"], color=color,
                            alpha=band_alpha, linewidth=0)
        ax.set_title(f"{block} (F = {int(bmain['num_fields'].iloc[0])})")
        ax.set_xlabel("fields kept, k")
        ax.set_ylabel("test AUC")
        ax.set_xticks(ks)
    _legend_below(fig, sort_labels(main["label"]), dashed=frozenset(flat))
    return FigureOutput("auc_vs_k", fig, "Test AUC (mean ± std band over seeds) against the number of kept "
                        "fields k, one panel per dataset; rows that keep every field (`none`) are dashed "
                        "horizontal lines with their band." + note)


def _pareto(cost: np.ndarray, auc: np.ndarray) -> np.ndarray:
    """Indices of the points no other point beats on both cost (lower) and AUC (higher), by cost."""
    order = np.lexsort((-auc, cost))
    front, best = [], -np.inf
    for i in order:
        if auc[i] > best:
            front.append(i)
            best = auc[i]
    return np.asarray(front, dtype=int)


def auc_vs_cost(main: pd.DataFrame, eff: pd.DataFrame, cost: str) -> FigureOutput | str:
    """Mean AUC against parameters (``cost='params'``) or FLOPs per sample (``'flops'``), Pareto front."""
    main, note = _defaults_only(main)
    if main.empty:
        return "no successful runs"
    merged = main.merge(eff, on=["block", "k", "label"], suffixes=("", "_eff"))
    if cost == "params":
        merged["cost"] = merged["embedding_params"] + merged["dense_params"]
        xlabel, stem, what = "parameters (embedding + dense)", "auc_vs_params", "total parameters"
    else:
        merged["cost"] = merged["flops_per_sample"]
        xlabel, stem, what = "forward FLOPs per sample", "auc_vs_flops", "forward FLOPs per sample"
    merged = merged[np.isfinite(merged["cost"]) & np.isfinite(merged["auc_mean"])]
    if merged.empty:
        return f"no run records {what}"
    blocks = sorted(merged["block"].unique())
    fig, axes = _panel_grid(len(blocks))
    for ax, block in zip(axes, blocks):
        g = merged[merged["block"] == block].reset_index(drop=True)
        for label in sort_labels(g["label"]):
            h = g[g["label"] == label]
            ax.errorbar(h["cost"], h["auc_mean"], yerr=h["auc_std"], fmt=method_marker(label),
                        color=method_color(label), markersize=4, elinewidth=0.6, capsize=0, linestyle="none")
        front = _pareto(g["cost"].to_numpy(), g["auc_mean"].to_numpy())
        fx, fy = g["cost"].to_numpy()[front], g["auc_mean"].to_numpy()[front]
        ax.step(fx, fy, where="post", color="black", linewidth=0.8, linestyle=":", zorder=1)
        ax.scatter(fx, fy, s=46, facecolors="none", edgecolors="black", linewidths=0.7, zorder=3)
        if g["cost"].max() > 10 * max(g["cost"].min(), 1e-12):
            ax.set_xscale("log")
        ax.set_title(block)
        ax.set_xlabel(xlabel)
        ax.xaxis.set_major_formatter(EngFormatter(sep=""))  # 25k, 1.2M: long raw counts collide
        ax.xaxis.set_major_locator(MaxNLocator(4))
        ax.set_ylabel("test AUC")
    front_handle = Line2D([], [], color="black", linestyle=":", marker="o", markerfacecolor="none", markersize=6)
    _legend_below(fig, sort_labels(merged["label"]), [(front_handle, "Pareto front")])
    return FigureOutput(stem, fig, f"Mean test AUC (± std over seeds) against {what}, one point per method and "
                        "k, one panel per dataset; circled points joined by the dotted step line form the Pareto "
                        "front (no other point is both cheaper and more accurate)." + note)


# --------------------------------------------------------------------------------------------------
# Time split
# --------------------------------------------------------------------------------------------------


def time_split(loaded: LoadedResults) -> FigureOutput | str:
    """Stacked bars: mean search seconds and mean retrain seconds per method, one panel per dataset."""
    ok, note = _defaults_only(loaded.ok)
    if ok.empty:
        return "no successful runs"
    times = ok.groupby(["block", "label"])[["search_seconds", "retrain_seconds"]].mean().reset_index()
    blocks = sorted(times["block"].unique())
    n_labels = times.groupby("block").size().max()
    fig, axes = _panel_grid(len(blocks), height=PANEL_HEIGHT_IN + 0.04 * n_labels, max_cols=2)
    for ax, block in zip(axes, blocks):
        g = times[times["block"] == block].set_index("label")
        labels = sort_labels(g.index)
        x = np.arange(len(labels))
        search = g.loc[labels, "search_seconds"].fillna(0.0).to_numpy()
        retrain = g.loc[labels, "retrain_seconds"].fillna(0.0).to_numpy()
        colors = [method_color(lab) for lab in labels]
        ax.bar(x, search, color=colors, edgecolor="black", linewidth=0.4)
        ax.bar(x, retrain, bottom=search, color=colors, alpha=0.40, hatch="////", edgecolor="black", linewidth=0.4)
        ax.set_xticks(x, labels, rotation=40, ha="right")
        ax.set_ylabel("seconds")
        ax.set_title(block)
        ax.grid(axis="x", visible=False)
    extra = [(Patch(facecolor="0.35", edgecolor="black", linewidth=0.4), "search (once per seed)"),
             (Patch(facecolor="0.35", alpha=0.4, hatch="////", edgecolor="black", linewidth=0.4),
              "retrain (mean per run)")]
    fig.legend([h for h, _ in extra], [n for _, n in extra], loc="outside lower center", ncols=2, frameon=False)
    return FigureOutput("time_split", fig, "Wall-clock per method: mean search time (solid; the field scoring, "
                        "once per seed) stacked with mean retrain time per run (hatched; training on the kept "
                        "fields, or the native pipeline's own training), one panel per dataset." + note)


# --------------------------------------------------------------------------------------------------
# Field scores and rank agreement
# --------------------------------------------------------------------------------------------------


def _scorer(run: pd.Series) -> str:
    """The selector behind a row (``lightfmp`` and ``lightfmp-fs`` share one score vector)."""
    return run["selector"] + run["label"][len(run["method"]):]


def score_vectors(block_runs: pd.DataFrame) -> dict[str, dict[int, np.ndarray]]:
    """Per scorer and seed, the field-score vector (one per search), skipping constant vectors."""
    out: dict[str, dict[int, np.ndarray]] = {}
    for _, run in block_runs.iterrows():
        scores = np.asarray(run["field_scores"], dtype=np.float64)
        if scores.size == 0 or not np.all(np.isfinite(scores)) or np.ptp(scores) == 0:
            continue
        out.setdefault(_scorer(run), {}).setdefault(int(run["seed"]), scores)
    return {k: out[k] for k in sort_labels(out)}


def field_score_heatmap(loaded: LoadedResults, block: str) -> FigureOutput | str:
    """Rank-normalised field scores (1 = ranked first, 0 = last), averaged over seeds, per method."""
    bruns, note = _defaults_only(loaded.ok[loaded.ok["block"] == block])
    vectors = score_vectors(bruns)
    if not vectors:
        return f"{block}: no method with non-constant field scores"
    first = bruns.iloc[0]
    names = list(first["field_names"])
    matrix = np.vstack([np.mean([(ss.rankdata(v) - 1) / max(len(v) - 1, 1) for v in per_seed.values()], axis=0)
                        for per_seed in vectors.values()])
    truth = ground_truth(first)
    order = list(range(len(names)))
    if truth is not None:
        order.sort(key=lambda i: (ROLE_ORDER.index(truth.roles[names[i]]), names[i]))
    matrix = matrix[:, order]
    cols = [names[i] for i in order]
    rows = list(vectors)
    width = DOUBLE_COLUMN_IN if len(cols) > 12 else SINGLE_COLUMN_IN
    fig = Figure(figsize=(width, 1.5 + 0.2 * max(len(rows), 4) + (0.2 if truth else 0)), layout="constrained")
    if truth is not None:
        strip_ax, ax = fig.subplots(2, 1, sharex=True, height_ratios=[0.6, max(len(rows), 1)])
        role_colors = [mpl.colors.to_rgb(ROLE_COLORS[truth.roles[c]]) for c in cols]
        strip_ax.imshow([role_colors], aspect="auto")
        strip_ax.set_yticks([0], ["role"])
        strip_ax.tick_params(axis="x", bottom=False, labelbottom=False)
        strip_ax.grid(False)
        for spine in strip_ax.spines.values():
            spine.set_visible(False)
    else:
        ax = fig.subplots()
    image = ax.imshow(matrix, aspect="auto", cmap="viridis", vmin=0.0, vmax=1.0, interpolation="nearest")
    ax.set_xticks(range(len(cols)), cols, rotation=60, ha="right")
    ax.set_yticks(range(len(rows)), rows)
    ax.grid(False)
    fig.colorbar(image, ax=ax, label="rank-normalised score", shrink=0.9, pad=0.01)
    title = f"Field scores — {block}"
    ax.set_title(title) if truth is None else strip_ax.set_title(title)
    if truth is not None:
        present = [r for r in ROLE_ORDER if r in truth.roles.values()]
        fig.legend([Patch(color=ROLE_COLORS[r]) for r in present], [r.replace("_", " ") for r in present],
                   loc="outside lower center", ncols=len(present), frameon=False)
    return FigureOutput(f"field_scores_{slug(block)}", fig,
                        f"{block}: each method's field scores, rank-normalised within the method and seed "
                        "(1 = ranked first, 0 = last) and averaged over seeds; methods with constant scores "
                        "(`none`) are omitted." + (" Fields are grouped by their planted role (top strip)."
                                                   if truth is not None else "") + note)


def kendall_heatmap(loaded: LoadedResults, block: str) -> FigureOutput | str:
    """Kendall τ between methods' field rankings, per seed, averaged over the seeds both share."""
    bruns, note = _defaults_only(loaded.ok[loaded.ok["block"] == block])
    vectors = score_vectors(bruns)
    if len(vectors) < 2:
        return f"{block}: fewer than two methods with non-constant field scores"
    names = list(vectors)
    seeds = sorted({s for per_seed in vectors.values() for s in per_seed})
    stack = []
    for seed in seeds:
        present = [n for n in names if seed in vectors[n]]
        tau = stats.kendall_tau_matrix({n: vectors[n][seed] for n in present})
        stack.append(tau.reindex(index=names, columns=names).to_numpy())
    with np.errstate(invalid="ignore"):
        counts = np.sum(np.isfinite(stack), axis=0)
        mean = np.where(counts > 0, np.nansum(stack, axis=0) / np.maximum(counts, 1), np.nan)
    size = SINGLE_COLUMN_IN if len(names) <= 7 else DOUBLE_COLUMN_IN * 0.75
    fig = Figure(figsize=(size, size * 0.85), layout="constrained")
    ax = fig.subplots()
    image = ax.imshow(mean, cmap="RdBu_r", vmin=-1.0, vmax=1.0, interpolation="nearest")
    for i in range(len(names)):
        for j in range(len(names)):
            if np.isfinite(mean[i, j]):
                ax.text(j, i, f"{round(mean[i, j], 2) + 0.0:.2f}", ha="center", va="center", fontsize=6,
                        color="white" if abs(mean[i, j]) > 0.6 else "black")
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right")
    ax.set_yticks(range(len(names)), names)
    ax.grid(False)
    ax.set_title(f"Rank agreement (Kendall τ) — {block}")
    fig.colorbar(image, ax=ax, label="Kendall τ", shrink=0.8)
    return FigureOutput(f"kendall_tau_{slug(block)}", fig,
                        f"{block}: Kendall τ-b between methods' field rankings, computed per seed and averaged "
                        "over seeds; methods with constant scores (`none`) are omitted." + note)


# --------------------------------------------------------------------------------------------------
# Critical-difference diagram and the subset ablation
# --------------------------------------------------------------------------------------------------


def _cd_label_name(text: str) -> str:
    """The method name in a CD-diagram label, ``name (rank)`` on the left or ``(rank) name`` on the right."""
    right = re.match(r"^\([^()]*\) (.*)$", text)
    if right:
        return right.group(1)
    left = re.match(r"^(.*) \([^()]*\)$", text)
    return left.group(1) if left else text


def cd_diagram(cd: CdInput, result: stats.FriedmanResult, cliques: str = "nemenyi") -> FigureOutput:
    """Critical-difference diagram of the average ranks over ``cd.table``'s blocks; bars join methods
    that Nemenyi's test (``cliques="nemenyi"``) or pairwise Wilcoxon–Holm tests (``"wilcoxon"``) do not
    separate."""
    n = cd.table.shape[1]
    fig = Figure(figsize=(SINGLE_COLUMN_IN if n <= 6 else DOUBLE_COLUMN_IN, 1.0), layout="constrained")
    ax = fig.subplots()
    wilcoxon = cliques == "wilcoxon"
    matrix = result.wilcoxon_holm if wilcoxon and result.wilcoxon_holm is not None else result.nemenyi
    artists = stats.plot_cd_diagram(result.avg_ranks, matrix, ax)
    # plot_cd_diagram colours by its own cycle; recolour each method's marker, elbow and label (created
    # together, in the same order) with the method's colour, reading the name back from the label text.
    for marker, elbow, text in zip(artists["markers"], artists["elbows"], artists["labels"]):
        color = method_color(_cd_label_name(text.get_text()))
        marker.set_color(color)
        elbow.set_color(color)
        text.set_color(color)
    # The CD bar goes well above the rank axis so that it never sits on the tick labels.
    low = float(result.avg_ranks.min())
    if np.isfinite(result.cd) and not wilcoxon:
        ax.plot([low, low + result.cd], [1.6, 1.6], color="black", linewidth=1.2, clip_on=False)
        ax.text(low + result.cd / 2, 1.8, f"CD = {result.cd:.2f}", ha="center", va="bottom", fontsize=6.5)
    bottom = ax.get_ylim()[0]
    ax.set_ylim(bottom, 2.6)
    ax.grid(False)
    fig.set_figheight(0.2 * (2.6 - bottom) + 0.45)
    p = result.p_value
    p_text = "n/a" if not np.isfinite(p) else ("< 0.001" if p < 0.001 else f"{p:.3f}")
    n_blocks = len(cd.table)
    reach = "" if stats.can_reach("wilcoxon", n_blocks) else (
        f"; Wilcoxon over {n_blocks} blocks cannot reach p < 0.05 (min {stats.wilcoxon_min_p(n_blocks):.3f})")
    ax.set_title(f"Friedman p = {p_text}; {n_blocks} blocks: {cd.block_kind.split(' (')[0]}"
                 f"{reach if wilcoxon else ''}", fontsize=6.5)
    note = (f" Left out for missing some block: {', '.join(cd.dropped)}." if cd.dropped else "")
    note += VARIANT_NOTE if cd.variants else ""
    note += (" Not ranked (test split too small): " + ", ".join(cd.unrankable) + ".") if cd.unrankable else ""
    test = ("pairwise Wilcoxon signed-rank tests over the blocks, Holm-adjusted (Benavoli et al. 2016)"
            + reach) if wilcoxon else "Nemenyi, alpha = 0.05; the CD bar is the critical difference"
    return FigureOutput("cd_diagram_wilcoxon" if wilcoxon else "cd_diagram", fig,
                        f"Critical-difference diagram: average rank of each method (1 = best) over blocks = "
                        f"{cd.block_kind}; methods joined by a bar are not significantly different ({test}).{note}")


def subset_ablation_figure(ablation: pd.DataFrame) -> FigureOutput | str:
    """Light-FMP AUC against the pretraining-subset fraction, one line per (row, k)."""
    if ablation.empty:
        return ("no `lightfmp` records with two or more pretraining-subset values (a method parameter named "
                "*subset*); run the ablation to produce this figure")
    blocks = sorted(ablation["block"].unique())
    fig, axes = _panel_grid(len(blocks))
    styles = ("-", "--", ":", "-.")
    for ax, block in zip(axes, blocks):
        g = ablation[ablation["block"] == block]
        ks = sorted(g["k"].unique())
        for (method, k), h in g.groupby(["method", "k"], sort=True):
            h = h.sort_values("subset")
            x = 100.0 * h["subset"]
            color = method_color(method)
            ax.plot(x, h["auc_mean"], color=color, marker=method_marker(method),
                    linestyle=styles[ks.index(k) % len(styles)], label=f"{method}, k={k}")
            ax.fill_between(x, h["auc_mean"] - h["auc_std"], h["auc_mean"] + h["auc_std"], color=color,
                            alpha=0.12, linewidth=0)
        ax.set_xticks(sorted(100.0 * g["subset"].unique()))
        ax.set_title(block)
        ax.set_xlabel("pretraining subset (% of training rows)")
        ax.set_ylabel("test AUC")
        # k differs between datasets, so each panel carries its own legend, below its axes
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.28), ncols=2, frameon=False)
    return FigureOutput("lightfmp_subset_ablation", fig,
                        "Light-FMP pretraining-subset ablation: test AUC (mean ± std over seeds) against the "
                        "fraction of training rows used to pretrain the gates, for the native pipeline "
                        "(`lightfmp`) and the from-scratch retrain on its ranking (`lightfmp-fs`), per k.")
