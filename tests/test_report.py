"""Tests for ``fmpbench.report``: hand-computed numbers, marks, failures and reproducible tables."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest

from fmpbench.report import generate_report, load_results
from fmpbench.report.colors import FIXED_COLORS, method_color, method_marker
from fmpbench.report.summary import aukc_summary, cd_input, main_summary
from fmpbench.results import write_record

FIELDS = ["strong_0", "noise_0", "strong_1", "weak_0", "inter_a", "inter_b", "redundant_0", "hc_noise_0"]
KS = (2, 4, 6)
SEEDS = (0, 1, 2)
N_TEST = 400

# Test AUCs by (method, seed); the same at every k to keep the hand computation short.
AUC = {
    "none": [0.800, 0.802, 0.805],
    "good": [0.850, 0.853, 0.855],  # planted: clearly better than none in every seed
    "lasso": [0.8004, 0.8017, 0.8052],  # within 0.001 of none: practically equivalent
    "random": [0.700, 0.720, 0.690],
}


def _predictions(method: str, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Test predictions whose AUC ordering matches the planted story (DeLong sees the same)."""
    rng = np.random.default_rng(seed)
    y = (np.arange(N_TEST) % 4 == 0).astype(np.uint8)
    base = y * 1.0 + rng.normal(0.0, 1.0, N_TEST)
    own = np.random.default_rng([seed, len(method)]).normal(0.0, 1.0, N_TEST)
    signal = {"none": base, "lasso": base + 1e-3 * own, "good": y * 3.0 + 0.3 * own, "random": own}[method]
    return y, 1.0 / (1.0 + np.exp(-signal))


def _record(method: str, dataset: str, k: int, seed: int, **extra: object) -> dict:
    scores = {"good": [9, 1, 8, 5, 4, 3, 6, 0], "lasso": [5, 2, 7, 6, 1, 0, 4, 3], "none": [1] * 8,
              "random": [3, 6, 0, 1, 5, 7, 2, 4]}[method]
    order = np.argsort(-np.asarray(scores, dtype=float), kind="stable")
    record = {
        "schema": 1, "run_id": f"{dataset}-{method}-{k}-{seed}", "status": "ok", "method": method,
        "selector": method, "native_pipeline": False, "dataset": dataset,
        "data_source": "synthetic" if dataset == "synthetic" else "real", "data_fingerprint": f"fp-{dataset}",
        "num_fields": len(FIELDS), "field_names": FIELDS, "k": k, "seed": seed, "backbone": "mlp",
        "backbone_params": {"embed_dim": 8}, "train_config": {"max_epochs": 2}, "method_params": {},
        "test_auc": AUC[method][seed] - (0.01 if dataset != "synthetic" else 0.0), "test_logloss": 0.45 + 0.01 * seed,
        "embedding_params": 100 * k, "dense_params": 50 * k, "embedding_params_full": 800, "dense_params_full": 400,
        "flops_per_sample": 1000.0 * k, "flops_per_sample_full": 8000.0, "search_seconds": 2.0,
        "retrain_seconds": 3.0 + seed, "total_seconds": 5.0 + seed, "epochs": 2,
        "field_scores": dict(zip(FIELDS, scores)), "selected_fields": [FIELDS[i] for i in order[:k]],
        "created_at": "2026-01-01T00:00:00+00:00",
    }
    record.update(extra)
    return record


# User-grouped metrics by (method, seed) for "toy", the dataset with a user field ("synthetic" stores None).
NDCG = {"none": [0.40, 0.42, 0.41], "good": [0.55, 0.50, 0.60], "lasso": [0.40, 0.43, 0.41], "random": [0.2, 0.3, 0.1]}
USERS, SKIPPED, CLICKERS = 1200, (4, 5, 8), (700, 710, 730)


def _user_metrics(dataset: str, method: str, seed: int) -> dict:
    if dataset != "toy":
        return {"test_gauc": None, "test_ndcg10": None, "gauc_users": None, "gauc_users_skipped": None,
                "ndcg_users": None}
    return {"test_gauc": AUC[method][seed] - 0.05, "test_ndcg10": NDCG[method][seed], "gauc_users": USERS,
            "gauc_users_skipped": SKIPPED[seed], "ndcg_users": CLICKERS[seed]}


