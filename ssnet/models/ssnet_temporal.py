"""Temporal convolution of static features (architecture reference §4): a learned temporal pooling.

Every (pixel, channel) sequence of T values is convolved on its own by a small Conv1d stack
shared across channels and pixels: Conv1d(1 → c, k₁, stride k₁), ReLU, Conv1d(c → c, k₂, stride
k₂), ReLU, … until the length is 1; then the c output channels are averaged. The product of the
kernels is T.

Kernel rule (:func:`temporal_kernels`): repeatedly take the largest divisor d ∈ {5, 4, 3, 2} of
the remaining length; a remainder with no such divisor (a prime > 5, e.g. 7) becomes one last
kernel. This reproduces the reference table (5 → [5], 10 → [5, 2], 15 → [5, 3], 20 → [5, 4],
30 → [5, 3, 2]) and extends it to any T ≥ 2 (7 → [7], 14 → [2, 7], 12 → [4, 3]).

Initialisation (``init``): ``default`` is PyTorch's Conv1d initialisation, as the authors' code. Its
inputs are non-negative (ResNet stage outputs end in a ReLU), so a unit whose weights sum to a negative
number is dead from the start, and with c₁ = 2 all of stage 1 can be: the query of stage 1 is then 0
everywhere, the attention uniform, and that stage's skip spatially constant (measured at the quick
profile: stage 1 entirely zero at seed 0, 40 % zero at seed 1; ``tests/test_ssnet.py``). ``positive``
(opt-in deviation) takes the absolute value of the same initial weights and zero biases: a
non-negative weighted temporal pooling at initialisation that no input can switch off.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

STAGE_HIDDEN = (2, 5, 10, 20, 40)  # c_k for stages 1-5
TEMPORAL_INITS = ("default", "positive")


def temporal_kernels(frames: int) -> list[int]:
    """Kernel sizes (= strides) of the Conv1d stack for ``frames`` time steps; their product is T."""
    if frames < 2:
        raise ValueError(f"the temporal convolution needs at least 2 frames, got {frames}")
    kernels: list[int] = []
    rest = frames
    while rest > 1:
        divisor = next((d for d in (5, 4, 3, 2) if rest % d == 0), rest)
        kernels.append(divisor)
        rest //= divisor
    return kernels


class TemporalConv(nn.Module):
    """Scalar-sequence temporal convolution ``(B, T, C, H, W) → (B, C, H, W)``, output ≥ 0.

    Args:
        frames: T, fixed at build time.
        hidden: c, the Conv1d channel count.
        impl: ``conv1d`` (the reference's parameters, evaluated as a batched matmul on the
            ``(B, T, C·H·W)`` layout, so no (B·H·W·C, 1, T) copy is made) or ``conv3d`` (the same
            maths with Conv3d kernels (k, 1, 1) on ``(B·C, 1, T, H, W)``).
        init: ``default`` (PyTorch's, as the authors' code) or ``positive`` (|weights|, zero bias).
    """

    def __init__(self, frames: int, hidden: int, impl: str = "conv1d", init: str = "default"):
        super().__init__()
        if impl not in ("conv1d", "conv3d"):
            raise ValueError(f"unknown temporal {impl!r}; available: conv1d, conv3d")
        if init not in TEMPORAL_INITS:
            raise ValueError(f"unknown temporal_init {init!r}; available: {', '.join(TEMPORAL_INITS)}")
        self.frames = frames
        self.impl = impl
        self.kernels = temporal_kernels(frames)
        layers: list[nn.Module] = []
        c_in = 1
        for k in self.kernels:
            if impl == "conv1d":
                layers.append(nn.Conv1d(c_in, hidden, kernel_size=k, stride=k))
            else:
                layers.append(nn.Conv3d(c_in, hidden, kernel_size=(k, 1, 1), stride=(k, 1, 1)))
            c_in = hidden
        self.convs = nn.ModuleList(layers)
        if init == "positive":
            with torch.no_grad():
                for conv in self.convs:
                    conv.weight.abs_()
                    conv.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Args: x ``(B, T, C, H, W)``. Returns: ``(B, C, H, W)``, non-negative."""
        b, t, c, h, w = x.shape
        if t != self.frames:
            raise ValueError(f"temporal convolution built for T={self.frames}, got T={t}")
        if self.impl == "conv3d":
            y = x.transpose(1, 2).reshape(b * c, 1, t, h, w)
            for conv in self.convs:
                y = F.relu(conv(y))
            return y.mean(dim=1).reshape(b, c, h, w)
        m = c * h * w
        y = x.reshape(b, t, 1, m)  # (B, L, c_in, M)
        for conv in self.convs:
            k, c_in, c_out = conv.kernel_size[0], conv.in_channels, conv.out_channels
            # group k consecutive steps: row index j·c_in + i holds (time j, channel i)
            y = y.reshape(b, y.shape[1] // k, k * c_in, m)
            weight = conv.weight.permute(0, 2, 1).reshape(c_out, k * c_in).to(y.dtype)
            y = F.relu(torch.matmul(weight, y) + conv.bias.to(y.dtype)[:, None])  # (B, L/k, c_out, M)
        return y.mean(dim=2).reshape(b, c, h, w)

    def forward_reference(self, x: torch.Tensor) -> torch.Tensor:
        """The literal reference: reshape to ``(B·H·W·C, 1, T)`` sequences and apply ``F.conv1d``."""
        if self.impl != "conv1d":
            raise ValueError("forward_reference is defined for impl='conv1d'")
        b, t, c, h, w = x.shape
        y = x.permute(0, 3, 4, 2, 1).reshape(b * h * w * c, 1, t)
        for conv in self.convs:
            y = F.relu(conv(y))
        return y.mean(dim=1).reshape(b, h, w, c).permute(0, 3, 1, 2)


def build_temporal_convs(frames: int, impl: str = "conv1d", init: str = "default") -> nn.ModuleList:
    """One :class:`TemporalConv` per stage with c_k = 2, 5, 10, 20, 40."""
    return nn.ModuleList(TemporalConv(frames, hidden, impl, init) for hidden in STAGE_HIDDEN)
