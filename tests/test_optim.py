import copy

import pytest
import torch

from fmpbench.training.optim import RowSparseAdam, SerialAdam, merge_duplicate_rows


class SortedMergeAdam(RowSparseAdam):
    """The merge the committed study ran with: ``torch.unique`` (sorted) + ``index_add_``."""

    def _merge(self, p, grad):
        rows, inverse = torch.unique(grad._indices()[0], return_inverse=True)
        values = grad._values()
        return rows, values.new_zeros((rows.numel(),) + values.shape[1:]).index_add_(0, inverse, values)


def _train(embedding, optimizer, steps=15, seed=1):
    generator = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        ids = torch.randint(0, 40, (300,), generator=generator) ** 2 // 40  # skewed, many repeats
        target = torch.randn(300, embedding.embedding_dim, generator=generator)
        loss = ((embedding(ids) - target) ** 2).sum()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


@pytest.mark.parametrize("dim", [1, 3, 16])
@pytest.mark.parametrize("weight_decay", [0.0, 1e-3])
def test_unsorted_merge_is_bit_identical_to_the_sorted_merge(dim, weight_decay):
    # the committed study was trained with the sorted merge; same seed must still mean same weights
    torch.manual_seed(0)
    a = torch.nn.Embedding(60, dim, sparse=True)
    b = torch.nn.Embedding(60, dim, sparse=True)
    b.load_state_dict(a.state_dict())
    _train(a, RowSparseAdam(a.parameters(), lr=0.01, weight_decay=weight_decay))
    _train(b, SortedMergeAdam(b.parameters(), lr=0.01, weight_decay=weight_decay))
    assert torch.equal(a.weight, b.weight)


def test_merge_sums_duplicates_in_batch_order_and_ignores_stale_scratch():
    ids = torch.tensor([5, 2, 5, 7, 2, 5])
    values = torch.tensor([[1e8], [2.0], [4.0], [3.0], [5.0], [4.0]])
    slot = torch.full((10,), 123456)  # stale content from another batch must not matter
    rows, merged = merge_duplicate_rows(ids, values, slot)
    # float32 spacing at 1e8 is 8: in batch order (1e8 + 4) + 4 rounds to 1e8, as the sorted merge
    # sums; 1e8 + (4 + 4) would give 1e8 + 8
    assert dict(zip(rows.tolist(), merged.squeeze(1).tolist(), strict=True)) == {5: 1e8, 2: 7.0, 7: 3.0}


def test_row_sparse_adam_matches_torch_sparse_adam():
    torch.manual_seed(0)
    a = torch.nn.Embedding(50, 3, sparse=True)
    b = torch.nn.Embedding(50, 3, sparse=True)
    b.load_state_dict(a.state_dict())
    opt_a = RowSparseAdam(a.parameters(), lr=0.01)
    opt_b = torch.optim.SparseAdam(b.parameters(), lr=0.01)
    for _ in range(20):
        ids = torch.randint(0, 20, (64,))  # repeated ids, rows 20.. never touched
        target = torch.randn(64, 3)
        for emb, opt in ((a, opt_a), (b, opt_b)):
            loss = ((emb(ids) - target) ** 2).sum()
            opt.zero_grad()
            loss.backward()
            opt.step()
    assert torch.allclose(a.weight, b.weight, atol=1e-6)
    torch.manual_seed(0)
    untouched = torch.nn.Embedding(50, 3, sparse=True)
    assert torch.equal(a.weight[20:], untouched.weight[20:])
    assert set(opt_a.state_dict()["state"][0]) == {"step", "rows"}  # the merge's scratch is not state


def test_weights_given_new_data_are_adopted_and_keep_their_moments():
    # the weights live in column 0 of the optimiser's [rows, 3, dim] table; a parameter handed other
    # data (``p.data = ...``) must be trained from that data on, not from the table's stale copy
    torch.manual_seed(0)
    a = torch.nn.Embedding(30, 4, sparse=True)
    b = torch.nn.Embedding(30, 4, sparse=True)
    b.load_state_dict(a.state_dict())
    opt_a, opt_b = RowSparseAdam(a.parameters(), lr=0.01), torch.optim.SparseAdam(b.parameters(), lr=0.01)
    fresh = torch.randn(30, 4)
    for step in range(8):
        if step == 4:
            a.weight.data, b.weight.data = fresh.clone(), fresh.clone()
        ids = torch.randint(0, 30, (40,))
        for emb, opt in ((a, opt_a), (b, opt_b)):
            opt.zero_grad()
            emb(ids).pow(2).sum().backward()
            opt.step()
    assert a.weight.data_ptr() == opt_a.state[a.weight]["rows"].data_ptr()
    assert torch.allclose(a.weight, b.weight, atol=1e-6)


@pytest.mark.parametrize(("serial_ids", "expected"), [(1000, 1), (10, 2)])
def test_small_sparse_steps_run_on_one_thread_and_restore_the_count(monkeypatch, serial_ids, expected):
    # two threads beside a busy process stalled every small parallel region of the step
    import fmpbench.training.optim as optim

    monkeypatch.setattr(optim, "SERIAL_IDS", serial_ids)
    seen = []

    class Recording(RowSparseAdam):
        def _merge(self, p, grad):
            seen.append(torch.get_num_threads())
            return super()._merge(p, grad)

    emb = torch.nn.Embedding(30, 4, sparse=True)
    opt = Recording(emb.parameters(), lr=0.01)
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        emb(torch.arange(20)).sum().backward()
        opt.step()
        assert seen == [expected] and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(previous)


def _adam_against_the_loop(model: torch.nn.Module, **kwargs: object) -> tuple[SerialAdam, list[tuple]]:
    """10 steps of ``SerialAdam(**kwargs)`` on ``model`` and of torch's per-tensor Adam on a copy: the
    optimiser and each pair of parameters."""
    twin = copy.deepcopy(model)
    serial = SerialAdam(model.parameters(), lr=0.01, weight_decay=1e-3, **kwargs)
    loop = torch.optim.Adam(twin.parameters(), lr=0.01, weight_decay=1e-3, foreach=False)
    generator = torch.Generator().manual_seed(1)
    for _ in range(10):
        x = torch.randn(32, 12, generator=generator)
        for net, opt in ((model, serial), (twin, loop)):
            opt.zero_grad()
            net(x).pow(2).mean().backward()
            opt.step()
    return serial, list(zip(model.parameters(), twin.parameters(), strict=True))


def test_serial_adam_batches_its_ops_and_gives_the_loop_s_bits():
    # foreach on CPU is a speed choice only: the committed study's dense weights came from the per-tensor loop
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(12, 8), torch.nn.BatchNorm1d(8), torch.nn.ReLU(), torch.nn.Linear(8, 1))
    serial, pairs = _adam_against_the_loop(model)
    assert serial.defaults["foreach"] is True
    assert all(torch.equal(a, b) for a, b in pairs)


def test_fused_serial_adam_is_one_kernel_and_within_rounding_of_the_loop():
    # TrainConfig(fused_adam=True), the default: another rounding of the same update, not another rule
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(12, 8), torch.nn.ReLU(), torch.nn.Linear(8, 1))
    fused, pairs = _adam_against_the_loop(model, fused=True)
    assert fused.defaults["fused"] is True and not fused.defaults["foreach"]
    assert all(torch.allclose(a, b, rtol=0, atol=1e-6) for a, b in pairs)