def _build_results(root: Path, datasets: tuple[str, ...] = ("synthetic", "toy")) -> Path:
    results = root / "results"
    for dataset in datasets:
        for seed in SEEDS:
            write_record(results, _record("none", dataset, len(FIELDS), seed, **_user_metrics(dataset, "none", seed)),
                         _predictions("none", seed))
            for method in ("good", "lasso", "random"):
                for k in KS:
                    if (dataset, method, k, seed) == ("synthetic", "random", 4, 2):
                        continue  # an expected-but-missing run
                    record = _record(method, dataset, k, seed, **_user_metrics(dataset, method, seed))
                    write_record(results, record, _predictions(method, seed))
    failed = _record("lasso", "synthetic", 6, 0, run_id="failed-lasso", status="failed",
                     error="RuntimeError: boom\nTraceback (most recent call last): ...")
    write_record(results, failed)
    (results / "garbage.json").write_text("{ this is not json", encoding="utf-8")
    return results


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    results = _build_results(root)
    with pytest.warns(UserWarning, match="garbage.json"):
        summary = generate_report(results, root / "out")
    return results, summary


def _row(table: str, dataset: str, k: int, method: str) -> str:
    prefix = f"| {dataset} | {k} | {method} |"
    rows = [line for line in table.splitlines() if line.startswith(prefix)]
    assert len(rows) == 1, f"expected one row {prefix!r} in\n{table}"
    return rows[0]


def test_main_table_numbers_bold_and_marks(report):
    _, summary = report
    table = (summary.out_dir / "main_results.md").read_text()
    good = np.asarray(AUC["good"])
    expected = f"**{good.mean():.4f} ± {good.std(ddof=1):.4f}**"
    row = _row(table, "synthetic", 2, "good")
    assert expected in row
    assert "\\*†" in row  # planted difference: t-test and DeLong both significant against none
    assert "| best |" in row
    lasso = _row(table, "synthetic", 2, "lasso")
    assert "≈" in lasso and "\\*" not in lasso.split("|")[5]
    none = _row(table, "synthetic", len(FIELDS), "none")
    ref = np.asarray(AUC["none"])
    assert f"**{ref.mean():.4f} ± {ref.std(ddof=1):.4f}**" in none and "ref." in none
    # the other dataset is shifted by -0.01 everywhere
    assert f"{good.mean() - 0.01:.4f} ± {good.std(ddof=1):.4f}" in _row(table, "toy", 4, "good")


def test_user_grouped_table_only_for_data_with_a_user_field(report):
    _, summary = report
    table = (summary.out_dir / "user_grouped.md").read_text()
    assert "| synthetic |" not in table  # no user field: no rows, rather than rows of dashes
    gauc, ndcg = np.asarray(AUC["good"]) - 0.05, np.asarray(NDCG["good"])
    row = _row(table, "toy", 4, "good")
    best_gauc = f"**{gauc.mean():.4f} ± {gauc.std(ddof=1):.4f}**"
    best_ndcg = f"**{ndcg.mean():.4f} ± {ndcg.std(ddof=1):.4f}**"
    assert f"| 3 | {best_gauc} | {best_ndcg} |" in row
    assert row.endswith(f"| {USERS:,} | {np.mean(SKIPPED):.1f} | {np.mean(CLICKERS):.1f} |")  # means over seeds
    lasso = np.asarray(NDCG["lasso"])
    assert f"| {lasso.mean():.4f} ± {lasso.std(ddof=1):.4f} |" in _row(table, "toy", 4, "lasso")  # not bold
    none = _row(table, "toy", len(FIELDS), "none")
    assert f"{np.mean(NDCG['none']):.4f}" in none
    latex = (summary.out_dir / "user_grouped.tex").read_text()
    assert latex.count("\\begin{table*}") == 1 and "NDCG@10" in latex
    assert f"{gauc.mean():.4f}" in _row((summary.out_dir / "main_results.md").read_text(), "toy", 4, "good")


