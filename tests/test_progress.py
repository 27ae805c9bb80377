"""Progress inside long work: an epoch bar in a terminal, a line per epoch with -v, silence with -q."""

from __future__ import annotations

import io

import torch

from fmpbench.cli import main
from fmpbench.progress import hide_epochs, show_epochs
from fmpbench.selectors import SearchContext
from fmpbench.training import TrainConfig

TINY = ["run", "--methods", "lasso", "--dataset", "synthetic", "--rows", "2000", "--epochs", "2", "--embed-dim", "4",
        "--k", "4"]


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _train(data) -> dict[str, torch.Tensor]:
    context = SearchContext(seed=0, backbone="mlp", backbone_params={"embed_dim": 4, "hidden": (8,)},
                            train_config=TrainConfig(max_epochs=3, batch_size=512, patience=5))
    model = context.make_model(data.field_dims)
    context.trainer().fit(model, *context.tensors(data))
    return model.state_dict()


def test_a_terminal_gets_an_epoch_bar_and_training_is_unchanged(tiny_synthetic):
    silent = _train(tiny_synthetic)
    terminal = Terminal()
    handler = show_epochs(0, terminal)
    try:
        shown = _train(tiny_synthetic)
    finally:
        hide_epochs(handler)
    assert "training" in terminal.getvalue() and "3/3" in terminal.getvalue() and "valid AUC" in terminal.getvalue()
    assert silent.keys() == shown.keys() and all(torch.equal(silent[k], shown[k]) for k in silent)


def test_no_terminal_no_bar(tiny_synthetic):
    stream = io.StringIO()
    assert show_epochs(0, stream) is None and show_epochs(-1, Terminal()) is None


def test_verbose_run_logs_each_epoch_and_quiet_hides_progress(tmp_path, capsys):
    assert main([*TINY, "--results", str(tmp_path / "a"), "-v"]) == 0
    err = capsys.readouterr().err
    assert "fmpbench: epoch 1/2: validation AUC" in err and "[1/1] lasso" in err
    assert main([*TINY, "--results", str(tmp_path / "b")]) == 0
    err = capsys.readouterr().err
    assert "epoch 1/2" not in err and "[1/1] lasso" in err  # stderr is not a terminal here
    assert main([*TINY, "--results", str(tmp_path / "c"), "-q"]) == 0
    captured = capsys.readouterr()
    assert "epoch 1/2" not in captured.err and "[1/1]" not in captured.err and "auc" in captured.out
