"""Normalized self-attention (NS) block of PNS+ (Ji et al., MIR 2022) in pure PyTorch.

The original compiles a CUDA op for two steps; here both are an ``unfold`` plus an ``einsum``:

* **relevance**: for every query pixel, the dot product (over the head's channels) with the key at
  each offset of a ``(2r+1)²`` window of dilation ``d`` in every key frame. Keys are unfolded with
  zero padding ``r·d``, so an offset that falls outside the map scores exactly 0 (not ``-inf``).
  Scores are laid out as ``frame · (2r+1)² + offset``, offsets row-major over the window.
* **aggregation**: the same unfold on the values, summed with the scores as weights.

:class:`NSBlock` keeps two quirks of the original (baselines reference, "Inside an NS block"):

1. the scores are aggregated **without** softmax (only scaled by ``1/sqrt(d_k)``);
2. the softmax of the scores (over frame · window, per head) feeds only a **per-pixel max gate**:
   the maximum over all heads and all positions, one scalar per query pixel and frame, that
   multiplies the block's output projection.

The query LayerNorm is a single module shared by all heads, normalising each query frame of one
head over ``[d_k, h, w]``; its shape comes from the feature size (the original hard-codes
``[8, 16, 28]`` for 256×448 input).
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn as nn


def _unfold_frames(x: torch.Tensor, radius: int, dilation: int) -> torch.Tensor:
    """Zero-padded dilated windows of every frame: ``(B, T, c, h, w) → (B, T, c, (2r+1)², h, w)``."""
    b, t, c, h, w = x.shape
    k = 2 * radius + 1
    cols = nn.functional.unfold(x.reshape(b * t, c, h, w), kernel_size=k, dilation=dilation, padding=radius * dilation)
    return cols.view(b, t, c, k * k, h, w)


def ns_relevance(query: torch.Tensor, key: torch.Tensor, radius: int, dilation: int) -> torch.Tensor:
    """Windowed dot-product relevance of every query frame against every key frame.

    Args:
        query: ``(B, Tq, c, h, w)``.
        key: ``(B, Tk, c, h, w)``.
        radius: window radius ``r`` (window side ``2r+1``).
        dilation: window dilation ``d`` in pixels.

    Returns:
        scores ``(B, Tq, Tk·(2r+1)², h, w)``; entry ``[b, q, t·(2r+1)² + i·(2r+1) + j, y, x]`` is
        ``Σ_c query[b, q, c, y, x] · key[b, t, c, y + (i−r)·d, x + (j−r)·d]``, 0 outside the map.
    """
    b, tq, _, h, w = query.shape
    keys = _unfold_frames(key, radius, dilation)
    scores = torch.einsum("bqchw,btcohw->bqtohw", query, keys)
    return scores.reshape(b, tq, -1, h, w)


def ns_aggregate(scores: torch.Tensor, value: torch.Tensor, radius: int, dilation: int) -> torch.Tensor:
    """Sum of windowed values weighted by ``scores`` (the layout of :func:`ns_relevance`).

    Args:
        scores: ``(B, Tq, Tk·(2r+1)², h, w)``.
        value: ``(B, Tk, c, h, w)``.
        radius: window radius ``r``.
        dilation: window dilation ``d``.

    Returns:
        ``(B, Tq, c, h, w)``; out-of-map values count as 0.
    """
    b, tq, _, h, w = scores.shape
    values = _unfold_frames(value, radius, dilation)
    tk, kk = values.shape[1], values.shape[3]
    return torch.einsum("bqtohw,btcohw->bqchw", scores.reshape(b, tq, tk, kk, h, w), values)


class NSBlock(nn.Module):
    """One NS block: query frames attend to windows of all key/value frames, one dilation per head.

    Args:
        channels: feature channels C (32 in PNS+).
        feature_size: ``(h, w)`` of the feature maps; shapes the query LayerNorm ``[C/heads, h, w]``.
        heads: number of heads (4); each has ``C/heads`` channels.
        radius: window radius (3, i.e. 7×7 windows).
        dilations: one dilation per head, e.g. ``(3, 4, 3, 4)`` (global) or ``(1, 2, 1, 2)`` (local).
    """

    def __init__(
        self,
        channels: int,
        feature_size: tuple[int, int],
        heads: int = 4,
        radius: int = 3,
        dilations: Sequence[int] = (1, 2, 1, 2),
    ) -> None:
        super().__init__()
        if channels % heads:
            raise ValueError(f"NSBlock: channels ({channels}) must be divisible by heads ({heads})")
        if len(dilations) != heads:
            raise ValueError(f"NSBlock: need one dilation per head ({heads}), got {list(dilations)}")
        self.heads, self.head_dim, self.radius = heads, channels // heads, radius
        self.dilations = tuple(int(d) for d in dilations)
        self.query = nn.Conv3d(channels, channels, 1, bias=False)
        self.key = nn.Conv3d(channels, channels, 1, bias=False)
        self.value = nn.Conv3d(channels, channels, 1, bias=False)
        self.proj = nn.Conv3d(channels, channels, 1, bias=False)
        self.query_norm = nn.LayerNorm([self.head_dim, int(feature_size[0]), int(feature_size[1])])  # shared by heads

    def _project(self, conv: nn.Conv3d, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """1×1×1 projection of ``(B, T, C, h, w)``, split into per-head ``(B, T, C/heads, h, w)``."""
        return conv(x.transpose(1, 2)).transpose(1, 2).chunk(self.heads, dim=2)

    def forward(self, query_frames: torch.Tensor, kv_frames: torch.Tensor) -> torch.Tensor:
        """Attend from ``query_frames`` ``(B, Tq, C, h, w)`` to ``kv_frames`` ``(B, Tk, C, h, w)``.

        Returns:
            ``(B, Tq, C, h, w)`` (no residual; the caller adds it).
        """
        queries = self._project(self.query, query_frames)
        keys = self._project(self.key, kv_frames)
        values = self._project(self.value, kv_frames)
        scale = 1.0 / math.sqrt(self.head_dim)
        outs, gates = [], []
        for q, k, v, d in zip(queries, keys, values, self.dilations):
            scores = ns_relevance(self.query_norm(q), k, self.radius, d) * scale
            gates.append(scores.softmax(dim=2).amax(dim=2))  # (B, Tq, h, w): this head's best weight
            outs.append(ns_aggregate(scores, v, self.radius, d))  # raw scores, no softmax (original)
        gate = torch.stack(gates, 0).amax(0).unsqueeze(2)  # max over heads too: one gate per pixel
        out = self.proj(torch.cat(outs, dim=2).transpose(1, 2)).transpose(1, 2)
        return out * gate
