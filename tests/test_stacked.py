"""Stacked retrains (fmpbench.training.stacked) against the same models trained one at a time."""

from __future__ import annotations

import os
import threading
import time
from dataclasses import replace

import numpy as np
import pytest
import torch

from fmpbench.grid import build_tasks, expected_cost, run_grid, work_units
from fmpbench.models.backbones import word_dropout
from fmpbench.protocol import ExperimentConfig, RetrainLedger
from fmpbench.results import iter_records
from fmpbench.selectors import SearchContext
from fmpbench.stacking import _Baton, _stop, _Stopped, iter_stacked_outputs
from fmpbench.training import SplitTensors, TrainConfig, evaluate
from fmpbench.training.stacked import _Stack, fit_stacked, stackable_backbone, unstackable_reason


def _context(seed: int = 0, dropout: float = 0.0, max_epochs: int = 6, patience: int = 1) -> SearchContext:
    return SearchContext(
        seed=seed,
        backbone="mlp",
        backbone_params={"embed_dim": 8, "hidden": (32, 16), "dropout": dropout},
        train_config=TrainConfig(max_epochs=max_epochs, patience=patience),
    )


def _field_sets(data, k: int = 6, count: int = 4) -> list[np.ndarray]:
    """Field sets of one size whose vocabularies differ: strong fields first, then random ones.

    Interaction-only fields are left out: a model on them learns in a sudden jump that early
    stopping may or may not wait for, a bimodal test AUC that would need many seeds to compare.
    """
    names = list(data.field_names)
    strong = [names.index(n) for n in data.truth.strong]
    others = [i for i, name in enumerate(names) if i not in strong and not name.startswith("inter")]
    rng = np.random.default_rng(1)
    sets = [np.sort(strong + others[: k - len(strong)])]
    sets += [np.sort(rng.choice(strong + others, k, replace=False)) for _ in range(count - 1)]
    return sets


def _models(data, context: SearchContext, field_sets: list[np.ndarray]):
    rate = float(np.mean(data.train.y))
    return [context.make_model([data.field_dims[f] for f in fields], label_rate=rate) for fields in field_sets]


def _separate(data, context: SearchContext, field_sets: list[np.ndarray]):
    out = []
    for model, fields in zip(_models(data, context, field_sets), field_sets):
        train, valid = context.tensors(data, fields)
        out.append((model, context.trainer().fit(model, train, valid)))
    return out


def _stacked(data, context: SearchContext, field_sets: list[np.ndarray], max_epochs: int | None = None):
    models = _models(data, context, field_sets)
    train, valid = context.tensors(data)
    return models, fit_stacked(models, field_sets, train, valid, context.train_config, context.seed, max_epochs)


def _test_auc(data, context: SearchContext, model, fields: np.ndarray) -> float:
    return evaluate(model, SplitTensors(data.test, context.device, fields))[0]


def test_without_dropout_stacked_training_reproduces_separate_training(synthetic_20k):
    """Same initial weights, batch order and per-model early stopping: equal up to float rounding,
    including after a model that stopped early left the stack."""
    context, sets = _context(), _field_sets(synthetic_20k)
    separate = _separate(synthetic_20k, context, sets)
    models, results = _stacked(synthetic_20k, context, sets)
    assert len({r.epochs for _, r in separate}) > 1  # the members stop at different epochs
    for (alone, expected), model, result, fields in zip(separate, models, results, sets):
        assert (result.epochs, result.best_epoch) == (expected.epochs, expected.best_epoch)
        assert result.steps == expected.steps
        np.testing.assert_allclose(result.valid_auc_history, expected.valid_auc_history, atol=2e-3)
        assert _test_auc(synthetic_20k, context, model, fields) == pytest.approx(
            _test_auc(synthetic_20k, context, alone, fields), abs=2e-3
        )


def test_with_dropout_stacked_test_auc_matches_separate_in_distribution(synthetic_20k):
    """Dropout masks differ, so each seed gives other numbers; over seeds the test AUCs agree."""
    sets = _field_sets(synthetic_20k, count=3)
    gaps, spread = [], []
    for seed in range(3):
        context = _context(seed=seed, dropout=0.1, patience=2)
        alone = [model for model, _ in _separate(synthetic_20k, context, sets)]
        separate = [_test_auc(synthetic_20k, context, m, f) for m, f in zip(alone, sets)]
        models, _ = _stacked(synthetic_20k, context, sets)
        stacked = [_test_auc(synthetic_20k, context, m, f) for m, f in zip(models, sets)]
        gaps.append(np.subtract(stacked, separate))
        spread.append(separate)
    assert np.all(np.abs(np.mean(gaps, axis=0)) < 0.005)
    assert np.mean(spread, axis=0)[0] > 0.7  # the strong fields' model learned the planted signal


