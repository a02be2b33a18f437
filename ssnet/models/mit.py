"""Mix Transformer (MiT) encoder of SegFormer (Xie et al., NeurIPS 2021), built here (never downloaded).

Each stage: an overlapping patch embedding (strided conv + LayerNorm), then blocks of
``x + EfficientSelfAttention(LN(x))`` (keys/values spatially reduced by a strided conv of ratio
R, then LayerNorm) and ``x + MixFFN(LN(x))`` (fc → depthwise 3×3 conv → GELU → fc). The defaults
are MiT-B3: widths 64/128/320/512, depths 3/4/18/3, heads 1/2/5/8, reduction 8/4/2/1, MLP ratio 4;
the outputs are at 1/4, 1/8, 1/16 and 1/32 of the input.

SegFormer also ends each stage with a LayerNorm; ``stage_norms=False`` (Vivim's forward, which
skips them) leaves them out entirely (2,048 parameters at B3).
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

MIT_B3 = {
    "embed_dims": (64, 128, 320, 512),
    "depths": (3, 4, 18, 3),
    "num_heads": (1, 2, 5, 8),
    "sr_ratios": (8, 4, 2, 1),
}


def init_transformer_weights(module: nn.Module) -> None:
    """SegFormer's initialisation: truncated normal (std 0.02) linears, fan-out normal convs, unit norms."""
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
    elif isinstance(module, (nn.Conv2d, nn.Conv3d)):
        fan_out = math.prod(module.kernel_size) * module.out_channels // module.groups
        nn.init.normal_(module.weight, 0.0, math.sqrt(2.0 / fan_out))
        if module.bias is not None:
            nn.init.zeros_(module.bias)


class OverlapPatchEmbed(nn.Module):
    """Strided conv with overlapping windows (k=7/s=4 for stage 1, k=3/s=2 after), then LayerNorm."""

    def __init__(self, in_channels: int, dim: int, kernel: int, stride: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_channels, dim, kernel, stride, padding=kernel // 2)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, int, int]:
        """``(N, C, H, W)`` → tokens ``(N, h·w, dim)``, h, w."""
        x = self.proj(x)
        h, w = x.shape[-2:]
        return self.norm(x.flatten(2).transpose(1, 2)), h, w


class EfficientSelfAttention(nn.Module):
    """Multi-head self-attention whose keys/values come from a map reduced ``sr_ratio``× per side."""

    def __init__(self, dim: int, heads: int, sr_ratio: int) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"MiT width {dim} is not divisible by {heads} heads")
        self.heads = heads
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.proj = nn.Linear(dim, dim)
        self.sr_ratio = sr_ratio
        if sr_ratio > 1:
            self.sr = nn.Conv2d(dim, dim, sr_ratio, sr_ratio)
            self.sr_norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        n, length, c = x.shape
        q = self.q(x).reshape(n, length, self.heads, c // self.heads).transpose(1, 2)
        if self.sr_ratio > 1:
            kv_in = self.sr(x.transpose(1, 2).reshape(n, c, h, w)).flatten(2).transpose(1, 2)
            kv_in = self.sr_norm(kv_in)
        else:
            kv_in = x
        k, v = self.kv(kv_in).reshape(n, -1, 2, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(n, length, c))


class MixFFN(nn.Module):
    """fc(C → rC) → depthwise 3×3 conv → GELU → fc(rC → C)."""

    def __init__(self, dim: int, ratio: int = 4) -> None:
        super().__init__()
        hidden = dim * ratio
        self.fc1 = nn.Linear(dim, hidden)
        self.dwconv = nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        x = self.fc1(x)
        n, length, c = x.shape
        x = self.dwconv(x.transpose(1, 2).reshape(n, c, h, w)).flatten(2).transpose(1, 2)
        return self.fc2(F.gelu(x))


class MiTBlock(nn.Module):
    """Pre-norm transformer block: efficient self-attention, then Mix-FFN."""

    def __init__(self, dim: int, heads: int, sr_ratio: int, mlp_ratio: int = 4) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = EfficientSelfAttention(dim, heads, sr_ratio)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = MixFFN(dim, mlp_ratio)

    def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), h, w)
        return x + self.mlp(self.norm2(x), h, w)


class MiTStage(nn.Module):
    """Patch embedding + blocks (+ optional final LayerNorm); ``(N, C_in, H, W)`` → ``(N, C, H/s, W/s)``."""

    def __init__(
        self, in_channels: int, dim: int, depth: int, heads: int, sr_ratio: int, first: bool, stage_norm: bool
    ) -> None:
        super().__init__()
        self.patch_embed = OverlapPatchEmbed(in_channels, dim, 7 if first else 3, 4 if first else 2)
        self.blocks = nn.ModuleList(MiTBlock(dim, heads, sr_ratio) for _ in range(depth))
        self.norm = nn.LayerNorm(dim) if stage_norm else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, h, w = self.patch_embed(x)
        for block in self.blocks:
            x = block(x, h, w)
        x = self.norm(x)
        return x.transpose(1, 2).reshape(x.shape[0], -1, h, w)


class MixTransformer(nn.Module):
    """MiT encoder (default B3), random initialisation. The stages are exposed for interleaving.

    Args:
        in_channels: input channels of the stage-1 patch embedding (3 for SegFormer's RGB stem).
        embed_dims, depths, num_heads, sr_ratios: per-stage width, blocks, heads, reduction ratio.
        stage_norms: keep SegFormer's LayerNorm at the end of each stage.
    """

    def __init__(
        self,
        in_channels: int = 3,
        embed_dims: Sequence[int] = MIT_B3["embed_dims"],
        depths: Sequence[int] = MIT_B3["depths"],
        num_heads: Sequence[int] = MIT_B3["num_heads"],
        sr_ratios: Sequence[int] = MIT_B3["sr_ratios"],
        stage_norms: bool = False,
    ) -> None:
        super().__init__()
        if not len(embed_dims) == len(depths) == len(num_heads) == len(sr_ratios):
            raise ValueError("MiT embed_dims, depths, num_heads and sr_ratios must have the same length")
        self.embed_dims = tuple(int(c) for c in embed_dims)
        chans = (in_channels, *self.embed_dims[:-1])
        self.stages = nn.ModuleList(
            MiTStage(chans[i], self.embed_dims[i], depths[i], num_heads[i], sr_ratios[i], i == 0, stage_norms)
            for i in range(len(self.embed_dims))
        )
        self.apply(init_transformer_weights)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """``(N, C_in, H, W)`` → per-stage features ``(N, C_i, H/2^(i+2), W/2^(i+2))``."""
        feats = []
        for stage in self.stages:
            x = stage(x)
            feats.append(x)
        return feats
