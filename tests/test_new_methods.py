"""The methods of issue 13 (SHARK, SFS, OptFS, permutation, ShuffleGate): their mechanics.

The shared contract (``test_selector_contract.py``) and the planted-field recovery
(``test_ground_truth.py``) are parametrised over the registry and cover these methods too; here each
method's own definition is checked: the Taylor / sensitivity term against a direct autograd
computation, no training in SFS, permutation on validation rows only, OptFS's per-value gates and
field aggregation, ShuffleGate's mixing, its sparsity pressure and its validation-batch gate steps,
and schedules on training steps.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from fmpbench.data.prepared import Split
from fmpbench.data.synthetic import make_synthetic
from fmpbench.selectors import SearchContext, get_selector_class
from fmpbench.selectors.optfs import OptFSSelector, ValueGate, value_counts
from fmpbench.selectors.shark import gate_gradients
from fmpbench.selectors.shufflegate import ShuffleGate, ShuffleGateSelector
from fmpbench.training import SplitTensors, TrainConfig, evaluate

NEW_METHODS = ("shark", "sfs", "optfs", "permutation", "shufflegate")



def context(seed: int = 0, backbone: str = "mlp") -> SearchContext:
    return SearchContext(
        seed=seed,
        backbone=backbone,
        backbone_params={"embed_dim": 8, "hidden": (32, 16)},
        train_config=TrainConfig(max_epochs=3, batch_size=512, patience=1),
    )


@pytest.fixture(scope="module")
def data():
    return make_synthetic(n_rows=6000, seed=0)


@pytest.mark.parametrize("method", NEW_METHODS)
def test_registered_with_a_search_cost_and_a_description(method, data):
    cls = get_selector_class(method)
    assert cls.name == method and cls.search_cost > 0
    selector = cls().fit(data, context())
    assert selector.scores_.shape == (data.num_fields,)
    assert isinstance(selector.describe(), dict) and selector.describe()


@pytest.mark.parametrize("backbone", ["mlp", "deepfm"])
def test_unit_gate_gradient_is_the_taylor_term_of_removing_each_embedding(backbone, data):
    """∂L/∂c_f at c = 1 equals Σ_d ∂L/∂e_fd · e_fd computed directly on the embeddings (+ wide term)."""
    model = context(backbone=backbone).make_model(data.field_dims, label_rate=0.2)
    with torch.no_grad():
        model.embedding.table.weight.normal_(std=0.3)  # a "trained" scale, so the term is not tiny
    train = SplitTensors(data.train, torch.device("cpu"))
    (gate_grad,) = gate_gradients(model, train, 256, 1, seed=7)

    x, y = next(train.shuffled_batches(256, torch.Generator().manual_seed(7)))
    model.eval()
    emb = model.embedding(x).detach().requires_grad_(True)
    model.embedding.forward = lambda ids: emb  # the same forward, differentiated at the embeddings
    loss = F.binary_cross_entropy_with_logits(model(x), y)
    (emb_grad,) = torch.autograd.grad(loss, [emb])
    taylor = (emb_grad * emb).sum(dim=(0, 2)).detach().double().numpy()
    if backbone == "deepfm":
        wide = model.first_order(x).squeeze(-1).detach().requires_grad_(True)
        model.first_order.forward = lambda ids: wide.unsqueeze(-1)
        loss = F.binary_cross_entropy_with_logits(model(x), y)
        (wide_grad,) = torch.autograd.grad(loss, [wide])
        taylor = taylor + (wide_grad * wide).sum(0).detach().double().numpy()
    np.testing.assert_allclose(gate_grad, taylor, rtol=1e-4, atol=1e-9)


def test_shark_scores_training_batches_of_a_trained_model(data):
    selector = get_selector_class("shark")(max_batches=4).fit(data, context())
    info = selector.describe()
    assert info["scored_batches"] == 4 and info["search_steps"] > 0
    # swapping the validation and test labels changes nothing: scores come from training batches
    other = dataclasses.replace(data, test=Split(data.test.X, 1 - data.test.y))
    assert np.array_equal(get_selector_class("shark")(max_batches=4).fit(other, context()).scores_, selector.scores_)


def test_sfs_trains_nothing_and_scores_sum_to_one(data):
    ctx = context()
    fresh = ctx.make_model(data.field_dims, label_rate=float(np.mean(data.train.y)))
    before = {k: v.clone() for k, v in fresh.state_dict().items()}
    selector = get_selector_class("sfs")(n_inits=1).fit(data, ctx)
    assert selector.describe()["training_steps"] == 0
    assert selector.scores_.sum() == pytest.approx(1.0)
    # the single-shot score is |Σ_batches ∂L/∂c| of exactly that initial network
    again = ctx.make_model(data.field_dims, label_rate=float(np.mean(data.train.y)))
    assert all(torch.equal(before[k], v) for k, v in again.state_dict().items())
    grads = gate_gradients(again, SplitTensors(data.train, torch.device("cpu")), 512, 50, ctx.seed)
    expected = np.abs(grads.sum(0))
    np.testing.assert_allclose(selector.scores_, expected / expected.sum(), rtol=1e-9)


def test_permutation_uses_validation_only_and_its_seeded_repeats(data):
    a = get_selector_class("permutation")(n_repeats=2).fit(data, context(0))
    b = get_selector_class("permutation")(n_repeats=2).fit(data, context(0))
    assert np.array_equal(a.scores_, b.scores_)
    assert a.describe()["valid_rows_used"] == len(data.valid)
    flipped = dataclasses.replace(data, test=Split(data.test.X, 1 - data.test.y))
    assert np.array_equal(get_selector_class("permutation")(n_repeats=2).fit(flipped, context(0)).scores_, a.scores_)
    # a constant column cannot change when permuted: its drop is exactly 0
    constant = data.valid.X.copy()
    constant[:, 0] = 1
    c = get_selector_class("permutation")(n_repeats=2).fit(
        dataclasses.replace(data, valid=Split(constant, data.valid.y)), context(0)
    )
    assert c.scores_[0] == 0.0


def test_optfs_gates_each_value_and_aggregates_by_traffic():
    field_dims = [3, 2]
    X = np.array([[0, 0], [0, 1], [0, 1], [2, 1]])
    counts = value_counts(X, field_dims)
    assert counts.tolist() == [3, 0, 1, 1, 3]
    gate = ValueGate(field_dims, counts, init=0.5, beta_end=200.0)
    # the 1/σ(m₀) rescaling: every gate starts at exactly 1, the ungated backbone
    emb = torch.ones(4, 2, 3)
    assert torch.allclose(gate.gate_embeddings(torch.as_tensor(X), emb)[0], emb)
    with torch.no_grad():
        gate.mask.copy_(torch.tensor([5.0, -5.0, -5.0, -5.0, 5.0]))
    gate.advance(1.0)
    assert gate.beta == pytest.approx(200.0)
    gated, weights = gate.gate_embeddings(torch.as_tensor(X), emb)
    open_weight = 1 / torch.sigmoid(torch.tensor(0.5))
    expected = torch.tensor([[1.0, 0.0], [1.0, 1.0], [1.0, 1.0], [0.0, 1.0]]) * open_weight
    assert torch.allclose(weights, expected) and torch.equal(gated[:, :, 0], weights)
    # field 0: 3 of 4 training rows have an open value; field 1: 3 of 4
    search = type("Search", (), {"gate": gate})()
    scores = OptFSSelector().field_scores(search, context())
    np.testing.assert_allclose(scores, np.log([0.75, 0.75]), atol=1e-9)
    # all gates shut far below σ's float range: the fields still rank by how far
    with torch.no_grad():
        gate.mask.copy_(torch.tensor([-10.0, -10.0, -10.0, -20.0, -20.0]))
    scores = OptFSSelector().field_scores(search, context())
    assert np.all(np.isfinite(scores)) and scores[0] > scores[1]


def test_optfs_penalty_reaches_every_value_at_every_step():
    """λ·mean_v σ(β·m_v) over the whole vocabulary: a value absent from the batch is penalised too."""
    field_dims = [3, 2]
    gate = ValueGate(field_dims, np.ones(5), init=0.5, beta_end=200.0)
    gate.advance(0.5)
    hooks = OptFSSelector(l1=2.0).make_hooks(gate, total_steps=10, context=context())
    hooks.extra_loss(nn.Identity(), step=0).backward()
    beta, sig = gate.beta, torch.sigmoid(gate.beta * torch.tensor(0.5))
    expected = 2.0 / 5 * beta * sig * (1 - sig)
    assert torch.allclose(gate.mask.grad, torch.full((5,), float(expected)))
    with pytest.raises(ValueError, match="l1"):
        OptFSSelector(l1=-1.0).make_gate(None, make_synthetic(n_rows=200, seed=0))


def test_optfs_temperature_moves_on_training_steps_only(data):
    selector = OptFSSelector(search_epochs=2, early_stopping=False)
    search = selector.search(data, context())
    steps = search.hooks.steps_taken
    beta = search.gate.beta
    assert beta == pytest.approx(selector.beta_end) and steps > 0
    evaluate(search.model, search.valid)
    assert search.gate.beta == beta and search.hooks.steps_taken == steps


def test_shufflegate_mixes_with_other_rows_of_the_same_field_in_training_only():
    gate = ShuffleGate(num_fields=2, init_logit=0.0)
    emb = torch.arange(24, dtype=torch.float32).view(6, 2, 2)
    x = torch.zeros(6, 2, dtype=torch.long)
    with torch.no_grad():
        gate.theta.copy_(torch.tensor([50.0, -50.0]))  # field 0 open, field 1 fully shuffled
    torch.manual_seed(0)
    mixed, weights = gate.gate_embeddings(x, emb)
    assert torch.allclose(mixed[:, 0], emb[:, 0])
    assert not torch.equal(mixed[:, 1], emb[:, 1])
    # the closed field holds the same rows of the same field, in another order
    assert sorted(mixed[:, 1].tolist()) == sorted(emb[:, 1].tolist())
    assert torch.equal(weights, torch.ones(6, 2))
    gate.eval()
    assert torch.equal(gate.gate_embeddings(x, emb)[0], emb)


def test_shufflegate_sparsity_pushes_useless_gates_below_useful_ones(data):
    selector = ShuffleGateSelector(search_epochs=3, early_stopping=False).fit(data, context())
    names = data.field_names
    strong = [selector.scores_[names.index(f)] for f in data.truth.strong]
    noise = [selector.scores_[i] for i, f in enumerate(names) if f.startswith("noise")]
    assert min(strong) > max(noise)
    assert selector.describe()["mean_gate"] < 0.5  # the penalty closed gates overall from 0.5


def test_shufflegate_penalty_is_zero_without_sparsity(data):
    base = ShuffleGateSelector(search_epochs=1, early_stopping=False, sparsity=0.0)
    search = base.search(data, context())
    assert search.hooks.validation_penalty().item() == 0.0
    with pytest.raises(ValueError, match="sparsity"):
        ShuffleGateSelector(sparsity=-1.0).fit(data, context())
    with pytest.raises(ValueError, match="update_every"):
        ShuffleGateSelector(update_every=0).fit(data, context())


def test_shufflegate_gates_learn_on_validation_batches_only(data):
    """θ moves only in validation steps: with none in the budget, training batches leave it at θ₀."""
    never = ShuffleGateSelector(search_epochs=2, early_stopping=False, update_every=10_000).search(data, context())
    assert never.hooks.gate_updates == 0 and never.hooks.steps_taken > 0
    assert torch.equal(never.gate.theta.detach(), torch.zeros(data.num_fields))
    every = ShuffleGateSelector(search_epochs=2, early_stopping=False, update_every=3).search(data, context())
    assert every.hooks.gate_updates == every.hooks.steps_taken // 3
    assert not torch.equal(every.gate.theta.detach(), torch.zeros(data.num_fields))


def test_shufflegate_shuffled_copy_passes_no_gradient():
    """A closed gate's field is fed other rows' values, which must not train those rows' embeddings."""
    gate = ShuffleGate(num_fields=1, init_logit=-50.0)  # g ≈ 0: the field is all shuffled copy
    emb = torch.randn(8, 1, 4, requires_grad=True)
    mixed, _ = gate.gate_embeddings(torch.zeros(8, 1, dtype=torch.long), emb)
    mixed.sum().backward()
    assert emb.grad is not None and emb.grad.abs().max().item() < 1e-12