def test_a_model_that_stops_improving_leaves_the_stack_and_stops_changing(synthetic_20k):
    names = list(synthetic_20k.field_names)
    noise = sorted(names.index(n) for n in names if n.startswith("noise"))[:3]
    strong = sorted(names.index(n) for n in synthetic_20k.truth.strong)
    sets = [np.array(strong), np.array(noise)]
    context = _context(patience=2, max_epochs=10)
    short_models, short = _stacked(synthetic_20k, context, sets, max_epochs=5)
    long_models, long = _stacked(synthetic_20k, context, sets)
    assert long[1].epochs < 5 < long[0].epochs  # noise stops early, the strong fields train on
    assert long[1].best_epoch == long[1].epochs - context.train_config.patience
    assert short[1].valid_auc_history == long[1].valid_auc_history
    for a, b in zip(short_models[1].state_dict().values(), long_models[1].state_dict().values()):
        assert torch.equal(a, b)  # the stopped model is the same whatever the others do after it
    strong_pairs = zip(short_models[0].state_dict().values(), long_models[0].state_dict().values())
    assert not all(torch.equal(a, b) for a, b in strong_pairs)


def test_each_member_holds_exactly_its_separate_models_parameters(synthetic_20k):
    context, sets = _context(), _field_sets(synthetic_20k)
    models = _models(synthetic_20k, context, sets)
    stack = _Stack(models, sets, context.device)
    sizes = [sum(t.numel() for t in stack.state_of(i)) for i in range(len(models))]
    assert sizes == [m.embedding_parameters() + m.dense_parameters() for m in models]
    assert len(set(sizes)) > 1  # different fields, different vocabularies


def test_a_diverging_member_fails_alone(synthetic_20k):
    context, sets = _context(max_epochs=2), _field_sets(synthetic_20k, count=2)
    models = _models(synthetic_20k, context, sets)
    with torch.no_grad():
        models[1].head.bias.fill_(float("nan"))
    train, valid = context.tensors(synthetic_20k)
    results = fit_stacked(models, sets, train, valid, context.train_config, context.seed)
    assert isinstance(results[1], Exception) and "loss became nan" in str(results[1])
    assert results[0].epochs == 2 and results[0].best_valid_auc > 0.6


def test_only_plain_mlps_of_one_shape_stack(synthetic_20k):
    sets = _field_sets(synthetic_20k, count=2)
    deepfm = SearchContext(backbone="deepfm").make_model([synthetic_20k.field_dims[f] for f in sets[0]])
    assert "deepfm" in unstackable_reason(deepfm)
    mixed = _models(synthetic_20k, _context(), sets[:1]) + _models(synthetic_20k, _context(dropout=0.1), sets[1:])
    train, valid = _context().tensors(synthetic_20k)
    with pytest.raises(ValueError, match="one shape"):
        fit_stacked(mixed, sets, train, valid, TrainConfig(), 0)


def test_stacked_dropout_drops_p_of_the_units_and_keeps_the_mean():
    torch.manual_seed(0)
    out = word_dropout(torch.ones(4, 512, 256), 0.3)
    assert (out == 0).float().mean().item() == pytest.approx(0.3, abs=0.005)
    assert out.mean().item() == pytest.approx(1.0, abs=0.01)
    np.testing.assert_allclose(out.unique().numpy(), [0.0, 1 / 0.7], rtol=1e-6)


GRID = ExperimentConfig(
    dataset="synthetic",
    n_rows=4000,
    backbone_params={"embed_dim": 4, "hidden": (16, 8), "dropout": 0.0},
    train_config=TrainConfig(max_epochs=3, batch_size=256, patience=1),
)


def _grid(results, data, methods: list[str], ks: tuple[int, ...], stack: bool) -> dict[str, dict]:
    with open(os.devnull, "w") as quiet:
        run_grid(build_tasks(methods, [0], ks), GRID, data, results, stream=quiet, stack_retrains=stack)
    return {r["run_id"]: r for r in iter_records(results)}


