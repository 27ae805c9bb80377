import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from fmpbench.data.prepared import Split
from fmpbench.training import SplitTensors, TrainConfig, Trainer, TrainHooks, TrainingDiverged


def _train(data, context, seed=0, hooks=None, **config):
    cfg = replace(context.train_config, **config)
    ctx = type(context)(seed, context.backbone, context.backbone_params, cfg)
    model = ctx.make_model(data.field_dims, label_rate=float(data.train.y.mean()))
    train, valid = ctx.tensors(data)
    result = Trainer(cfg, hooks, seed=seed).fit(model, train, valid)
    return model, result


def test_training_learns_the_planted_signal(tiny_synthetic, fast_context):
    _, result = _train(tiny_synthetic, fast_context)
    assert result.best_valid_auc > 0.70


def test_same_seed_gives_identical_weights_and_metrics(tiny_synthetic, fast_context):
    model_a, result_a = _train(tiny_synthetic, fast_context, seed=3)
    model_b, result_b = _train(tiny_synthetic, fast_context, seed=3)
    assert result_a.valid_auc_history == result_b.valid_auc_history
    for pa, pb in zip(model_a.parameters(), model_b.parameters()):
        assert torch.equal(pa, pb)


def test_early_stopping_restores_the_best_epoch(tiny_synthetic, fast_context):
    model, result = _train(tiny_synthetic, fast_context, max_epochs=12, patience=2, embed_lr=0.05, lr=0.01)
    assert result.best_valid_auc == max(result.valid_auc_history)
    assert result.epochs <= 12
    if result.epochs < 12:
        assert result.epochs - result.best_epoch == 2
    _, valid = fast_context.tensors(tiny_synthetic)
    from fmpbench.training import evaluate

    assert evaluate(model, valid)[0] == pytest.approx(result.best_valid_auc, abs=1e-9)


def test_absurd_learning_rate_raises_diverged(tiny_synthetic, fast_context):
    with pytest.raises(TrainingDiverged, match="loss became"):
        _train(tiny_synthetic, fast_context, lr=1e30, embed_lr=1e30)


def test_hooks_are_called_in_order(tiny_synthetic, fast_context):
    calls = []

    class Recorder(TrainHooks):
        validation_every = 3

        def extra_loss(self, model, step):
            calls.append(("loss", step))
            return torch.zeros(())

        def after_step(self, model, step):
            calls.append(("after", step))

        def validation_step(self, model, x, y, step):
            calls.append(("valid", step, x.shape[0]))

    _, result = _train(tiny_synthetic, fast_context, hooks=Recorder(), max_epochs=1)
    assert calls[:2] == [("loss", 0), ("after", 1)]
    valid_steps = [c[1] for c in calls if c[0] == "valid"]
    assert valid_steps == list(range(3, result.steps + 1, 3))


