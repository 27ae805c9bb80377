import torch

from fmpbench.training.optim import RowSparseAdam


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
    untouched = torch.nn.Embedding(50, 3)
    torch.manual_seed(0)
    untouched = torch.nn.Embedding(50, 3, sparse=True)
    assert torch.equal(a.weight[20:], untouched.weight[20:])
