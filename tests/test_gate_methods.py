"""The four gate-based selectors (AutoField, AdaFS, LPFS, MvFS) and their shared search machinery.

Checks what METHODS.md requires of each: one finite score per field, determinism for a seed,
schedules that move on training steps only, deterministic gates at evaluation, the method-specific
mechanics (bi-level logits, proximal step, initialisation and threshold scale) and recovery of the
planted strong fields of ``synthetic``. Searches run on a small backbone; each is cached per module.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fmpbench.data.synthetic import make_synthetic
from fmpbench.selectors import SearchContext, get_selector_class
from fmpbench.selectors.adafs import AdaFSController
from fmpbench.selectors.autofield import AutoFieldGate, AutoFieldHooks, AutoFieldSelector
from fmpbench.selectors.gates import GateSearch, GateSearchSelector
from fmpbench.selectors.lpfs import LPFSGate, LPFSHooks, LPFSSelector
from fmpbench.selectors.mvfs import MvFSGate
from fmpbench.training import SplitTensors, TrainConfig, evaluate, predict
from fmpbench.training.trainer import make_optimizers

METHODS = ("autofield", "adafs", "lpfs", "mvfs")  # registered by importing their modules above
SEEDS = (0, 1, 2)
STRONG_RECALL = 0.8
SCHEDULED = {"autofield": "tau", "lpfs": "eps", "mvfs": "tau"}



def context(seed: int = 0, **config: object) -> SearchContext:
    settings = {"max_epochs": 5, "batch_size": 512, "patience": 2, **config}
    return SearchContext(
        seed=seed,
        backbone="mlp",
        backbone_params={"embed_dim": 8, "hidden": (32, 16)},
        train_config=TrainConfig(**settings),
    )


@pytest.fixture(scope="module")
def datasets():
    return {seed: make_synthetic(n_rows=20_000, seed=seed) for seed in SEEDS}


@pytest.fixture(scope="module")
def tiny():
    return make_synthetic(n_rows=4000, seed=0)


@pytest.fixture(scope="module")
def ground_truth_fits(datasets):
    """``get(method)`` → per seed: (selector, strong recall); one search per method and seed."""
    cache: dict[str, list[tuple[GateSearchSelector, float]]] = {}

    def get(method: str) -> list[tuple[GateSearchSelector, float]]:
        if method not in cache:
            rows = []
            for seed, data in datasets.items():
                torch.manual_seed(1000 + seed)  # unrelated global state: only context.seed may matter
                selector = get_selector_class(method)().fit(data, context(seed))
                k = len(data.truth.informative)
                kept = {data.field_names[f] for f in selector.get_support(k)}
                rows.append((selector, len(kept & set(data.truth.strong)) / len(data.truth.strong)))
            cache[method] = rows
            print(f"\n{method}: " + "; ".join(
                f"seed {s}: strong recall {r:.2f}, search {sel.describe()['search_train_seconds']:.1f} s"
                for s, (sel, r) in zip(SEEDS, rows)
            ))
        return cache[method]

    return get


@pytest.fixture(scope="module")
def tiny_searches(tiny):
    """``get(method)`` → a finished search on 4k rows (fixed 3-epoch budget, so schedules run to the end)."""
    cache: dict[str, GateSearch] = {}

    def get(method: str) -> GateSearch:
        if method not in cache:
            selector = get_selector_class(method)(search_epochs=3, early_stopping=False)
            cache[method] = selector.search(tiny, context(0))
        return cache[method]

    return get


@pytest.mark.parametrize("method", METHODS)
def test_registered_and_parameters_round_trip(method):
    cls = get_selector_class(method)
    assert issubclass(cls, GateSearchSelector) and cls.name == method
    params = cls().get_params()
    assert cls(**params).get_params() == params
    assert params["search_epochs"] >= 1 and "gate_lr" in params


@pytest.mark.parametrize("method", METHODS)
def test_scores_finite_one_per_field_and_describe(method, ground_truth_fits, datasets):
    for selector, _ in ground_truth_fits(method):
        assert selector.scores_.shape == (datasets[0].num_fields,)
        assert np.all(np.isfinite(selector.scores_))
        info = selector.describe()
        assert {"search_epochs_run", "search_best_epoch", "search_steps", "search_valid_auc"} <= info.keys()
        if method in SCHEDULED:
            assert f"final_{SCHEDULED[method]}" in info


@pytest.mark.parametrize("method", METHODS)
def test_recovers_the_strong_fields(method, ground_truth_fits):
    recalls = [recall for _, recall in ground_truth_fits(method)]
    assert sum(r >= STRONG_RECALL for r in recalls) >= 2, f"{method}: strong recall per seed {recalls}"


@pytest.mark.parametrize("method", METHODS)
def test_same_seed_gives_identical_scores(method, tiny):
    runs = []
    for global_seed in (1, 2):
        torch.manual_seed(global_seed)
        runs.append(get_selector_class(method)(search_epochs=2).fit(tiny, context(7)).scores_)
    np.testing.assert_array_equal(runs[0], runs[1])


@pytest.mark.parametrize("method", METHODS)
def test_evaluation_is_deterministic_and_leaves_schedules_alone(method, tiny_searches, tiny):
    search = tiny_searches(method)
    valid = SplitTensors(tiny.valid, torch.device("cpu"))
    before = search.gate.schedule_state()
    steps = search.hooks.steps_taken
    first = predict(search.model, valid)
    evaluate(search.model, valid)
    second = predict(search.model, valid)
    np.testing.assert_array_equal(first, second)
    assert search.gate.schedule_state() == before and search.hooks.steps_taken == steps
    search.model.eval()
    with torch.no_grad():
        emb = search.model.embedding(valid.x[:256])
        torch.testing.assert_close(search.gate(emb), search.gate(emb), rtol=0, atol=0)
    search.model.train()


@pytest.mark.parametrize(("method", "start", "end"), [("autofield", 1.0, 0.01), ("lpfs", 0.1, 1e-5)])
def test_schedule_runs_its_course_on_training_steps(method, start, end, tiny_searches):
    search = tiny_searches(method)
    assert search.hooks.steps_taken == search.hooks.total_steps == search.results[-1].steps
    value = search.gate.schedule_state()[SCHEDULED[method]]
    assert value == pytest.approx(end)
    search.gate.advance(0.0)
    assert search.gate.schedule_state()[SCHEDULED[method]] == pytest.approx(start)
    search.gate.advance(1.0)


def test_autofield_gate_is_noisy_in_training_only(tiny_searches):
    gate = tiny_searches("autofield").gate
    assert isinstance(gate, AutoFieldGate)
    emb = torch.zeros(4, gate.logits.shape[0], 8)
    gate.train()
    gate.tau = 1.0
    assert not torch.equal(gate(emb), gate(emb))
    gate.eval()
    torch.testing.assert_close(gate(emb), torch.softmax(gate.logits, -1)[:, 1], rtol=0, atol=0)
    gate.train()
    gate.advance(1.0)


def test_autofield_logits_move_only_in_validation_steps(tiny):
    class CheckedHooks(AutoFieldHooks):
        def __init__(self, *args: object) -> None:
            super().__init__(*args)
            self.snapshot = self.gate.logits.detach().clone()
            self.moved_in_validation = 0

        def after_step(self, model, step):
            assert torch.equal(self.gate.logits, self.snapshot), f"logits changed on training step {step}"
            super().after_step(model, step)

        def validation_step(self, model, x, y, step):
            super().validation_step(model, x, y, step)
            self.moved_in_validation += not torch.equal(self.gate.logits, self.snapshot)
            self.snapshot = self.gate.logits.detach().clone()

    class CheckedAutoField(AutoFieldSelector):
        def make_hooks(self, gate, total_steps, context):
            return CheckedHooks(gate, total_steps, self.gate_lr, self.update_every)

    selector = CheckedAutoField(search_epochs=2, early_stopping=False)
    search = selector.search(tiny, context(0))
    hooks = search.hooks
    assert isinstance(hooks, CheckedHooks)
    expected_updates = search.results[-1].steps // selector.update_every
    assert hooks.gate_updates == expected_updates > 0
    assert hooks.moved_in_validation == expected_updates
    trained = {id(p) for opt in make_optimizers(search.model, context().train_config, hooks) for g in opt.param_groups
               for p in g["params"]}
    assert id(search.gate.logits) not in trained


def test_lpfs_proximal_step_zeroes_small_x_and_shrinks_the_rest():
    gate = LPFSGate(5, "lpfs", eps_start=0.1, eps_end=1e-5, alpha=1.0, tau=2.0)
    with torch.no_grad():
        gate.x.copy_(torch.tensor([0.004, -0.01, 0.5, -1.0, 0.0]))
    hooks = LPFSHooks(gate, total_steps=100, gate_lr=0.01, l1=1.0)  # threshold λ·lr = 0.01
    hooks.after_step(torch.nn.Module(), 1)
    torch.testing.assert_close(gate.x.detach(), torch.tensor([0.0, 0.0, 0.49, -0.99, 0.0]))
    assert gate.eps == pytest.approx(0.1 * (1e-4) ** 0.01)


def test_lpfs_gates_and_score_magnitude():
    gate = LPFSGate(3, "lpfs", eps_start=0.1, eps_end=1e-5, alpha=1.0, tau=2.0)
    x = torch.tensor([1.0, -2.0, 0.0], dtype=torch.float64)
    torch.testing.assert_close(gate.gate(x), torch.tensor([1 / 1.1, 4 / 4.1, 0.0], dtype=torch.float64))
    plus = LPFSGate(3, "lpfs++", eps_start=0.1, eps_end=1e-5, alpha=1.0, tau=2.0)
    expected = torch.sign(x) * x**2 / (x**2 + 0.1) + 0.1**0.5 * torch.atan(x)
    torch.testing.assert_close(plus.gate(x), expected)
    assert plus.gate(x)[1] < 0  # an open gate with negative x: the score must use |g|, not x


def test_lpfs_plus_plus_and_bad_variant(tiny):
    selector = LPFSSelector(variant="lpfs++", search_epochs=1).fit(tiny, context(0))
    assert np.all(selector.scores_ >= 0) and np.all(np.isfinite(selector.scores_))
    with pytest.raises(ValueError, match="unknown variant"):
        LPFSSelector(variant="lpfs+").fit(tiny, context(0))


def test_mvfs_initialised_threshold_on_the_one_over_f_scale(tiny_searches, tiny):
    fields = tiny.num_fields
    torch.manual_seed(0)
    fresh = MvFSGate(fields, 8, views=6, threshold=1.0 / fields, tau_start=fields, tau_end=10.0 * fields)
    for param in (fresh.view_gate.weight, fresh.view_gate.bias):
        assert torch.all(torch.isfinite(param)) and param.abs().sum() > 0
    assert fresh.view_gate.weight.shape == (6, 6 * fields)
    search = tiny_searches("mvfs")
    gate = search.gate
    assert isinstance(gate, MvFSGate)
    assert gate.threshold == pytest.approx(1.0 / fields)
    assert gate.tau == pytest.approx(10.0 * fields)
    with torch.no_grad():
        emb = search.model.embedding(torch.from_numpy(np.ascontiguousarray(tiny.valid.X[:128])))
        importance = gate.importance(emb)
    torch.testing.assert_close(importance.sum(1), torch.ones(128))  # so l = 1/F is the uniform share


def test_adafs_controller_feeds_raw_logits_to_the_softmax(tiny_searches):
    gate = tiny_searches("adafs").gate
    assert isinstance(gate, AdaFSController)
    assert isinstance(gate.net[0], torch.nn.BatchNorm1d) and isinstance(gate.net[-1], torch.nn.Linear)
    assert not any(isinstance(m, torch.nn.Dropout) for m in gate.net)
    gate.eval()
    with torch.no_grad():
        weights = gate(torch.randn(16, gate.net[-1].out_features, 8))
    gate.train()
    torch.testing.assert_close(weights.sum(1), torch.ones(16))


@pytest.mark.parametrize("method", METHODS)
def test_gate_parameters_are_not_backbone_parameters(method, tiny_searches):
    search = tiny_searches(method)
    model = search.model
    gate_count = sum(p.numel() for p in search.gate.parameters())
    assert gate_count > 0
    emb = model.embedding_parameters()
    assert model.dense_parameters() == sum(p.numel() for p in model.parameters()) - emb - gate_count
