"""CTR backbones on a shared per-field-offset embedding."""

from fmpbench.models.backbones import BACKBONES, CTRModel, build_backbone
from fmpbench.models.embedding import FieldEmbedding

__all__ = ["BACKBONES", "CTRModel", "FieldEmbedding", "build_backbone"]
