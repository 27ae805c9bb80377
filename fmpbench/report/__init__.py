"""``fmpbench report``: every table and figure of the study, regenerated from stored run records only.

``generate_report(results_dir, out_dir)`` reads the records (never trains), writes five tables as
Markdown and LaTeX, the figures as PNG and PDF, and a ``README.md`` index saying what each file shows
and which command made it. Figures whose data does not exist (e.g. no subset ablation was run) are
listed as not produced rather than drawn empty.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from fmpbench import stats
from fmpbench.report import answer as an
from fmpbench.report import figures as fg
from fmpbench.report import flags as fl
from fmpbench.report import matched as mb
from fmpbench.report import summary as sm
from fmpbench.report import tables as tb
from fmpbench.report.load import LoadedResults, load_results, slug
from fmpbench.results import with_path

__all__ = ["ReportSummary", "generate_report", "load_results"]

TABLE_DESCRIPTIONS = {
    "main_results": "Test AUC and logloss, mean ± std over seeds, per dataset × method × k; best in bold; "
                    "Holm-adjusted paired t-test, Wilcoxon and DeLong (max p over seeds) against `none`, "
                    "t-test against the best method, and the |ΔAUC| < 0.001 practical-equivalence flag.",
    "user_grouped": "GAUC and NDCG@10, mean ± std over seeds, with the test users averaged over and skipped, "
                    "per dataset × method × k, for the datasets with a user field (MovieLens, Amazon).",
    "efficiency": "Embedding and dense parameters, share of the unpruned model, forward FLOPs per sample, "
                  "search / retrain / total seconds and epochs (means over seeds) per dataset × method × k.",
    "ground_truth_recovery": "Recall of the planted informative and strong fields, interaction pairs kept whole, "
                             "and budget wasted on redundant copies and noise (`synthetic`, stand-ins).",
    "aukc_ranking": "AUKC (mean AUC over the k sweep) per dataset with its rank, the mean rank over datasets, "
                    "and the Friedman test.",
    "matched_budget": "Light-FMP's native pruned model against the two model-pruning baselines at the same "
                      "fields and sizes (small-from-scratch, magnitude pruning) and its own full-width "
                      "retrain, per dataset and k, with ΔAUC [95% CI], paired t-tests and a verdict.",
    "drop_list": "The answer: per dataset and method, the smallest k whose test AUC is practically equal to "
                 "`none` or not significantly worse, the fields it drops, how often seeds agree, and the "
                 "fields most methods drop (consensus).",
    "flags": f"Rows to read before publishing: test AUC below {fl.AUC_FLOOR}, or test logloss more than "
             f"{fl.LOGLOSS_MARGIN} above `none`'s on the same dataset and seed.",
    "failed_runs": "Every failed or diverged record with its error, expected-but-missing (k, seed) runs, "
                   "superseded duplicates and corrupt files that were skipped.",
}
# Files this module writes under fixed or per-dataset names; stale ones are removed before a rerun so that
# a figure whose data has gone is never left behind looking current.
_OWN_FILES = re.compile(
    r"^(main_results|user_grouped|drop_list|efficiency|ground_truth_recovery|aukc_ranking|matched_budget|flags|failed_runs)\.(md|tex)$|"
    r"^(auc_vs_k|auc_vs_params|auc_vs_flops|time_split|cd_diagram|cd_diagram_wilcoxon|lightfmp_subset_ablation|"
    r"field_scores_[a-z0-9-]+|kendall_tau_[a-z0-9-]+)\.(png|pdf)$"
)


@dataclass
class ReportSummary:
    """What ``generate_report`` wrote and what it found in the records."""

    out_dir: Path
    tables: list[Path] = field(default_factory=list)
    figures: list[Path] = field(default_factory=list)
    missing_figures: dict[str, str] = field(default_factory=dict)
    n_records: int = 0
    n_ok: int = 0
    n_failed: int = 0
    n_corrupt: int = 0
    n_missing: int = 0


def generate_report(results_dir: Path, out_dir: Path, *, figures: bool = True) -> ReportSummary:
    """Write the tables, figures and ``README.md`` index for the records under ``results_dir``.

    ``figures=False`` rewrites only the tables (seconds instead of tens of seconds, e.g. to check that
    committed tables still match the records) and leaves figures and index as they are.
    """
    results_dir, out_dir = Path(results_dir), Path(out_dir)
    loaded = load_results(results_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    # Everything is written beside the output first and replaces it only once the whole report exists,
    # so a report that fails half-way leaves the previous one intact.
    work = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".tmp", dir=out_dir.parent))
    try:
        summary = _write_report(loaded, out_dir, work, figures)
        out_dir.mkdir(exist_ok=True)
        for stale in out_dir.iterdir():
            if stale.is_file() and _OWN_FILES.match(stale.name) and (figures or stale.suffix in (".md", ".tex")):
                stale.unlink()
        for made in work.iterdir():
            os.replace(made, out_dir / made.name)
    except OSError as exc:
        raise with_path(exc, out_dir) from exc
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return summary


def _write_report(loaded: LoadedResults, out_dir: Path, work: Path, figures: bool) -> ReportSummary:
    """Write the report into ``work``; the paths in the summary name where the files will end up."""
    main = sm.main_summary(loaded)
    eff = sm.efficiency_summary(loaded)
    aukc = sm.aukc_summary(loaded)
    cd = sm.cd_input(loaded, aukc, main)
    friedman, friedman_reason = None, ""
    if cd.table.shape[0] >= 2 and cd.table.shape[1] >= 2:
        friedman = stats.friedman_nemenyi(cd.table)
    else:
        friedman_reason = (f"needs ≥ 2 complete blocks and ≥ 2 methods; have {cd.table.shape[0]} blocks "
                           f"({cd.block_kind}) and {cd.table.shape[1]} methods")
    friedman_text = tb.friedman_note(friedman, cd, friedman_reason)
    fail = sm.failures_summary(loaded)
    grids = _grids(loaded)

    summary = ReportSummary(out_dir=out_dir, n_records=len(loaded.runs), n_corrupt=len(loaded.corrupt),
                            n_ok=len(loaded.ok), n_failed=int((loaded.runs["status"] != "ok").sum()),
                            n_missing=int((fail["kind"] == "missing").sum()))
    drops = an.drop_list(main, loaded)
    tables = [tb.main_results_table(main), tb.user_grouped_table(sm.user_grouped_summary(loaded)),
              an.drop_list_table(drops), tb.efficiency_table(eff),
              tb.recovery_table(sm.recovery_summary(loaded)),
              tb.aukc_table(aukc, grids, friedman_text), mb.matched_budget_table(mb.matched_budget_summary(loaded)),
              fl.flags_table(fl.flag_rows(loaded.ok, ("block", "seed"))),
              tb.failures_table(fail)]
    for table in tables:
        for suffix, text in ((".md", table.to_markdown()), (".tex", table.to_latex())):
            (work / f"{table.name}{suffix}").write_text(text, encoding="utf-8")
            summary.tables.append(out_dir / f"{table.name}{suffix}")
    if not figures:
        return summary

    described: list[tuple[str, str]] = []
    with fg.paper_style():
        outputs: list[tuple[str, fg.FigureOutput | str]] = [
            ("auc_vs_k", fg.auc_vs_k(main, loaded)),
            ("auc_vs_params", fg.auc_vs_cost(main, eff, "params")),
            ("auc_vs_flops", fg.auc_vs_cost(main, eff, "flops")),
            ("time_split", fg.time_split(loaded)),
        ]
        for block in sorted(loaded.ok["block"].unique()):
            outputs.append((f"field_scores_{slug(block)}", fg.field_score_heatmap(loaded, block)))
            outputs.append((f"kendall_tau_{slug(block)}", fg.kendall_heatmap(loaded, block)))
        for cliques, stem in (("nemenyi", "cd_diagram"), ("wilcoxon", "cd_diagram_wilcoxon")):
            outputs.append((stem, fg.cd_diagram(cd, friedman, cliques) if friedman is not None
                            else f"Friedman test not run: {friedman_reason}"))
        outputs.append(("lightfmp_subset_ablation", fg.subset_ablation_figure(sm.subset_ablation(loaded))))
        for stem, output in outputs:
            if isinstance(output, str):
                summary.missing_figures[stem] = output
                continue
            summary.figures += [out_dir / path.name for path in fg.save_figure(output, work)]
            described.append((output.stem, output.description))

    (work / "README.md").write_text(_index(loaded, summary, tables, described, grids, friedman_text),
                                       encoding="utf-8")
    return summary


def _grids(loaded: LoadedResults) -> dict[str, str]:
    out = {}
    for block, bdf in loaded.ok.groupby("block", sort=True):
        ks = sm.budget_grid(bdf)
        f = int(bdf["num_fields"].iloc[0])
        out[block] = ("k ∈ {" + ", ".join(map(str, ks)) + "}" if ks else "no k sweep") + f" of F = {f}"
    return out


def _index(loaded: LoadedResults, summary: ReportSummary, tables: list[tb.Table],
           figures: list[tuple[str, str]], grids: dict[str, str], friedman_text: str) -> str:
    command = f"python -m fmpbench report --results {loaded.results_dir} --out {summary.out_dir}"
    lines = [
        "# fmpbench report",
        "",
        f"Generated by `{command}` from the stored run records only (nothing was trained).",
        "",
        f"- records read: {summary.n_records} (successful: {summary.n_ok}, failed or diverged: {summary.n_failed}); "
        f"corrupt files skipped: {summary.n_corrupt}; expected-but-missing runs: {summary.n_missing} — all listed in "
        "`failed_runs.md`.",
        f"- rows to read before publishing (worse than chance, or far worse logloss than `none`): "
        f"{len(next(t for t in tables if t.name == 'flags').rows)} — listed in `flags.md`.",
    ]
    for block, bdf in loaded.runs.groupby("block", sort=True):
        seeds = sorted(set(bdf["seed"]))
        sources = ", ".join(sorted(set(bdf["data_source"])))
        lines.append(f"- {block}: data source `{sources}`; {grids.get(block, 'no successful run')}; "
                     f"seeds {', '.join(map(str, seeds))}; methods {', '.join(sm.sort_labels(bdf['label']))}.")
    if any(loaded.runs["data_source"].str.startswith("standin:")):
        lines.append("- Datasets marked *(stand-in)* are fmpbench's built-in synthetic stand-ins with the real "
                     "schema, not the real data; their numbers say nothing about the real datasets.")
    lines += ["", "## Tables (Markdown `.md` and LaTeX `.tex`, the latter needs `booktabs`)", "",
              "| file | shows |", "|:---|:---|"]
    for table in tables:
        lines.append(f"| `{table.name}.md`, `{table.name}.tex` | {TABLE_DESCRIPTIONS[table.name]} |")
    drops = next(t for t in tables if t.name == "drop_list")
    lines += ["", drops.to_markdown().replace("## ", "## The answer: ", 1).rstrip("\n")]
    lines += ["", "## Figures (PNG at 200 dpi and PDF; 3.5 in or 7 in wide)", ""]
    for stem, description in figures:  # inline, so that this one page shows the whole report
        lines += [f"### `{stem}.png`, `{stem}.pdf`", "", description, "", f"![{stem}]({stem}.png)", ""]
    if summary.missing_figures:
        lines += ["", "## Not produced", ""]
        lines += [f"- `{stem}`: {reason}." for stem, reason in summary.missing_figures.items()]
    lines += [
        "", "## Conventions", "",
        "- Each method has one colour and marker in every figure (`fmpbench/report/colors.py`).",
        "- `none` keeps all fields and runs once per seed at k = F; it is the reference at every k, paired by seed.",
        "- Significance against `none`: paired t-test and Wilcoxon over seeds, and DeLong's test on each seed's "
        "test predictions combined by the maximum p over seeds; each Holm-adjusted across the methods of one "
        "(dataset, k). Practical equivalence: |ΔAUC| < 0.001.",
        "- Method names with `[key=value]` are runs whose parameters differ from the method's defaults.",
        f"- {friedman_text}",
        "",
    ]
    return "\n".join(lines)
