"""Hard-concrete gates (Louizos, Welling, Kingma 2018, "Learning Sparse Neural Networks through L0").

A gate z ∈ [0, 1] is a stretched and clipped binary-concrete sample, so it is exactly 0 or exactly 1
with positive probability while staying differentiable in its parameter log α. The probability of a
non-zero gate has a closed form, which makes the expected number of open gates a differentiable
quantity a sparsity constraint can act on.
"""

from __future__ import annotations

import math

import torch
from torch import nn

#: temperature β and stretch interval (γ, ζ) recommended by Louizos et al.
BETA = 2.0 / 3.0
GAMMA = -0.1
ZETA = 1.1
# keeps log u and log(1 − u) finite for float32 uniform draws
_EPS = 1e-6


class HardConcrete(nn.Module):
    """``n`` independent hard-concrete gates with parameters ``log_alpha``.

    In training mode :meth:`forward` draws one gate vector per sample (``[batch, n]``): per-sample noise
    gives lower-variance gradients for log α than one draw per batch, at negligible cost for gate
    counts of CTR models. In evaluation mode it returns the deterministic gate ``[n]``.

    ``mask`` (a buffer, all ones by default) forces gates shut without touching log α: physical pruning
    sets it to compare the pruned network with the gated one it came from.
    """

    def __init__(
        self, n: int, init_log_alpha: float = 3.0, beta: float = BETA, gamma: float = GAMMA, zeta: float = ZETA
    ) -> None:
        super().__init__()
        if not gamma < 0.0 < 1.0 < zeta:
            raise ValueError(f"hard-concrete needs gamma < 0 and zeta > 1, got gamma={gamma}, zeta={zeta}")
        self.n = n
        self.beta, self.gamma, self.zeta = beta, gamma, zeta
        self.log_alpha = nn.Parameter(torch.full((n,), float(init_log_alpha)))
        self.register_buffer("mask", torch.ones(n))

    def sample(self, batch_size: int) -> torch.Tensor:
        """Reparametrised gate draws ``[batch_size, n]`` (gradients flow to log α)."""
        u = torch.rand(batch_size, self.n, device=self.log_alpha.device).clamp_(_EPS, 1.0 - _EPS)
        s = torch.sigmoid((torch.log(u) - torch.log1p(-u) + self.log_alpha) / self.beta)
        return (s * (self.zeta - self.gamma) + self.gamma).clamp(0.0, 1.0) * self.mask

    def deterministic(self) -> torch.Tensor:
        """The evaluation-time gate ``clamp(σ(log α)(ζ − γ) + γ, 0, 1)``, ``[n]``."""
        s = torch.sigmoid(self.log_alpha)
        return (s * (self.zeta - self.gamma) + self.gamma).clamp(0.0, 1.0) * self.mask

    def prob_nonzero(self) -> torch.Tensor:
        """P(z ≠ 0) = σ(log α − β log(−γ/ζ)) per gate, ``[n]`` (ignores ``mask``: used while searching)."""
        return torch.sigmoid(self.log_alpha - self.beta * math.log(-self.gamma / self.zeta))

    def forward(self, batch_size: int) -> torch.Tensor:
        return self.sample(batch_size) if self.training else self.deterministic()

    def extra_repr(self) -> str:
        return f"n={self.n}, beta={self.beta:.4g}, gamma={self.gamma}, zeta={self.zeta}"
