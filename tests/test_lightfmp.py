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
from fmpbench.models.pruning import add_gates, gate_groups, prune, prune_plan, shut_dropped_gates
from fmpbench.protocol import ExperimentConfig, Task, run_task
from fmpbench.selectors import SearchContext
from fmpbench.selectors.lightfmp import LightFMP, SparsityLagrangian
from fmpbench.training import SplitTensors, TrainConfig, evaluate

DIMS = [5, 7, 11, 3, 9, 4]
TINY_CONFIG = TrainConfig(max_epochs=2, batch_size=256, patience=1)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """These models are tiny: a second intra-op thread only adds spin-waiting on a shared 2-core machine
    (measured 6x the CPU time of one thread under load)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_context(seed: int = 0) -> SearchContext:
    return SearchContext(seed, "mlp", {"embed_dim": 8, "hidden": (32, 16)}, TINY_CONFIG)


def random_ids(n: int, dims: list[int], seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.stack([torch.randint(0, d, (n,), generator=g) for d in dims], 1)


@pytest.fixture(scope="module")
def tiny_fit(tiny_synthetic):
    """A short pretraining on 4k rows: enough to have trained weights, BN statistics and spread gates."""
    return LightFMP(subset=0.3).fit(tiny_synthetic, tiny_context())


@pytest.fixture(scope="module")
def ground_truth_fits():
    """The default pipeline (but a 50 % subset: 8k rows) on ``make_synthetic(20_000, seed)``, seeds 0-2.

    The default 10 % subset is 1,600 rows here, few enough for high-cardinality noise fields to memorise:
    it measured strong-field recalls 0.67 / 1 / 1 on this backbone, against 1 / 1 / 1 with 8k rows.
    """
    fits = []
    for seed in range(3):
        data = make_synthetic(n_rows=20_000, seed=seed)
        context = SearchContext(seed, "mlp", {"embed_dim": 8, "hidden": (32, 16)}, TrainConfig(batch_size=512))
        fits.append((data, LightFMP(subset=0.5).fit(data, context)))
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
    pruned, plan = selector.pruned_model(k, tiny_context())
    reference = copy.deepcopy(selector.gated_model_)
    shut_dropped_gates(reference, plan)
    x = torch.from_numpy(tiny_synthetic.valid.X[:1000].astype(np.int64))
    with torch.no_grad():
        expected, got = reference.eval()(x), pruned.eval()(x[:, torch.as_tensor(plan.fields)])
    assert np.array_equal(plan.fields, selector.get_support(k))
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
    again = LightFMP(subset=0.3).fit(tiny_synthetic, tiny_context())
    assert np.array_equal(again.scores_, tiny_fit.scores_)
    other = LightFMP(subset=0.3).fit(tiny_synthetic, tiny_context(seed=1))
    assert not np.array_equal(other.scores_, tiny_fit.scores_)


def test_pretraining_uses_the_subset_and_records_it(tiny_fit, tiny_synthetic):
    info = tiny_fit.describe()
    n_train = len(tiny_synthetic.train)
    assert info["rows_used"] == len(tiny_fit.subset_rows_) == round(0.3 * n_train)
    assert len(tiny_fit.subset_rows_) + len(tiny_fit.remaining_rows_) == n_train
    assert not set(tiny_fit.subset_rows_) & set(tiny_fit.remaining_rows_)
    assert info["pretrain_steps"] >= 500
    assert set(info["gate_groups"]) == {"fields", "hidden_1", "hidden_2"}


def test_pretrain_schedule_shrinks_the_batch_before_adding_epochs():
    selector = LightFMP(pretrain_epochs=1, min_pretrain_steps=500)
    assert selector.pretrain_schedule(3_600_000, 2048) == (2048, 1)
    assert selector.pretrain_schedule(32_000, 2048) == (64, 1)
    batch, epochs = selector.pretrain_schedule(1_600, 2048)
    assert batch == 32 and epochs == 10 and epochs * math.ceil(1_600 / batch) >= 500


def test_fit_native_prunes_and_continues_from_the_pruned_weights(tiny_fit, tiny_synthetic):
    context = tiny_context()
    k = 6
    pruned, plan = tiny_fit.pruned_model(k, context)
    valid = SplitTensors(tiny_synthetic.valid, context.device, plan.fields)
    auc_before = evaluate(pruned, valid)[0]
    outcome = tiny_fit.fit_native(k, tiny_synthetic, context)
    extra = outcome.extra
    assert outcome.fields.tolist() == tiny_fit.get_support(k).tolist()
    assert outcome.model.num_fields == k and outcome.model.hidden == [16, 8] == extra["hidden_kept"]
    assert extra["hidden_full"] == [32, 16] and extra["embed_dim_kept"] == 8
    assert extra["continued_rows"] == len(tiny_fit.remaining_rows_)
    assert extra["subset_rows"] == len(tiny_fit.subset_rows_)
    assert extra["valid_auc_before_continued_training"] == pytest.approx(auc_before, abs=1e-12)
    assert auc_before > 0.6  # the reused weights already predict
    assert outcome.train_seconds >= extra["continued_training_seconds"]
    assert type(outcome.model) is MLP
    assert outcome.model.field_gate is None


def test_ablation_no_weight_reuse_reinitialises(tiny_fit):
    context = tiny_context()
    reused, plan = tiny_fit.pruned_model(6, context)
    fresh_selector = copy.copy(tiny_fit)
    fresh_selector.reuse_weights = False
    fresh, fresh_plan = fresh_selector.pruned_model(6, context)
    again, _ = fresh_selector.pruned_model(6, context)
    assert np.array_equal(plan.fields, fresh_plan.fields) and plan.hidden == fresh_plan.hidden
    assert not torch.equal(fresh.mlp[0].weight, reused.mlp[0].weight)
    assert torch.equal(fresh.mlp[0].weight, again.mlp[0].weight)  # seeded


def test_ablation_no_model_pruning_keeps_every_hidden_unit(tiny_synthetic):
    selector = LightFMP(prune_model=False, subset=0.3, min_pretrain_steps=30).fit(tiny_synthetic, tiny_context())
    assert set(selector.describe()["gate_groups"]) == {"fields"}
    pruned, plan = selector.pruned_model(4, tiny_context())
    assert plan.hidden == [32, 16] and pruned.hidden == [32, 16]


def test_bad_parameters_are_one_line_errors(tiny_synthetic):
    with pytest.raises(ValueError, match="continue_on must be one of remaining, all"):
        LightFMP(continue_on="rest").fit(tiny_synthetic, tiny_context())
    with pytest.raises(ValueError, match="subset=1.0 leaves no remaining rows"):
        LightFMP(subset=1.0).fit(tiny_synthetic, tiny_context())
    with pytest.raises(RuntimeError, match="call fit"):
        LightFMP().fit_native(3, tiny_synthetic, tiny_context())


def test_harness_reports_native_and_from_scratch_rows(tiny_synthetic, tmp_path):
    config = ExperimentConfig(
        dataset="synthetic",
        backbone="mlp",
        backbone_params={"embed_dim": 4, "hidden": (16,)},
        train_config=TINY_CONFIG,
        method_params={"lightfmp": {"min_pretrain_steps": 30, "continue_on": "all"}},
        save_predictions=False,
    )
    records = run_task(Task("lightfmp", seed=0, ks=(5,)), config, tiny_synthetic, tmp_path)
    assert sorted(r["method"] for r in records) == ["lightfmp", "lightfmp-fs"]
    for record in records:
        assert record["status"] == "ok", record.get("error")
        assert len(record["selected_fields"]) == 5
    native = next(r for r in records if r["native_pipeline"])
    scratch = next(r for r in records if not r["native_pipeline"])
    assert native["native_info"]["hidden_kept"] == [8]
    assert native["native_info"]["continued_rows"] == len(tiny_synthetic.train)
    assert native["dense_params"] < scratch["dense_params"]
    assert native["flops_per_sample"] < scratch["flops_per_sample"]
    assert native["embedding_params"] == scratch["embedding_params"]