def test_main_summary_pvalues(report):
    results, _ = report
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        main = main_summary(load_results(results))
    good = main[(main.block == "synthetic") & (main.k == 2) & (main.label == "good")].iloc[0]
    assert good.delta_none == pytest.approx(np.mean(np.subtract(AUC["good"], AUC["none"])))
    assert good.p_delong_none < 0.05 and good.delong_seeds == 3
    assert good.p_t_none < 0.05
    lasso = main[(main.block == "synthetic") & (main.k == 2) & (main.label == "lasso")].iloc[0]
    assert lasso.equivalent_none and lasso.p_delong_none > 0.05


def test_failures_missing_and_corrupt_are_listed(report):
    _, summary = report
    table = (summary.out_dir / "failed_runs.md").read_text()
    reason = "RuntimeError: boom (a successful run of the same row exists)"
    assert f"| failed | synthetic | lasso | 6 | 0 | {reason} |" in table
    assert "| missing | synthetic | random | 4 | 2 |" in table
    assert "| corrupt |" in table and "garbage.json" in table
    assert summary.n_corrupt == 1 and summary.n_missing == 1 and summary.n_failed == 1


def test_recovery_efficiency_and_aukc_tables(report):
    _, summary = report
    recovery = (summary.out_dir / "ground_truth_recovery.md").read_text()
    # good keeps strong_0, strong_1 at k = 2: 2 of the 5 informative fields, both strong ones, no
    # interaction pair, no copy, no noise (the records store no truth: it comes from the field names)
    assert ("| synthetic | 2 | good | 3 | **0.40 ± 0.00** | **1.00 ± 0.00** | **0.00 ± 0.00** | **0.00 ± 0.00** "
            "| **0.00 ± 0.00** | **0.00 ± 0.00** |") in recovery
    # random keeps inter_b and noise_0 at k = 2: one noise field = half its budget wasted; at k = 6 it keeps
    # the pair inter_a + inter_b whole and both redundant_0 and strong_0 (one copy too many)
    assert ("| synthetic | 2 | random | 3 | 0.20 ± 0.00 | 0.00 ± 0.00 | **0.00 ± 0.00** | **0.00 ± 0.00** "
            "| 1.00 ± 0.00 | 0.50 ± 0.00 |") in recovery
    assert "| synthetic | 6 | random | 3 | 0.60 ± 0.00 | 0.50 ± 0.00 | **1.00 ± 0.00** | **1.00 ± 0.00** |" in recovery
    assert "toy" not in recovery  # no planted truth on real data
    efficiency = (summary.out_dir / "efficiency.md").read_text()
    assert "| synthetic | 4 | good | 3 | 400 | 200 | 50.0 | 4,000 | 50.0 | 2.00 | 4.00 | 6.00 | 2.0 |" in efficiency
    aukc = (summary.out_dir / "aukc_ranking.md").read_text()
    good_row = next(line for line in aukc.splitlines() if line.startswith("| good |"))
    assert f"{np.mean(AUC['good']):.4f}" in good_row and "| 1.00 |" in good_row.replace("(1)", "")


def test_figures_and_index(report):
    _, summary = report
    names = {p.name for p in summary.figures}
    for stem in ("auc_vs_k", "auc_vs_params", "auc_vs_flops", "time_split", "cd_diagram", "field_scores_synthetic",
                 "kendall_tau_synthetic", "field_scores_toy", "kendall_tau_toy"):
        assert {f"{stem}.png", f"{stem}.pdf"} <= names
    assert all(p.stat().st_size > 1000 for p in summary.figures)
    assert "lightfmp_subset_ablation" in summary.missing_figures
    assert not (summary.out_dir / "lightfmp_subset_ablation.png").exists()
    index = (summary.out_dir / "README.md").read_text()
    assert "python -m fmpbench report" in index and "lightfmp_subset_ablation" in index
    for path in summary.tables + summary.figures:
        assert f"`{path.name}`" in index


def test_tables_are_byte_identical_on_rerun(report, tmp_path):
    results, summary = report
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        again = generate_report(results, tmp_path / "again", figures=False)
    assert [p.name for p in again.tables] == [p.name for p in summary.tables] and not again.figures
    for first, second in zip(summary.tables, again.tables):
        assert first.read_bytes() == second.read_bytes(), first.name
    latex = (summary.out_dir / "main_results.tex").read_text()
    assert latex.count("\\begin{table*}") == 2 and "\\textbf{" in latex and "$^{*\\dagger}$" in latex