def test_a_stacked_grid_writes_the_records_of_a_separate_one(tmp_path, tiny_synthetic):
    methods, ks = ["random", "lasso", "pca"], (4, 8)
    separate = _grid(tmp_path / "separate", tiny_synthetic, methods, ks, stack=False)
    stacked = _grid(tmp_path / "stacked", tiny_synthetic, methods, ks, stack=True)
    assert stacked.keys() == separate.keys()
    for run_id, record in stacked.items():
        alone = separate[run_id]
        assert record["status"] == alone["status"] == "ok"
        assert record["selected_fields"] == alone["selected_fields"]
        assert record["test_auc"] == pytest.approx(alone["test_auc"], abs=2e-3)  # no dropout: float rounding
        assert record["stack_size"] == 3 and alone["stack_size"] is None
        partners = [stacked[other] for other in record["stacked_with"]]
        assert sorted(p["selector"] for p in partners + [record]) == sorted(methods)
        assert all(p["k"] == record["k"] for p in partners)
        assert (tmp_path / "stacked" / record["predictions_file"]).is_file()


def test_a_stacked_grid_still_trains_a_duplicated_retrain_once(tmp_path, tiny_synthetic):
    every = (tiny_synthetic.num_fields,)  # at k = F every method keeps every field
    records = _grid(tmp_path, tiny_synthetic, ["none", "random", "lasso"], every, stack=True).values()
    trained = [r for r in records if not r.get("reused_from")]
    assert len(trained) == 1 and trained[0]["stack_size"] is None  # a stack of one trains alone
    assert all(r["reused_from"] == trained[0]["run_id"] for r in records if r is not trained[0])
    assert {r["test_auc"] for r in records} == {trained[0]["test_auc"]}


@pytest.mark.parametrize("fast_dropout", [True, False])
def test_a_retrain_with_nothing_to_stack_with_gives_the_separate_retrain_s_numbers(tmp_path, tiny_synthetic,
                                                                                   fast_dropout):
    # a stack of one has nothing to gain, and a stack is another draw (its dropout masks): a lone retrain
    # under stacking must equal the separate grid's, also with torch's masks (the study's), which draw
    # from torch's global generator while the seed's tasks take turns (autofield's search between none's
    # start and its retrain)
    config = replace(GRID, backbone_params={**GRID.backbone_params, "dropout": 0.2},
                     train_config=replace(GRID.train_config, fast_dropout=fast_dropout))
    records = {}
    for stack in (False, True):
        with open(os.devnull, "w") as quiet:
            run_grid(build_tasks(["none", "autofield"], [0], (4,)), config, tiny_synthetic, tmp_path / str(stack),
                     stream=quiet, stack_retrains=stack)
        records[stack] = {r["run_id"]: r for r in iter_records(tmp_path / str(stack))}
    assert records[True].keys() == records[False].keys() and len(records[True]) == 2
    for run_id, record in records[True].items():
        assert record["stack_size"] is None and record["test_auc"] == records[False][run_id]["test_auc"]


def _task_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("fmpbench-stack-")]


def test_only_one_seed_stacks(tiny_synthetic):
    with pytest.raises(ValueError, match="one seed"):
        next(iter_stacked_outputs(build_tasks(["random"], [0, 1], (4,)), GRID, tiny_synthetic, frozenset(),
                                  RetrainLedger()))


def test_a_driver_stopped_early_leaves_no_task_thread(tiny_synthetic):
    """An interrupted grid must not leave task threads inside torch: at exit they abort the process (−6)."""
    outputs = iter_stacked_outputs(build_tasks(["random", "lasso", "pca"], [0], (4, 8)), GRID,
                                   tiny_synthetic, frozenset(), RetrainLedger())
    record, _ = next(outputs)
    assert record["status"] == "ok" and _task_threads()
    outputs.close()
    assert not _task_threads()


def test_stop_ends_the_thread_that_holds_the_baton_mid_computation():
    baton, ended = _Baton(1), threading.Event()
    baton.turn = 0

    def busy() -> None:
        try:
            while True:  # a search or training loop: Python between native calls
                time.sleep(0.001)
        except _Stopped:
            ended.set()

    thread = threading.Thread(target=busy, daemon=True)
    thread.start()
    _stop(baton, [thread])
    assert ended.is_set() and not thread.is_alive()