def test_architecture_parameters_are_not_trained_on_training_batches(tiny_synthetic, fast_context):
    gate = torch.nn.Parameter(torch.ones(tiny_synthetic.num_fields))

    class Gate(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.logits = gate

        def forward(self, emb):
            return self.logits.expand(emb.shape[0], -1)

    class Bilevel(TrainHooks):
        def architecture_parameters(self, model):
            return [gate]

    model = fast_context.make_model(tiny_synthetic.field_dims)
    model.field_gate = Gate()
    train, valid = fast_context.tensors(tiny_synthetic)
    Trainer(fast_context.train_config, Bilevel()).fit(model, train, valid, max_epochs=1)
    assert torch.equal(gate.detach(), torch.ones(tiny_synthetic.num_fields))


def test_field_subset_gathers_the_right_columns():
    X = np.arange(12, dtype=np.int32).reshape(4, 3)
    split = SplitTensors(Split(X, np.zeros(4, dtype=np.float32)), torch.device("cpu"), np.array([0, 2]))
    assert split.x.tolist() == [[0, 2], [3, 5], [6, 8], [9, 11]]
    batches = list(split.shuffled_batches(3, torch.Generator().manual_seed(0)))
    assert sorted(tuple(r) for b, _ in batches for r in b.tolist()) == [(0, 2), (3, 5), (6, 8), (9, 11)]
    assert [len(b) for b, _ in batches] == [3, 1]


def test_history_is_finite(tiny_synthetic, fast_context):
    _, result = _train(tiny_synthetic, fast_context, max_epochs=2)
    assert all(math.isfinite(v) for v in result.valid_auc_history)


def test_memory_mapped_split_streams_in_blocks_and_visits_every_row_once(tmp_path, monkeypatch):
    import fmpbench.training.trainer as trainer_module

    monkeypatch.setattr(trainer_module, "STREAM_BLOCK_ROWS", 7)
    monkeypatch.setattr(trainer_module, "STREAM_BLOCKS_PER_BUFFER", 3)
    X = np.lib.format.open_memmap(tmp_path / "x.npy", mode="w+", dtype=np.int32, shape=(100, 3))
    X[:] = np.arange(300, dtype=np.int32).reshape(100, 3)
    X.flush()
    mapped = np.load(tmp_path / "x.npy", mmap_mode="r")
    split = Split(mapped, np.arange(100, dtype=np.float32))
    streamed = SplitTensors(split, torch.device("cpu"), np.array([0, 2]), max_resident_bytes=0)
    assert streamed.streamed and streamed.x is None
    rows = [tuple(r) for b, _ in streamed.shuffled_batches(16, torch.Generator().manual_seed(0)) for r in b.tolist()]
    assert sorted(rows) == [(3 * i, 3 * i + 2) for i in range(100)]
    labels = torch.cat([y for _, y in streamed.shuffled_batches(16, torch.Generator().manual_seed(0))])
    assert sorted(labels.tolist()) == list(range(100))
    resident = SplitTensors(split, torch.device("cpu"), np.array([0, 2]))
    assert not resident.streamed
    assert torch.equal(torch.cat([b for b, _ in streamed.batches(30)]), resident.x)


def test_streamed_and_resident_training_reach_similar_auc(tiny_synthetic, fast_context, tmp_path):
    np.save(tmp_path / "x.npy", tiny_synthetic.train.X)
    mapped = Split(np.load(tmp_path / "x.npy", mmap_mode="r"), tiny_synthetic.train.y)
    valid = SplitTensors(tiny_synthetic.valid, torch.device("cpu"))
    results = []
    for train in (
        SplitTensors(mapped, torch.device("cpu"), max_resident_bytes=0),
        SplitTensors(tiny_synthetic.train, torch.device("cpu")),
    ):
        model = fast_context.make_model(tiny_synthetic.field_dims, label_rate=0.2)
        results.append(Trainer(fast_context.train_config, seed=0).fit(model, train, valid).best_valid_auc)
    assert abs(results[0] - results[1]) < 0.03


@pytest.mark.parametrize(
    ("user_env", "expected"),
    [({}, "PASSIVE"), ({"OMP_WAIT_POLICY": "ACTIVE"}, "ACTIVE"), ({"GOMP_SPINCOUNT": "1000"}, None)],
)
def test_importing_fmpbench_makes_idle_openmp_threads_sleep_unless_the_user_chose(user_env, expected):
    # spinning OpenMP threads made 2-thread steps 5-14x slower than 1 thread beside a busy process;
    # the setting only works if it is in the environment before torch loads libgomp
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    code = "import sys, os, fmpbench; print('torch' in sys.modules, os.environ.get('OMP_WAIT_POLICY'))"
    out = subprocess.run([sys.executable, "-c", code], env={**env, **user_env}, capture_output=True, text=True)
    assert out.stdout.split() == ["False", str(expected)]


@pytest.mark.parametrize(("user_env", "expected"), [({}, "1"), ({"THP_MEM_ALLOC_ENABLE": "0"}, "0")])
def test_importing_fmpbench_puts_large_tensors_on_huge_pages_unless_the_user_chose(user_env, expected):
    # random-row reads and writes of the embedding table and its moments missed the TLB on 4 KB pages;
    # c10 reads the setting once, so it must be in the environment before torch allocates
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "THP_MEM_ALLOC_ENABLE"}
    code = "import sys, os, fmpbench; print('torch' in sys.modules, os.environ.get('THP_MEM_ALLOC_ENABLE'))"
    out = subprocess.run([sys.executable, "-c", code], env={**env, **user_env}, capture_output=True, text=True)
    assert out.stdout.split() == ["False", expected]