def test_variant_parameters_are_labelled_and_feed_the_ablation(tmp_path):
    results = tmp_path / "results"
    for seed in SEEDS:
        write_record(results, _record("none", "synthetic", len(FIELDS), seed))
        for subset, shift in ((0.05, -0.01), (0.1, 0.0), (0.2, 0.005)):
            rec = _record("good", "synthetic", 4, seed)
            rec.update(run_id=f"lf-{subset}-{seed}", method="lightfmp", selector="lightfmp",
                       method_params={"subset": subset, "epochs": 3}, test_auc=rec["test_auc"] + shift)
            write_record(results, rec)
            # a second, unrelated parameter change must not be mixed into the subset curve
            other = dict(rec, run_id=f"lf-other-{subset}-{seed}", method_params={"subset": subset, "epochs": 9})
            write_record(results, other)
    loaded = load_results(results)
    labels = set(loaded.runs["label"])
    # which parameter set is "plain" depends on the registered defaults; every variant names its change
    assert any(lab.startswith("lightfmp[") and "subset=0.2" in lab for lab in labels)
    assert sum("epochs=9" in lab for lab in labels) >= 2
    from fmpbench.report.summary import subset_ablation

    ablation = subset_ablation(loaded)
    assert list(ablation["subset"]) == [0.05, 0.1, 0.2]
    assert ablation["auc_mean"].iloc[2] == pytest.approx(np.mean(AUC["good"]) + 0.005)


def test_cd_blocks_fall_back_to_dataset_k_pairs(tmp_path):
    results = _build_results(tmp_path, datasets=("synthetic",))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loaded = load_results(results)
    main = main_summary(loaded)
    cd = cd_input(loaded, aukc_summary(loaded), main)
    assert "(dataset, k)" in cd.block_kind
    assert list(cd.table.index) == [f"synthetic, k={k}" for k in KS]
    # random lacks k = 4 for seed 2 only, so its mean AUC still exists at every k: nothing is dropped
    assert cd.dropped == [] and cd.table.loc["synthetic, k=2", "none"] == pytest.approx(np.mean(AUC["none"]))


def test_empty_results_dir_writes_an_index(tmp_path):
    (tmp_path / "results").mkdir()
    summary = generate_report(tmp_path / "results", tmp_path / "out")
    assert summary.n_records == 0 and not summary.figures
    assert "auc_vs_k" in summary.missing_figures
    assert (tmp_path / "out" / "README.md").exists()
    with pytest.raises(FileNotFoundError):
        generate_report(tmp_path / "absent", tmp_path / "out")


def test_colors_are_fixed_and_stable():
    assert method_color("none") == FIXED_COLORS["none"]
    assert method_color("brand-new-method") == method_color("brand-new-method")
    assert method_color("brand-new-method") not in FIXED_COLORS.values()
    assert method_marker("lightfmp") != method_marker("lightfmp-fs")


def test_real_run_records_are_read(tiny_synthetic, tmp_path):
    """Records written by the harness itself (not hand-made) load with their labels and truth."""
    from fmpbench.protocol import ExperimentConfig, Task, run_task
    from fmpbench.report.summary import recovery_summary
    from fmpbench.training import TrainConfig

    config = ExperimentConfig(dataset="synthetic", backbone_params={"embed_dim": 4, "hidden": (8,)},
                              train_config=TrainConfig(max_epochs=1, batch_size=1024))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        records = run_task(Task("lasso", 0, (3,)), config, tiny_synthetic, tmp_path)
    assert records[0]["status"] == "ok", records[0].get("error")
    loaded = load_results(tmp_path)
    assert list(loaded.ok["label"]) == ["lasso"] and loaded.ok["has_predictions"].all()
    recovery = recovery_summary(loaded)
    assert len(recovery) == 1 and 0.0 <= recovery["recall_informative_mean"].iloc[0] <= 1.0
    json.dumps(loaded.ok["params"].iloc[0])