def test_work_units_stack_a_seed_per_process_and_share_a_seed_when_seeds_are_few():
    tasks = build_tasks(["none", "random", "lasso", "pca", "permutation"], [0, 1, 2], (4, 8))
    assert work_units(tasks, 2, stack=False) == [(task,) for task in tasks]
    per_seed = work_units(tasks, 2, stack=True)  # seeds 0 and 1 whole, then seed 2 in two shares
    assert per_seed[:2] == [tuple(t for t in tasks if t.seed == seed) for seed in (0, 1)]
    assert len(per_seed) == 4 and {t.seed for u in per_seed[2:] for t in u} == {2}
    assert work_units(tasks, 3, stack=True) == [tuple(t for t in tasks if t.seed == seed) for seed in (0, 1, 2)]
    one_seed = build_tasks(["none", "random", "lasso", "pca", "permutation"], [0], (4, 8))
    shared = work_units(one_seed, 2, stack=True)
    assert len(shared) == 2 and sorted(t.method for unit in shared for t in unit) == sorted(t.method for t in one_seed)
    costs = [sum(expected_cost(t.method, t.ks) for t in unit) for unit in shared]
    heaviest = max(expected_cost(t.method, t.ks) for t in one_seed)
    assert abs(costs[0] - costs[1]) <= heaviest  # dealt longest first: no unit carries two heavy tasks
    assert all(list(unit) == [t for t in one_seed if t in unit] for unit in shared)  # task order kept
    five = build_tasks(["none", "random", "lasso", "pca", "permutation"], [0, 1, 2, 3, 4], (4, 8))
    units = work_units(five, 2, stack=True)  # 4 whole seeds in two rounds, then seed 4 in two halves
    assert [sorted({t.seed for t in u}) for u in units] == [[0], [1], [2], [3], [4], [4]]
    assert [len(u) for u in units[:4]] == [5] * 4 and sorted(t.method for u in units[4:] for t in u) == sorted(
        t.method for t in five if t.seed == 4)


def test_only_grids_of_a_stackable_backbone_run_seeds_together():
    assert stackable_backbone("mlp", {}) and stackable_backbone("mlp", {"hidden": (8,)})
    assert not stackable_backbone("deepfm", {}) and not stackable_backbone("mlp", {"batch_norm": True})


def test_a_stacked_grid_under_jobs_writes_the_records_of_a_serial_stacked_one_and_resumes(tmp_path, tiny_synthetic):
    methods, ks, seeds = ["random", "lasso", "pca"], (4, 8), [0, 1]
    with open(os.devnull, "w") as quiet:
        run_grid(build_tasks(methods, seeds, ks), GRID, tiny_synthetic, tmp_path / "serial", stream=quiet,
                 stack_retrains=True)
        outcome = run_grid(build_tasks(methods, seeds, ks), GRID, tiny_synthetic, tmp_path / "jobs", stream=quiet,
                           stack_retrains=True, jobs=2)
        again = run_grid(build_tasks(methods, seeds, ks), GRID, tiny_synthetic, tmp_path / "jobs", stream=quiet,
                         stack_retrains=True, jobs=2, resume=True)
    serial = {r["run_id"]: r for r in iter_records(tmp_path / "serial")}
    jobs = {r["run_id"]: r for r in iter_records(tmp_path / "jobs")}
    assert jobs.keys() == serial.keys() and not outcome.failed
    for run_id, record in jobs.items():
        assert record["stack_size"] == 3  # each seed's three methods stacked in the process that ran the seed
        assert {jobs[other]["seed"] for other in record["stacked_with"]} == {record["seed"]}
        assert record["selected_fields"] == serial[run_id]["selected_fields"]
        assert record["test_auc"] == pytest.approx(serial[run_id]["test_auc"], abs=2e-3)  # no dropout: rounding
    assert again.skipped == len(jobs) and not again.records


def test_a_stack_draws_torchs_own_dropout_masks_when_fast_dropout_is_off(tiny_synthetic):
    """The study pins fast_dropout = false: a resumed study's stacked rows must use torch's masks too."""
    models = _models(tiny_synthetic, _context(dropout=0.2), [np.arange(4)] * 2)
    stack = _Stack(models, [np.arange(4)] * 2, torch.device("cpu"), fast_dropout=False)
    x = torch.as_tensor(tiny_synthetic.train.X[:64])
    with torch.no_grad():
        torch.manual_seed(3)
        torch_masks = stack.forward(x, training=True)
        stack.fast_dropout = True
        torch.manual_seed(3)
        word_masks = stack.forward(x, training=True)
        # the reference: the same stack's layers with F.dropout, the draws of nn.Dropout
        h = torch.nn.functional.embedding(
            x[:, stack.fields.flatten()].view(64, 2, 4).transpose(0, 1).long() + stack.id_offsets[:, None],
            stack.table).flatten(2)
        torch.manual_seed(3)
        for w, b in zip(stack.dense[0:-2:2], stack.dense[1:-2:2]):
            h = torch.nn.functional.dropout(torch.relu(torch.baddbmm(b, h, w)), 0.2)
        reference = (h * stack.dense[-2].transpose(1, 2)).sum(-1) + stack.dense[-1][:, :, 0]
    torch.testing.assert_close(torch_masks, reference)
    assert not torch.allclose(torch_masks, word_masks)
