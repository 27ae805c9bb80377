"""The drop-list (smallest safe k, fields dropped, stability, consensus) and ``run --save-model``."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from fmpbench.cli import main
from fmpbench.models.saved import load_model, model_path
from fmpbench.protocol import ExperimentConfig, Task, run_task
from fmpbench.report import generate_report
from fmpbench.report.answer import drop_list, drop_list_lines
from fmpbench.report.load import load_results, records_frame
from fmpbench.report.summary import main_summary
from fmpbench.results import load_predictions, write_record
from fmpbench.training import SplitTensors, TrainConfig, evaluate

FIELDS = ["a", "b", "c", "d", "e", "f"]
NONE_AUC = [0.80, 0.81, 0.79]


def _record(label: str, k: int, seed: int, auc: float, kept: list[str], **extra: object) -> dict:
    return {"run_id": f"{label}-{k}-{seed}", "status": "ok", "method": label, "selector": label.split("+")[0],
            "dataset": "toy", "data_source": "real", "data_fingerprint": "fp", "num_fields": len(FIELDS),
            "field_names": FIELDS, "k": k, "seed": seed, "backbone": "mlp", "method_params": {},
            "test_auc": auc, "test_logloss": 0.45, "selected_fields": kept,
            "created_at": "2026-01-01T00:00:00+00:00", **extra}


def _records() -> list[dict]:
    records = []
    for seed, base in enumerate(NONE_AUC):
        records.append(_record("none", 6, seed, base, FIELDS))
        # good: clearly worse at k=2, equal to none (|Δ| < 0.001) at k=4, where seed 2 keeps e instead of d
        records.append(_record("good", 2, seed, base - 0.05 - 0.001 * seed, ["a", "b"]))
        kept = ["a", "b", "c", "d"] if seed < 2 else ["a", "b", "c", "e"]
        records.append(_record("good", 4, seed, base - 0.0004, kept))
        for k in (2, 4):  # bad: clearly worse everywhere
            records.append(_record("bad", k, seed, base - 0.08 - 0.002 * seed, FIELDS[:k]))
        # random is listed but does not vote; a pruning baseline is not listed at all
        records.append(_record("random", 4, seed, base, ["b", "c", "d", "e"]))
        records.append(_record("good+small", 2, seed, base, ["a", "b"], pipeline="small"))
    return records


@pytest.fixture
def answer(tmp_path):
    loaded = records_frame(_records(), tmp_path)
    return drop_list(main_summary(loaded), loaded)


def test_smallest_safe_k_its_drops_and_their_stability(answer):
    rows = answer.per_method.set_index("label")
    assert set(rows.index) == {"good", "bad", "random"}
    good = rows.loc["good"]
    assert good["safe"] and good["k"] == 4 and good["basis"].startswith("≈ none")
    assert good["dropped"] == ("f", "e")  # f by every seed, e by 2 of 3, d by only 1 of 3
    assert good["drop_share"] == pytest.approx({"f": 1.0, "e": 2 / 3})
    assert good["jaccard"] == pytest.approx((1 + 3 / 5 + 3 / 5) / 3)
    bad = rows.loc["bad"]
    assert not bad["safe"] and "not ruled out" in bad["reason"]


def test_safety_is_shown_by_the_interval_not_presumed_from_a_failed_test(tmp_path):
    """A noisy loss the t-test cannot resolve is not safe; a small, consistent one within the margin is."""
    records = []
    for seed, base in enumerate(NONE_AUC):
        records.append(_record("none", 6, seed, base, FIELDS))
        records.append(_record("noisy", 3, seed, base + (-0.04, 0.02, -0.05)[seed], FIELDS[:3]))
        records.append(_record("close", 3, seed, base + (-0.002, -0.0015, -0.0025)[seed], FIELDS[:3]))
    loaded = records_frame(records, tmp_path)
    main = main_summary(loaded)
    rows = drop_list(main, loaded).per_method.set_index("label")
    noisy = main[main["label"] == "noisy"].iloc[0]
    assert noisy["p_t_none"] > 0.05  # "not significantly worse" would have called it safe
    assert not rows.loc["noisy", "safe"]
    assert rows.loc["close", "safe"] and rows.loc["close", "basis"].startswith("non-inferior")


def test_a_small_mean_with_a_wide_interval_is_not_equivalence(tmp_path):
    """Seeds scattering ±0.02 around none have |mean ΔAUC| < 0.001 but rule out no loss: not safe."""
    records = []
    for seed, base in enumerate(NONE_AUC):
        records.append(_record("none", 6, seed, base, FIELDS))
        records.append(_record("scatter", 3, seed, base + (-0.02, 0.0205, -0.0003)[seed], FIELDS[:3]))
    loaded = records_frame(records, tmp_path)
    main = main_summary(loaded)
    row = main[main["label"] == "scatter"].iloc[0]
    assert row["equivalent_none"] and row["ci_low_none"] < -0.005
    scatter = drop_list(main, loaded).per_method.set_index("label").loc["scatter"]
    assert not scatter["safe"] and "not ruled out" in scatter["reason"]


def test_consensus_counts_methods_with_a_safe_k_but_not_random(answer):
    assert list(answer.consensus["field"]) == ["f", "e"]
    assert set(answer.consensus["methods"]) == {1}  # only good votes: bad has no safe k, random never votes


def test_lines_say_when_no_k_is_safe(answer):
    text = "\n".join(drop_list_lines(answer))
    assert "bad: NO SAFE k" in text
    assert "good: k=4 of 6" in text and "drops 2: f, e (0.7)" in text
    assert "consensus: f (1/1), e (1/1)" in text


def test_one_seed_or_no_reference_is_explained(tmp_path):
    one_seed = [r for r in _records() if r["seed"] == 0 and r["method"] in ("none", "bad")]
    loaded = records_frame(one_seed, tmp_path)
    assert "no paired test is possible" in drop_list(main_summary(loaded), loaded).per_method["reason"].iloc[0]
    no_none = [r for r in _records() if r["method"] == "bad"]
    loaded = records_frame(no_none, tmp_path)
    assert "include none" in drop_list(main_summary(loaded), loaded).per_method["reason"].iloc[0]


def test_an_unusable_record_is_listed_not_fatal(tmp_path):
    records = [*_records(), _record("good", 4, 9, float("nan"), FIELDS)]
    loaded = records_frame(records, tmp_path)
    assert len(loaded.ok) == len(records) - 1 and loaded.corrupt[0][0] == "good-4-9.json"


def test_report_writes_the_drop_list_table(tmp_path):
    results = tmp_path / "results"
    for record in _records():
        write_record(results, record)
    generate_report(results, tmp_path / "out")
    table = (tmp_path / "out" / "drop_list.md").read_text()
    assert "| toy | good | 4 / 6 |" in table and "no k is safe" in table and "consensus" in table
    assert "good+small" not in table
    index = (tmp_path / "out" / "README.md").read_text()  # one page: the answer and every figure inline
    assert "## The answer: Which fields can be dropped" in index and "| toy | good | 4 / 6 |" in index
    assert "![auc_vs_k](auc_vs_k.png)" in index


def test_saved_model_reloads_and_reproduces_its_predictions(tiny_synthetic, tmp_path):
    config = ExperimentConfig(dataset="synthetic", backbone_params={"embed_dim": 4, "hidden": (8,)},
                              train_config=TrainConfig(max_epochs=2, batch_size=512), model_dir=str(tmp_path / "m"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        (record,) = run_task(Task("lasso", 0, (5,)), config, tiny_synthetic, tmp_path / "r")
    saved = load_model(model_path(tmp_path / "m", record["run_id"]))
    assert saved.fields == record["selected_fields"] and saved.info["data_fingerprint"] == tiny_synthetic.fingerprint
    fields = np.asarray(saved.field_indices)
    valid_auc, _, _ = evaluate(saved.model, SplitTensors(tiny_synthetic.valid, torch.device("cpu"), fields))
    assert valid_auc == pytest.approx(record["valid_auc"], abs=1e-12)  # the best epoch's weights were saved
    _, stored = load_predictions(tmp_path / "r", record["run_id"])
    _, _, probs = evaluate(saved.model, SplitTensors(tiny_synthetic.test, torch.device("cpu"), fields))
    np.testing.assert_allclose(probs, stored, atol=1e-3)  # stored as float16
    # the trained table is a view of the optimiser's weight-and-moments table: only its own bytes are saved
    state = torch.load(model_path(tmp_path / "m", record["run_id"]), weights_only=False)["state_dict"]
    assert all(t.untyped_storage().nbytes() == t.numel() * t.element_size() for t in state.values())


def test_run_ends_with_the_drop_list_and_saves_models(tmp_path, capsys):
    argv = ["run", "--methods", "none,lasso", "--dataset", "synthetic", "--rows", "2000", "--epochs", "1",
            "--embed-dim", "4", "--seeds", "2", "--k", "4,9", "--results", str(tmp_path / "r"),
            "--save-model", str(tmp_path / "m")]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "Which fields can be dropped" in out and "\n  lasso: " in out and "consensus" in out
    assert len(list((tmp_path / "m").glob("*.pt"))) == 2 + 2 * 2  # none once per seed, lasso per k and seed
    assert len(load_results(tmp_path / "r").ok) == 6


def test_save_model_refuses_a_cluster(capsys):
    assert main(["run", "--methods", "none", "--executor", "ray", "--save-model", "/tmp/x"]) == 2
    assert "--save-model needs --executor local" in capsys.readouterr().err
