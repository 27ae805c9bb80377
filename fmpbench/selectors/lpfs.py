"""``lpfs``: LPFS / LPFS++ polarizing field gates with a proximal L1 step."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from fmpbench.data.prepared import PreparedData
from fmpbench.models import CTRModel
from fmpbench.selectors.base import SearchContext
from fmpbench.selectors.gates import FieldGate, GateHooks, GateSearch, GateSearchSelector, geometric_schedule
from fmpbench.selectors.registry import register

VARIANTS = ("lpfs", "lpfs++")


class LPFSGate(FieldGate):
    """One scalar x_f per field (init 1) through the smoothed-L0 gate g_ε(x).

    LPFS: g(x) = x² / (x² + ε). LPFS++: g(x) = sign(x)·x²/(x² + ε) + α·ε^{1/τ}·atan(x), whose extra
    term keeps a gradient at x ≈ 0 while ε is large and vanishes as ε → 0. The gate is the same for
    every sample and has no randomness, so it is deterministic in both modes.
    """

    def __init__(
        self, num_fields: int, variant: str, eps_start: float, eps_end: float, alpha: float, tau: float
    ) -> None:
        super().__init__()
        self.x = nn.Parameter(torch.ones(num_fields))
        self.variant = variant
        self.eps_start, self.eps_end = eps_start, eps_end
        self.alpha, self.tau = alpha, tau
        self.eps = eps_start

    def advance(self, progress: float) -> None:
        self.eps = geometric_schedule(self.eps_start, self.eps_end, progress)

    def schedule_state(self) -> dict[str, float]:
        return {"eps": self.eps}

    def gate(self, x: torch.Tensor) -> torch.Tensor:
        square = x * x
        if self.variant == "lpfs":
            return square / (square + self.eps)
        return torch.sign(x) * square / (square + self.eps) + self.alpha * self.eps ** (1.0 / self.tau) * torch.atan(x)

    def forward(self, emb: torch.Tensor) -> torch.Tensor:
        return self.gate(self.x)

    @torch.no_grad()
    def proximal_l1(self, threshold: float) -> None:
        """Soft-thresholding: |x| ≤ threshold → 0, otherwise shrink |x| by threshold."""
        self.x.copy_(torch.sign(self.x) * torch.clamp(self.x.abs() - threshold, min=0.0))


class LPFSHooks(GateHooks):
    """After each optimiser step: advance ε, then the proximal L1 step with threshold λ·lr."""

    def __init__(self, gate: LPFSGate, total_steps: int, gate_lr: float, l1: float) -> None:
        super().__init__(gate, total_steps, gate_lr)
        self.threshold = l1 * gate_lr

    def after_step(self, model: nn.Module, step: int) -> None:
        super().after_step(model, step)
        assert isinstance(self.gate, LPFSGate)
        self.gate.proximal_l1(self.threshold)

    def describe(self) -> dict:
        assert isinstance(self.gate, LPFSGate)
        return {"zeroed_fields": int((self.gate.x == 0).sum())}


@register
class LPFSSelector(GateSearchSelector):
    """LPFS / LPFS++ — Y. Guo, Z. Liu, J. Tan, C. Liao, D. Chang, Q. Liu, S. Yang, J. Liu, D. Kong,
    Z. Chen, C. Song, "LPFS: Learnable Polarizing Feature Selection for Click-Through Rate
    Prediction", arXiv 2206.00267, 2022.

    One x_f per field (init 1) gates field f's embedding by g_ε(x_f) (see :class:`LPFSGate`;
    ``variant="lpfs++"`` for the LPFS++ form with ``alpha`` and ``tau``). x is trained jointly with
    the backbone by Adam at ``gate_lr``; after every optimiser step ε moves one step along its decay and
    a proximal L1 step soft-thresholds x by λ·lr (``l1`` · ``gate_lr``), which sets small x exactly to
    0 — where g has zero gradient, so the field stays off. Score = |g_ε(x_f)| at the final ε (monotone
    in |x_f|). The harness's retrain is a plain retrain on the top-k fields, with no gates. As the
    trainer's optimiser is Adam, whose steps are about ``gate_lr`` long whatever the gradient's scale,
    ``l1`` is the fraction of a full step that a field's evidence must exceed to stay away from 0.

    Defaults: ``search_epochs=5`` with ``early_stopping`` (see :mod:`fmpbench.selectors.gates`),
    ``gate_lr=0.01``, ``l1=0.1``, ε 0.1 → 1e-5 (geometric over the training steps of the search
    budget), LPFS++ ``alpha=1``, ``tau=2``.

    Deviations, and why:

    * ε decays geometrically over the search budget (the paper decays it during training by a
      constant factor; ERASE multiplies it every 100 steps), so its end value does not depend on the
      dataset size.
    * Scores are |g(x)|, not signed x as in ERASE's code: with LPFS++ a large negative x is an open
      gate, which signed ranking would put last.
    * No gates during the retrain (ERASE keeps learning them there, so its "retrain" is a different
      model than the selected top-k one).
    """

    name = "lpfs"

    def __init__(
        self,
        search_epochs: int = 5,
        early_stopping: bool = True,
        variant: str = "lpfs",
        gate_lr: float = 0.01,
        l1: float = 0.1,
        eps_start: float = 0.1,
        eps_end: float = 1e-5,
        alpha: float = 1.0,
        tau: float = 2.0,
    ) -> None:
        self.search_epochs = search_epochs
        self.early_stopping = early_stopping
        self.variant = variant
        self.gate_lr = gate_lr
        self.l1 = l1
        self.eps_start = eps_start
        self.eps_end = eps_end
        self.alpha = alpha
        self.tau = tau

    def make_gate(self, model: CTRModel, data: PreparedData) -> LPFSGate:
        if self.variant not in VARIANTS:
            raise ValueError(f"lpfs: unknown variant {self.variant!r}; choose from: {', '.join(VARIANTS)}")
        if not (self.eps_start > 0 and self.eps_end > 0):
            raise ValueError(f"lpfs: eps_start and eps_end must be > 0, got {self.eps_start}, {self.eps_end}")
        return LPFSGate(data.num_fields, self.variant, self.eps_start, self.eps_end, self.alpha, self.tau)

    def make_hooks(self, gate: FieldGate, total_steps: int, context: SearchContext) -> LPFSHooks:
        assert isinstance(gate, LPFSGate)
        return LPFSHooks(gate, total_steps, self.gate_lr, self.l1)

    def field_scores(self, search: GateSearch, context: SearchContext) -> np.ndarray:
        gate = search.gate
        assert isinstance(gate, LPFSGate)
        # float64 so that gates saturated near 1 at small ε still rank by |x|
        x = gate.x.detach().double().cpu()
        with torch.no_grad():
            return gate.gate(x).abs().numpy()