def test_fast_dropout_is_the_default_reproducible_and_leaves_the_study_run_ids(tiny_synthetic, fast_context):
    assert "fast_dropout" not in TrainConfig(fast_dropout=False).to_dict()  # the committed study's run ids
    assert TrainConfig().to_dict()["fast_dropout"] is True  # its masks give other numbers: other ids
    torch_masks = _train(tiny_synthetic, fast_context, seed=1, max_epochs=2, fast_dropout=False)[1].valid_auc_history
    fast_a = _train(tiny_synthetic, fast_context, seed=1, max_epochs=2)[1].valid_auc_history
    fast_b = _train(tiny_synthetic, fast_context, seed=1, max_epochs=2)[1].valid_auc_history
    assert fast_a == fast_b and fast_a != torch_masks
    assert fast_a[-1] > 0.65


def test_the_study_config_pins_the_training_its_rows_were_trained_with():
    from fmpbench.study import load_study

    study = load_study(Path(__file__).parents[1] / "configs" / "study.toml")
    config = study.train_config
    assert config.fast_dropout is False and config.fused_adam is False
    assert study.stack_retrains is False  # its rows were trained alone; a stacked record keeps the run id
    assert set(config.to_dict()) == set(TrainConfig().to_dict()) - {"fast_dropout", "fused_adam"}


def test_fused_adam_is_the_default_and_leaves_the_study_run_ids(tiny_synthetic, fast_context):
    from fmpbench.training.trainer import make_optimizers

    assert "fused_adam" not in TrainConfig(fused_adam=False).to_dict()  # the committed study's run ids
    assert TrainConfig().to_dict()["fused_adam"] is True
    model = fast_context.make_model(tiny_synthetic.field_dims, label_rate=0.5)
    for fused in (True, False):
        dense = make_optimizers(model, TrainConfig(fused_adam=fused), TrainHooks())[-1]
        assert bool(dense.defaults["fused"]) is fused and bool(dense.defaults["foreach"]) is not fused
    unfused = _train(tiny_synthetic, fast_context, seed=1, max_epochs=2, fused_adam=False)[1].valid_auc_history
    fused_a = _train(tiny_synthetic, fast_context, seed=1, max_epochs=2)[1].valid_auc_history
    fused_b = _train(tiny_synthetic, fast_context, seed=1, max_epochs=2)[1].valid_auc_history
    assert fused_a == fused_b and fused_a == pytest.approx(unfused, abs=2e-3)


def test_word_dropout_keeps_the_rate_and_the_expectation_and_follows_its_generator():
    from fmpbench.models.backbones import Dropout

    drop = Dropout(0.25).train()
    drop.generator = torch.Generator().manual_seed(0)
    out = drop(torch.ones(400, 501))  # not a multiple of four elements
    assert abs((out == 0).float().mean().item() - 0.25) < 0.01
    assert torch.allclose(out[out != 0], torch.tensor(1 / 0.75))
    drop.generator = torch.Generator().manual_seed(0)
    assert torch.equal(drop(torch.ones(400, 501)), out)
    drop.generator = None
    torch.manual_seed(0)
    reference = torch.nn.functional.dropout(torch.ones(4, 5), 0.25)
    torch.manual_seed(0)
    assert torch.equal(drop(torch.ones(4, 5)), reference)  # without a generator it is nn.Dropout exactly
