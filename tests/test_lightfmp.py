"""Light-FMP: hard-concrete gates, exact physical pruning, the sparsity Lagrangian, and the selector."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch

import fmpbench.selectors.lightfmp  # noqa: F401  (registers lightfmp)
from fmpbench.data.synthetic import make_synthetic
from fmpbench.measures import flops_per_sample
from fmpbench.models import build_backbone
from fmpbench.models.backbones import MLP
from fmpbench.models.hard_concrete import BETA, GAMMA, ZETA, HardConcrete
from fmpbench.models.pruning import add_gates, gate_groups, magnitude_prune, prune, prune_plan, shut_dropped_gates
from fmpbench.protocol import ExperimentConfig, Task, run_task
from fmpbench.selectors import SearchContext
from fmpbench.selectors.lightfmp import LightFMP, ReducedLearningRate, SparsityLagrangian, stratified_subset
from fmpbench.training import SplitTensors, TrainConfig, evaluate

DIMS = [5, 7, 11, 3, 9, 4]
TINY_CONFIG = TrainConfig(max_epochs=2, batch_size=256, patience=1)


def tiny_context(seed: int = 0) -> SearchContext:
    return SearchContext(seed, "mlp", {"embed_dim": 8, "hidden": (32, 16)}, TINY_CONFIG)


def random_ids(n: int, dims: list[int], seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.stack([torch.randint(0, d, (n,), generator=g) for d in dims], 1)


@pytest.fixture(scope="module")
def tiny_fit(tiny_synthetic):
    """A short pretraining on 4k rows (10 passes over a 30 % subset): trained weights, BN statistics and
    spread gates."""
    return LightFMP(subset=0.3, pretrain_epochs=10).fit(tiny_synthetic, tiny_context())


@pytest.fixture(scope="module")
def ground_truth_fits():
    """The pipeline on a 50 % subset (8k rows) of ``make_synthetic(20_000, seed)``, seeds 0-2, 30 passes.

    One pass over 8k rows at batch 512 is 16 steps, too few for the Lagrangian to reach its target:
    these tests check the mechanism given enough steps (480), not the default length.
    """
    fits = []
    for seed in range(3):
        data = make_synthetic(n_rows=20_000, seed=seed)
        context = SearchContext(seed, "mlp", {"embed_dim": 8, "hidden": (32, 16)}, TrainConfig(batch_size=512))
        fits.append((data, LightFMP(subset=0.5, pretrain_epochs=30).fit(data, context)))
    return fits


# -- hard-concrete gates ----------------------------------------------------------------------------


def test_hard_concrete_formulas_and_sampling():
    torch.manual_seed(0)
    gate = HardConcrete(4, init_log_alpha=0.0)
    gate.log_alpha.data = torch.tensor([-3.0, -0.5, 1.0, 4.0])
    la = gate.log_alpha.detach()
    expected_eval = (torch.sigmoid(la) * (ZETA - GAMMA) + GAMMA).clamp(0, 1)
    expected_p = torch.sigmoid(la - BETA * math.log(-GAMMA / ZETA))
    gate.eval()
    assert torch.equal(gate(7), expected_eval)
    assert torch.allclose(gate.prob_nonzero(), expected_p)
    gate.train()
    z = gate(200_000)
    assert z.shape == (200_000, 4) and z.min() == 0 and z.max() == 1
    assert torch.allclose((z > 0).float().mean(0), expected_p, atol=5e-3)
    assert ((z > 0) & (z < 1)).any()
    z.sum().backward()
    assert gate.log_alpha.grad is not None and torch.all(gate.log_alpha.grad > 0)


def test_gates_start_open():
    gate = HardConcrete(3).eval()
    assert torch.equal(gate(1), torch.ones(3))
    assert torch.all(gate.prob_nonzero() > 0.98)


# -- exact physical pruning --------------------------------------------------------------------------


def randomised_gated(backbone: str, embedding_dims: bool, batch_norm: bool = True) -> torch.nn.Module:
    """A gated model whose gates, weights and BN statistics are far from their initial values."""
    torch.manual_seed(1)
    model = build_backbone(backbone, DIMS, embed_dim=6, hidden=(10, 8), dropout=0.2, batch_norm=batch_norm)
    add_gates(model, embedding_dims=embedding_dims)
    with torch.no_grad():
        for gate in gate_groups(model).values():
            gate.log_alpha.normal_(0.0, 3.0)
        for module in model.modules():
            if isinstance(module, (torch.nn.Embedding, torch.nn.Linear)):
                module.weight.normal_(0.0, 0.5)
    model.train()
    for _ in range(3):  # running statistics that differ from (0, 1)
        model(random_ids(256, DIMS))
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm1d):
                module.weight.uniform_(0.5, 2.0)
                module.bias.normal_()
    return model


@pytest.mark.parametrize(
    ("backbone", "embedding_dims", "batch_norm"),
    [(b, e, True) for b in ("mlp", "deepfm", "widedeep") for e in (False, True)] + [("mlp", True, False)],
)
def test_pruned_network_computes_what_the_gated_one_does(backbone, embedding_dims, batch_norm):
    gated = randomised_gated(backbone, embedding_dims, batch_norm)
    plan = prune_plan(gated, 4, keep_ratio=0.5, embed_keep_ratio=0.5)
    kept_field_gates = gate_groups(gated)["fields"].deterministic()[torch.as_tensor(plan.fields)]
    assert ((kept_field_gates > 0) & (kept_field_gates < 1)).any()  # folding is exercised
    pruned = prune(gated, plan).eval()
    reference = copy.deepcopy(gated)
    shut_dropped_gates(reference, plan)
    x = random_ids(512, DIMS, seed=2)
    with torch.no_grad():
        expected, got = reference.eval()(x), pruned(x[:, torch.as_tensor(plan.fields)])
    assert expected.std() > 0.05  # a meaningful comparison, not two constants
    assert torch.allclose(got, expected, atol=1e-5, rtol=0)
    # the gated model is left untouched
    assert all(torch.equal(g.mask, torch.ones_like(g.mask)) for g in gate_groups(gated).values())


def test_pruned_pretrained_network_equals_the_gated_one_in_eval(tiny_fit, tiny_synthetic):
    selector = tiny_fit
    k = 5
    pruned, plan = selector.pruned_model(k, tiny_synthetic, tiny_context())
    reference = copy.deepcopy(selector.pretraining(k, tiny_synthetic, tiny_context()).model)
    shut_dropped_gates(reference, plan)
    x = torch.from_numpy(tiny_synthetic.valid.X[:1000].astype(np.int64))
    with torch.no_grad():
        expected, got = reference.eval()(x), pruned.eval()(x[:, torch.as_tensor(plan.fields)])
    assert np.array_equal(plan.fields, selector.support(k, tiny_synthetic, tiny_context()))
    assert torch.allclose(got, expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("batch_norm", [True, False])
def test_pruned_sizes_and_flops_are_the_analytic_ones(batch_norm):
    gated = randomised_gated("mlp", embedding_dims=True, batch_norm=batch_norm)
    plan = prune_plan(gated, 4, keep_ratio=0.5, embed_keep_ratio=0.5)
    pruned = prune(gated, plan)
    kept_dims = [DIMS[f] for f in plan.fields]
    d, (h1, h2) = 3, plan.hidden
    assert (len(plan.dims), h1, h2) == (3, 5, 4)
    assert pruned.embedding.table.weight.shape == (sum(kept_dims), d)
    assert pruned.embedding_parameters() == sum(kept_dims) * d
    linear = 4 * d * h1 + h1 * h2 + h2 * 1
    bn_affine = 2 * (h1 + h2) if batch_norm else 0
    assert pruned.dense_parameters() == linear + (h1 + h2 + 1) + bn_affine
    x = random_ids(64, kept_dims)
    assert flops_per_sample(pruned, x) == 2 * linear
    full = build_backbone("mlp", DIMS, embed_dim=6, hidden=(10, 8), batch_norm=batch_norm)
    assert flops_per_sample(full, random_ids(64, DIMS)) == 2 * (len(DIMS) * 6 * 10 + 10 * 8 + 8)


def test_dcn_native_pruning_is_refused():
    model = build_backbone("dcn", DIMS, embed_dim=4, hidden=(8,))
    add_gates(model)
    with pytest.raises(ValueError, match="supports the backbones mlp, deepfm, widedeep, not 'dcn'"):
        prune(model, prune_plan(model, 2))


# -- sparsity Lagrangian -----------------------------------------------------------------------------


def test_multipliers_ascend_and_targets_ramp():
    gate = HardConcrete(10)  # open: expected sparsity ~0.01
    hooks = SparsityLagrangian({"fields": gate}, {"fields": 0.6}, ramp_steps=10, gate_lr=0.1, lambda_lr=0.1)
    assert hooks.target_at(0).item() == 0.0 and hooks.target_at(5).item() == pytest.approx(0.3)
    assert hooks.target_at(50).item() == pytest.approx(0.6)
    hooks.extra_loss(None, step=10).backward()
    hooks.after_step(None, step=11)
    lambda1, lambda2 = hooks.lambdas[0].tolist()
    # below target: ascent makes λ1 negative (the loss then rewards sparsity) and λ2 positive
    assert lambda1 < 0 < lambda2
    assert hooks.lambdas.grad is None
    assert hooks.parameter_groups(None) == [{"params": [gate.log_alpha], "lr": 0.1}]


# -- the selector ------------------------------------------------------------------------------------


def test_lagrangian_reaches_the_field_target(ground_truth_fits):
    for _, selector in ground_truth_fits:
        info = selector.describe()
        open_fields = float(selector.gated_model_.field_gate.gate.prob_nonzero().detach().sum())
        assert info["target_k"] == 9
        assert info["gate_groups"]["fields"]["expected_open"] == pytest.approx(open_fields)
        assert abs(open_fields - 9) <= 1.0, info["gate_groups"]


def test_recovers_the_strong_fields(ground_truth_fits):
    recalls = []
    for data, selector in ground_truth_fits:
        kept = {data.field_names[f] for f in selector.get_support(len(data.truth.informative))}
        recalls.append(np.mean([f in kept for f in data.truth.strong]))
    assert sum(r >= 0.8 for r in recalls) >= 2, recalls


def test_same_seed_same_scores(tiny_synthetic, tiny_fit):
    again = LightFMP(subset=0.3, pretrain_epochs=10).fit(tiny_synthetic, tiny_context())
    assert np.array_equal(again.scores_, tiny_fit.scores_)
    other = LightFMP(subset=0.3, pretrain_epochs=10).fit(tiny_synthetic, tiny_context(seed=1))
    assert not np.array_equal(other.scores_, tiny_fit.scores_)


def test_pretraining_uses_the_subset_and_records_it(tiny_fit, tiny_synthetic):
    info = tiny_fit.describe()
    n_train = len(tiny_synthetic.train)
    assert info["rows_used"] == len(tiny_fit.subset_rows_) == round(0.3 * n_train)
    assert len(tiny_fit.subset_rows_) + len(tiny_fit.remaining_rows_) == n_train
    assert not set(tiny_fit.subset_rows_) & set(tiny_fit.remaining_rows_)
    assert info["subset_strata"] == "uniform (no user field)"
    assert set(info["gate_groups"]) == {"fields", "hidden_1", "hidden_2"}


def test_pretraining_does_exactly_the_configured_passes_at_the_configured_batch(tiny_fit, tiny_synthetic):
    info = tiny_fit.describe()
    n_subset, batch = len(tiny_fit.subset_rows_), TINY_CONFIG.batch_size
    assert (info["pretrain_batch_size"], info["pretrain_epochs"]) == (batch, 10)
    assert info["pretrain_steps"] == 10 * math.ceil(n_subset / batch)
    assert LightFMP().pretrain_schedule(640, 512) == (512, 1)  # no hidden rule on small subsets


def test_pretrain_schedule_of_the_earlier_ablation_shrinks_the_batch_before_adding_epochs():
    selector = LightFMP(pretrain_epochs=1, min_pretrain_steps=500)
    assert selector.pretrain_schedule(3_600_000, 2048) == (2048, 1)
    assert selector.pretrain_schedule(32_000, 2048) == (64, 1)
    batch, epochs = selector.pretrain_schedule(1_600, 2048)
    assert batch == 32 and epochs == 10 and epochs * math.ceil(1_600 / batch) >= 500


def test_fit_native_prunes_and_continues_from_the_pruned_weights(tiny_fit, tiny_synthetic):
    context = tiny_context()
    k = 6
    pruned, plan = tiny_fit.pruned_model(k, tiny_synthetic, context)
    valid = SplitTensors(tiny_synthetic.valid, context.device, plan.fields)
    auc_before = evaluate(pruned, valid)[0]
    outcome = tiny_fit.fit_native(k, tiny_synthetic, context)
    extra = outcome.extra
    assert outcome.fields.tolist() == tiny_fit.support(k, tiny_synthetic, context).tolist()
    assert extra["pretrain_target_k"] == k  # the row at budget k comes from a pretraining towards k
    assert outcome.model.num_fields == k and outcome.model.hidden == [16, 8] == extra["hidden_kept"]
    assert extra["hidden_full"] == [32, 16] and extra["embed_dim_kept"] == 8
    assert extra["continued_rows"] == len(tiny_synthetic.train)  # the rebuttal's "full dataset"
    assert extra["continue_lr"] == {"factor": 0.1, "epochs": 2}
    assert extra["subset_rows"] == len(tiny_fit.subset_rows_)
    assert extra["valid_auc_before_continued_training"] == pytest.approx(auc_before, abs=1e-12)
    assert auc_before > 0.6  # the reused weights already predict
    assert outcome.train_seconds >= extra["continued_training_seconds"]
    assert type(outcome.model) is MLP
    assert outcome.model.field_gate is None


def test_ablation_no_weight_reuse_reinitialises(tiny_fit, tiny_synthetic):
    context = tiny_context()
    data = tiny_synthetic
    reused, plan = tiny_fit.pruned_model(6, data, context)
    fresh_selector = copy.copy(tiny_fit)
    fresh_selector.reuse_weights = False
    fresh, fresh_plan = fresh_selector.pruned_model(6, data, context)
    again, _ = fresh_selector.pruned_model(6, data, context)
    assert np.array_equal(plan.fields, fresh_plan.fields) and plan.hidden == fresh_plan.hidden
    assert not torch.equal(fresh.mlp[0].weight, reused.mlp[0].weight)
    assert torch.equal(fresh.mlp[0].weight, again.mlp[0].weight)  # seeded


def test_ablation_no_model_pruning_keeps_every_hidden_unit(tiny_synthetic):
    selector = LightFMP(prune_model=False, subset=0.3).fit(tiny_synthetic, tiny_context())
    assert set(selector.describe()["gate_groups"]) == {"fields"}
    pruned, plan = selector.pruned_model(4, tiny_synthetic, tiny_context())
    assert plan.hidden == [32, 16] and pruned.hidden == [32, 16]


def test_bad_parameters_are_one_line_errors(tiny_synthetic):
    with pytest.raises(ValueError, match="continue_on must be one of all, remaining"):
        LightFMP(continue_on="rest").fit(tiny_synthetic, tiny_context())
    with pytest.raises(ValueError, match="subset=1.0 leaves no remaining rows"):
        LightFMP(subset=1.0, continue_on="remaining").fit(tiny_synthetic, tiny_context())
    with pytest.raises(RuntimeError, match="call fit"):
        LightFMP().fit_native(3, tiny_synthetic, tiny_context())


def test_harness_reports_native_and_from_scratch_rows(tiny_synthetic, tmp_path):
    config = ExperimentConfig(
        dataset="synthetic",
        backbone="mlp",
        backbone_params={"embed_dim": 4, "hidden": (16,)},
        train_config=TINY_CONFIG,
        method_params={"lightfmp": {"pretrain_epochs": 3}},
        save_predictions=False,
        matched_baselines=("lightfmp",),
    )
    records = run_task(Task("lightfmp", seed=0, ks=(5,)), config, tiny_synthetic, tmp_path)
    assert sorted(r["method"] for r in records) == ["lightfmp", "lightfmp+magnitude", "lightfmp+small", "lightfmp-fs"]
    for record in records:
        assert record["status"] == "ok", record.get("error")
        assert len(record["selected_fields"]) == 5
    by_row = {r["pipeline"]: r for r in records}
    native, scratch = by_row["native"], by_row["retrain"]
    assert native["native_info"]["hidden_kept"] == [8]
    assert native["native_info"]["continued_rows"] == len(tiny_synthetic.train)
    assert native["dense_params"] < scratch["dense_params"]
    assert native["flops_per_sample"] < scratch["flops_per_sample"]
    assert native["embedding_params"] == scratch["embedding_params"]
    # the matched-budget baselines: same fields, same sizes as the pruned network
    for kind in ("small", "magnitude"):
        row = by_row[kind]
        assert row["selected_fields"] == native["selected_fields"] == scratch["selected_fields"]
        assert (row["dense_params"], row["embedding_params"]) == (native["dense_params"], native["embedding_params"])
        assert row["flops_per_sample"] == native["flops_per_sample"]
        assert row["native_info"]["hidden_kept"] == [8]
    assert by_row["magnitude"]["native_info"]["hidden_full"] == [16]
    # every row says which pretraining chose its fields: the one towards k = 5
    assert {r["selection"]["target_k"] for r in records} == {5}


def test_each_budget_gets_its_own_pretraining(tiny_synthetic, tmp_path):
    config = ExperimentConfig(
        dataset="synthetic",
        backbone_params={"embed_dim": 4, "hidden": (16,)},
        train_config=TINY_CONFIG,
        save_predictions=False,
    )
    records = run_task(Task("lightfmp", seed=0, ks=(3, 12)), config, tiny_synthetic, tmp_path)
    for record in records:
        assert record["selection"]["target_k"] == record["k"]
        if record["native_pipeline"]:
            assert record["native_info"]["pretrain_target_k"] == record["k"]
            open_fields = record["native_info"]["gate_groups"]["fields"]["target_sparsity"]
            assert open_fields == pytest.approx(1 - record["k"] / tiny_synthetic.num_fields)
    reused = ExperimentConfig(**{**config.__dict__, "method_params": {"lightfmp": {"target_k": 0.5}}})
    for record in run_task(Task("lightfmp", seed=0, ks=(3, 12)), reused, tiny_synthetic, tmp_path):
        assert record["selection"]["target_k"] == 9  # one pretraining at F/2 for every k (the ablation)


def test_stratified_subset_keeps_each_users_share_within_rounding():
    rng = np.random.default_rng(0)
    users = np.repeat(np.arange(40), rng.integers(1, 60, 40))
    rng.shuffle(users)
    rows = stratified_subset(users, 0.1, rng)
    assert len(rows) == round(0.1 * len(users)) and len(set(rows.tolist())) == len(rows)
    counts, taken = np.bincount(users), np.bincount(users[rows], minlength=40)
    assert np.all(taken >= np.floor(0.1 * counts)) and np.all(taken <= np.ceil(0.1 * counts))


def test_subset_is_stratified_by_the_user_field_when_there_is_one():
    from fmpbench.data.synthetic import make_standin

    data = make_standin("movielens", n_rows=6000)
    selector = LightFMP(subset=0.2)
    selector._draw_subset(data, seed=0)
    users = data.train.X[:, data.user_field]
    counts, taken = np.bincount(users), np.bincount(users[selector.subset_rows_], minlength=users.max() + 1)
    assert np.all(np.abs(taken - 0.2 * counts) < 1)
    assert selector.subset_strata_ == "user activity (user_id)"


def test_reduced_learning_rate_is_applied_then_lifted(tiny_synthetic, monkeypatch):
    import fmpbench.training.trainer as trainer_module

    made: list = []
    real = trainer_module.make_optimizers
    monkeypatch.setattr(trainer_module, "make_optimizers", lambda *a: made.extend(real(*a)) or made)

    class Spy(ReducedLearningRate):
        seen: list = []

        def after_step(self, model, step):
            self.seen.append([group["lr"] for opt in made for group in opt.param_groups])

    context = tiny_context()
    model = context.make_model(tiny_synthetic.field_dims)
    train, valid = context.tensors(tiny_synthetic)
    steps_per_epoch = math.ceil(len(train) / TINY_CONFIG.batch_size)
    context.trainer(Spy(0.1, 2)).fit(model, train, valid, max_epochs=4, early_stopping=False)
    base = [TINY_CONFIG.embed_lr, TINY_CONFIG.lr]
    per_epoch = [Spy.seen[e * steps_per_epoch] for e in range(4)]
    assert per_epoch[0] == per_epoch[1] == pytest.approx([0.1 * lr for lr in base])
    assert per_epoch[2] == per_epoch[3] == pytest.approx(base)


# -- matched-budget magnitude pruning ----------------------------------------------------------------


def test_magnitude_pruning_removes_the_smallest_norm_units_exactly():
    torch.manual_seed(3)
    model = build_backbone("mlp", DIMS, embed_dim=4, hidden=(10, 6), dropout=0.0, batch_norm=True).eval()
    model(random_ids(64, DIMS))  # any state; BN statistics stay at their initial values in eval
    first, second = (layer for layer in model.mlp if isinstance(layer, torch.nn.Linear))
    pruned, plan = magnitude_prune(model, keep_ratio=0.5)
    kept1 = np.sort(np.argsort(-first.weight.detach().norm(dim=1).numpy())[:5])
    # the second layer's norms count only the inputs that survive the first cut
    kept2 = np.sort(np.argsort(-second.weight.detach()[:, kept1].norm(dim=1).numpy())[:3])
    assert [u.tolist() for u in plan.units] == [kept1.tolist(), kept2.tolist()]
    new_first, new_second = (layer for layer in pruned.mlp if isinstance(layer, torch.nn.Linear))
    assert torch.equal(new_first.weight, first.weight[torch.as_tensor(kept1)])
    assert torch.equal(new_second.weight, second.weight[torch.as_tensor(kept2)][:, torch.as_tensor(kept1)])
    assert torch.equal(pruned.head.weight, model.head.weight[:, torch.as_tensor(kept2)])
    assert pruned.hidden == [5, 3] and model.hidden == [10, 6]  # the source model is left unchanged
