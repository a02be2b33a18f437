"""Uncertainty-driven refinement (paper §2.4, architecture reference §7) and the SSNet loss pieces."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

REFINE_HEADS = ("k_logits", "paired")
REFINER_INITS = ("default", "zero")
REFINER_BOUNDS = ("none", "tanh")
REFINER_GATES = ("maxpool", "none")


def uncertainty_map(probs: torch.Tensor, dim: int = 1) -> torch.Tensor:
    """Eq. 3: U = exp(1 − p⁽¹⁾ / p⁽²⁾) from the two largest class probabilities, U ∈ (0, 1].

    Args:
        probs: class probabilities, classes along ``dim`` (at least 2 classes).
        dim: class axis.

    Returns:
        U with ``dim`` kept as size 1, float32. p⁽²⁾ is clamped at 1e-12 so gradients stay finite.
    """
    top = probs.float().topk(2, dim=dim).values
    p1 = top.narrow(dim, 0, 1)
    p2 = top.narrow(dim, 1, 1).clamp_min(1e-12)
    return torch.exp(1.0 - p1 / p2)


class ResBlock(nn.Module):
    """x + conv(relu(conv(relu(x)))), 3 × 3 biased convolutions."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.relu(self.conv1(F.relu(x))))


class UncertaintyRefiner(nn.Module):
    """Local refinement mask E (Eq. 4-5).

    For each class i: R_i = AvgPool₇(p_i·F₁) / (AvgPool₇(p_i) + 1e-8) (a local masked average),
    E_i = MaxPool₇(p_i) · f_l([F₁, R_i]) with f_l = conv3×3(2C → 32) → ResBlock(32) → ReLU →
    conv3×3(32 → out) shared by all classes.

    Args:
        feat_channels: C of the low-level feature F₁ (64 for every ResNet).
        out_per_class: 1 (``k_logits``) or 2 (``paired``: a background/foreground pair).
        hidden: width of f_l.
        pool: window of the avg/max pools (stride 1, same padding).
        init: ``default`` (PyTorch's initialisation, as the code) or ``zero`` (f_l's last convolution
            starts at zero, so E = 0 and Ŷ = softmax(M) at the first step; the refinement is then learnt
            as a residual instead of starting as random noise on the logits).
        bound: ``none`` (the paper: f_l's output is unbounded) or ``tanh`` (the similarity f_l is squashed
            to (−1, 1), so |E_i| ≤ MaxPool₇(p_i) and U·E can move a logit by at most 1).
        gate: ``maxpool`` (Eq. 5: E_i = MaxPool₇(p_i)·f_l) or ``none`` (E_i = f_l: a similarity common to
            every class then cancels in the softmax instead of favouring the locally dominant class).
    """

    def __init__(self, feat_channels: int = 64, out_per_class: int = 1, hidden: int = 32, pool: int = 7,
                 init: str = "default", bound: str = "none", gate: str = "maxpool"):
        super().__init__()
        if init not in REFINER_INITS:
            raise ValueError(f"unknown refiner_init {init!r}; available: {', '.join(REFINER_INITS)}")
        if bound not in REFINER_BOUNDS:
            raise ValueError(f"unknown refiner_bound {bound!r}; available: {', '.join(REFINER_BOUNDS)}")
        if gate not in REFINER_GATES:
            raise ValueError(f"unknown refiner_gate {gate!r}; available: {', '.join(REFINER_GATES)}")
        self.bound, self.gate = bound, gate
        self.pool = pool
        self.out_per_class = out_per_class
        self.conv_in = nn.Conv2d(2 * feat_channels, hidden, 3, padding=1)
        self.res = ResBlock(hidden)
        self.conv_out = nn.Conv2d(hidden, out_per_class, 3, padding=1)
        if init == "zero":
            nn.init.zeros_(self.conv_out.weight)
            nn.init.zeros_(self.conv_out.bias)

    def _box_mean(self, x: torch.Tensor) -> torch.Tensor:
        """AvgPool(pool × pool, stride 1, zero padding counted), computed separably (same values)."""
        pad = self.pool // 2
        x = F.avg_pool2d(x, (self.pool, 1), stride=1, padding=(pad, 0))
        return F.avg_pool2d(x, (1, self.pool), stride=1, padding=(0, pad))

    def forward(self, probs: torch.Tensor, feat: torch.Tensor) -> torch.Tensor:
        """Args: probs p ``(B, K, H, W)``; feat F₁ ``(B, C, H, W)``. Returns: E ``(B, K, out, H, W)``."""
        b, k, h, w = probs.shape
        c = feat.shape[1]
        probs = probs.to(feat.dtype)
        pad = self.pool // 2
        weighted = (probs[:, :, None] * feat[:, None]).reshape(b, k * c, h, w)
        num = self._box_mean(weighted).reshape(b, k, c, h, w)
        den = self._box_mean(probs)[:, :, None] + 1e-8
        ref = num / den
        x = torch.cat([feat[:, None].expand(b, k, c, h, w), ref], dim=2).reshape(b * k, 2 * c, h, w)
        sim = self.conv_out(F.relu(self.res(self.conv_in(x)))).reshape(b, k, self.out_per_class, h, w)
        if self.bound == "tanh":
            sim = torch.tanh(sim)
        if self.gate == "none":
            return sim
        gate = F.max_pool2d(probs, self.pool, stride=1, padding=pad)
        return gate[:, :, None] * sim


def confidence_loss(probs: torch.Tensor) -> torch.Tensor:
    """L_u = ‖Û‖₂ / √(H·W) per sample (the RMS of Û), averaged over the batch.

    Args:
        probs: ``(B, K, H, W)`` probabilities from which Û is computed (Eq. 3).
    """
    u = uncertainty_map(probs).flatten(1)
    return (torch.linalg.vector_norm(u, dim=1) / u.shape[1] ** 0.5).mean()
