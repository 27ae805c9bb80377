"""A retrained top-k model on disk (``run --save-model DIR``), so that the pruned model can be used.

One file per run, ``DIR/<run_id>.pt``: the state dict and what rebuilding it needs — the backbone's
name and parameters, the kept fields (names, their positions in the prepared data, their vocabulary
sizes) — plus the data fingerprint, so the ids it expects are those of one preparation. Only plain
values and tensors are stored, so :func:`load_model` reads it with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from fmpbench.models.backbones import CTRModel, build_backbone

FORMAT = 1


@dataclass
class SavedModel:
    """A reloaded model and what its inputs must be: prepared ids of ``field_indices``, in that order."""

    model: CTRModel
    fields: list[str]
    field_indices: list[int]
    info: dict[str, Any]


def model_path(model_dir: Path, run_id: str) -> Path:
    return Path(model_dir) / f"{run_id}.pt"


def save_model(model_dir: Path, model: CTRModel, backbone: str, backbone_params: dict[str, Any],
               field_indices: list[int], info: dict[str, Any]) -> Path:
    """Write ``model`` atomically (temp file, then rename), named by ``info["run_id"]``."""
    model_dir = Path(model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": FORMAT,
        # contiguous: a trained table is a view of RowSparseAdam's [rows, 3, dim] weight-and-moments table,
        # and torch.save writes a view's whole storage
        "state_dict": {name: tensor.detach().cpu().contiguous() for name, tensor in model.state_dict().items()},
        "backbone": backbone,
        "backbone_params": dict(backbone_params),
        "field_indices": [int(i) for i in field_indices],
        "field_dims": list(model.field_dims),
        **info,
    }
    path = model_path(model_dir, str(info["run_id"]))
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        torch.save(payload, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def load_model(path: Path, device: str = "cpu") -> SavedModel:
    """Rebuild a saved model in evaluation mode; a file of another format is a ``ValueError``."""
    payload = torch.load(Path(path), map_location=device, weights_only=True)
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ValueError(f"{path}: not an fmpbench saved model of format {FORMAT}")
    model = build_backbone(payload["backbone"], payload["field_dims"], **payload["backbone_params"])
    model.load_state_dict(payload["state_dict"])
    model.to(device).eval()
    meta = {k: v for k, v in payload.items() if k not in ("state_dict", "field_indices", "fields")}
    return SavedModel(model, list(payload["fields"]), list(payload["field_indices"]), meta)
