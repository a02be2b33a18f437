"""Guided-decoder cross-attention (architecture reference §5, paper Eq. 1-2).

For one stage: query Q = F̂ (B, N, C); for every frame t, key = value = motion feature F̃_t;
out_t = Attn_t(Q, F̃_t, F̃_t) with one head, biased q/k/v/out projections, no positional
encoding; Z = Σ_t out_t. The T attention modules (or one shared module) are held as stacked
parameters so that all frames run in one fused ``scaled_dot_product_attention`` call, with the
frame axis in the heads position. The N × N weights are never materialised.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

FUSION_OPS = ("sum", "prod", "cat", "weighted")


def _compute_dtype(x: torch.Tensor) -> torch.dtype:
    """The autocast dtype where autocast is on for ``x``'s device, else ``x.dtype``.

    The stacked projections add their biases by hand, which autocast does not cover; casting
    explicitly keeps q, k, v in the low-precision dtype so that fused SDPA kernels apply.
    """
    device = x.device.type
    if device in ("cuda", "cpu", "xpu") and torch.is_autocast_enabled(device):
        return torch.get_autocast_dtype(device)
    return x.dtype


class GuidedCrossAttention(nn.Module):
    """``modules`` single-head cross-attention blocks of width ``dim`` (1 per frame, or 1 shared).

    Each block has 4·C² + 4·C parameters (q, k, v, out weights and biases), plus 2·C for the
    optional LayerNorm on out_t (``norm=True``, the authors' phase-2 code). Initialised like
    ``nn.MultiheadAttention``: Xavier-uniform q/k/v (over the packed 3C × C matrix), default
    ``nn.Linear`` init for the output weight, zero biases.

    Args:
        dim: channel width C of the stage.
        frames: T.
        shared: one module for every frame (``attention="shared"``) instead of one per frame.
        norm: LayerNorm on each out_t before the sum.
    """

    def __init__(self, dim: int, frames: int, shared: bool = False, norm: bool = False):
        super().__init__()
        self.dim, self.frames, self.shared = dim, frames, shared
        n = 1 if shared else frames
        self.q_weight = nn.Parameter(torch.empty(n, dim, dim))
        self.k_weight = nn.Parameter(torch.empty(n, dim, dim))
        self.v_weight = nn.Parameter(torch.empty(n, dim, dim))
        self.out_weight = nn.Parameter(torch.empty(n, dim, dim))
        self.q_bias = nn.Parameter(torch.empty(n, dim))
        self.k_bias = nn.Parameter(torch.empty(n, dim))
        self.v_bias = nn.Parameter(torch.empty(n, dim))
        self.out_bias = nn.Parameter(torch.empty(n, dim))
        if norm:
            self.norm_weight = nn.Parameter(torch.empty(n, dim))
            self.norm_bias = nn.Parameter(torch.empty(n, dim))
        else:
            self.register_parameter("norm_weight", None)
            self.register_parameter("norm_bias", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """``nn.MultiheadAttention``-style initialisation of every module."""
        in_bound = math.sqrt(6.0 / (self.dim + 3 * self.dim))
        out_bound = 1.0 / math.sqrt(self.dim)
        for w in (self.q_weight, self.k_weight, self.v_weight):
            nn.init.uniform_(w, -in_bound, in_bound)
        nn.init.uniform_(self.out_weight, -out_bound, out_bound)
        for b in (self.q_bias, self.k_bias, self.v_bias, self.out_bias):
            nn.init.zeros_(b)
        if self.norm_weight is not None:
            nn.init.ones_(self.norm_weight)
            nn.init.zeros_(self.norm_bias)

    def forward(self, query: torch.Tensor, motion: torch.Tensor) -> torch.Tensor:
        """Z = Σ_t Attn_t(Q, F̃_t, F̃_t).

        Args:
            query: F̂ ``(B, C, H, W)``.
            motion: F̃ ``(B, T, C, H, W)``.

        Returns:
            Z ``(B, C, H, W)``.
        """
        b, t, c, h, w = motion.shape
        if t != self.frames:
            raise ValueError(f"attention built for T={self.frames}, got T={t}")
        dtype = _compute_dtype(query)
        motion = motion.to(dtype)
        q_in = query.to(dtype).flatten(2).transpose(1, 2)  # (B, N, C)
        kv_in = motion.flatten(3).transpose(2, 3)  # (B, T, N, C)
        cast = lambda p: p.to(dtype)  # noqa: E731
        if self.shared:
            q = F.linear(q_in, cast(self.q_weight[0]), cast(self.q_bias[0])).unsqueeze(1).expand(b, t, -1, c)
            k = F.linear(kv_in, cast(self.k_weight[0]), cast(self.k_bias[0]))
            v = F.linear(kv_in, cast(self.v_weight[0]), cast(self.v_bias[0]))
        else:
            q = torch.einsum("bnc,tdc->btnd", q_in, cast(self.q_weight)) + cast(self.q_bias)[:, None]
            k = torch.einsum("btnc,tdc->btnd", kv_in, cast(self.k_weight)) + cast(self.k_bias)[:, None]
            v = torch.einsum("btnc,tdc->btnd", kv_in, cast(self.v_weight)) + cast(self.v_bias)[:, None]
        o = F.scaled_dot_product_attention(q, k, v)  # (B, T, N, C), frames in the heads position
        if self.norm_weight is None:
            # Σ_t (o_t W_t^T + b_t) without materialising the T projected outputs
            if self.shared:
                z = F.linear(o.sum(dim=1), cast(self.out_weight[0])) + t * cast(self.out_bias[0])
            else:
                z = torch.einsum("btnd,tcd->bnc", o, cast(self.out_weight)) + cast(self.out_bias).sum(0)
        else:
            if self.shared:
                y = F.linear(o, cast(self.out_weight[0]), cast(self.out_bias[0]))
            else:
                y = torch.einsum("btnd,tcd->btnc", o, cast(self.out_weight)) + cast(self.out_bias)[:, None]
            y = F.layer_norm(y.float(), (c,)).to(dtype)
            y = y * cast(self.norm_weight)[:, None] + cast(self.norm_bias)[:, None]
            z = y.sum(dim=1)
        return z.transpose(1, 2).reshape(b, c, h, w)


class Fusion(nn.Module):
    """Fuse the query F̂ with Z: ``sum`` (Eq. 2, default), ``prod``, ``cat``, ``weighted``.

    ``cat`` concatenates and maps 2C → C with a biased 1 × 1 conv; ``weighted`` learns two scalars
    (a·F̂ + b·Z, both initialised to 1). The exact form of the code's cat/weighted is not given in
    the reference; these two are our choices.
    """

    def __init__(self, dim: int, op: str = "sum"):
        super().__init__()
        if op not in FUSION_OPS:
            raise ValueError(f"unknown fusion_op {op!r}; available: {', '.join(FUSION_OPS)}")
        self.op = op
        if op == "cat":
            self.proj = nn.Conv2d(2 * dim, dim, kernel_size=1)
        elif op == "weighted":
            self.weights = nn.Parameter(torch.ones(2))

    def forward(self, q: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """Args: q, z ``(B, C, H, W)``. Returns: the fused skip ``(B, C, H, W)``."""
        if self.op == "sum":
            return q + z
        if self.op == "prod":
            return q * z
        if self.op == "cat":
            return self.proj(torch.cat([q, z], dim=1))
        return self.weights[0] * q + self.weights[1] * z
