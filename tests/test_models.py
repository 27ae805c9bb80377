import pytest
import torch

from fmpbench.models import BACKBONES, build_backbone
from fmpbench.models.embedding import FieldEmbedding
from fmpbench.training import TrainConfig, TrainHooks
from fmpbench.training.trainer import make_optimizers

DIMS = [5, 7, 11, 3]


def test_field_embedding_uses_per_field_offsets():
    emb = FieldEmbedding(DIMS, 4)
    assert emb.table.weight.shape == (sum(DIMS), 4)
    x = torch.tensor([[0, 0, 0, 0], [4, 6, 10, 2]], dtype=torch.int32)
    out = emb(x)
    assert torch.equal(out[0, 1], emb.table.weight[5])
    assert torch.equal(out[1, 3], emb.table.weight[sum(DIMS) - 1])
    assert emb.field_rows(2) == slice(12, 23)


def test_mlp_parameter_counts_are_exact():
    model = build_backbone("mlp", DIMS, embed_dim=4, hidden=(8, 6), dropout=0.0, batch_norm=True)
    assert model.embedding_parameters() == sum(DIMS) * 4
    in_dim = len(DIMS) * 4
    expected_dense = (in_dim * 8 + 8) + 2 * 8 + (8 * 6 + 6) + 2 * 6 + (6 + 1)
    assert model.dense_parameters() == expected_dense


def test_dropping_fields_shrinks_embedding_parameters():
    full = build_backbone("mlp", DIMS, embed_dim=4)
    pruned = build_backbone("mlp", [DIMS[0], DIMS[2]], embed_dim=4)
    assert pruned.embedding_parameters() == (DIMS[0] + DIMS[2]) * 4 < full.embedding_parameters()
    assert pruned.dense_parameters() < full.dense_parameters()


@pytest.mark.parametrize("name", list(BACKBONES))
def test_every_backbone_outputs_one_logit_per_sample_and_learns(name):
    torch.manual_seed(0)
    model = build_backbone(name, DIMS, embed_dim=4, hidden=(8,))
    x = torch.stack([torch.randint(0, d, (64,)) for d in DIMS], 1)
    y = (x[:, 0] % 2).float()
    assert model(x).shape == (64,)
    optimizers = make_optimizers(model, TrainConfig(lr=0.05, embed_lr=0.05), TrainHooks())
    first = torch.nn.functional.binary_cross_entropy_with_logits(model(x), y).item()
    for _ in range(50):
        loss = torch.nn.functional.binary_cross_entropy_with_logits(model(x), y)
        for opt in optimizers:
            opt.zero_grad()
        loss.backward()
        for opt in optimizers:
            opt.step()
    assert loss.item() < first * 0.7


def test_first_order_models_count_their_wide_weights_as_embedding():
    model = build_backbone("deepfm", DIMS, embed_dim=4, hidden=(8,))
    assert model.embedding_parameters() == sum(DIMS) * 5


def test_unknown_backbone_lists_choices():
    with pytest.raises(ValueError, match="unknown backbone 'xx'; choose from: mlp, deepfm, dcn, widedeep"):
        build_backbone("xx", DIMS)
