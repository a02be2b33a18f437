"""Vivim (Yang, Xing, Zhu, arXiv 2401.14168): MiT-B3 encoder + ST-Mamba temporal layers + SegFormer head.

Written from the baselines reference (no code copied from the CC BY-NC original):

* **Encoder.** SegFormer's MiT-B3 (:mod:`ssnet.models.mit`), frame-wise on ``(B·T, 3, H, W)``; the
  grey frame is repeated ×3 for the RGB stem (``rgb_stem=False``: a 1-channel stem instead).
  Random initialisation, or a local state dict via ``encoder_weights`` (never downloaded).
* **ST-Mamba.** After each stage, ``mamba_layers`` (2) layers on ``(B, C, T, h, w)``:
  ``x + MambaV3(LN(x))`` on frame-major tokens, then ``x + MLP(LN(x))`` with MLP = fc(C → 4C),
  depthwise 3×3×3 Conv3d over (T, h, w) (run as the sum of its three temporal taps' depthwise 2-D
  convolutions), GELU, fc(4C → C). The result feeds the next stage and the decoder.
* **Mamba v3.** One ``in_proj`` (C → 2·2C: x and gate z), then three selective-scan directions —
  forward, reversed, pixel-major (each location's T frames consecutive) — each with its own
  causal depthwise conv1d, x/dt projections, A and D; the three outputs are averaged, then
  ``out_proj`` (2C → C). d_state 16, d_conv 4, expand 2, dt_rank ceil(C/16); T is read from the
  input (the original hard-codes 5).
* **Decoder.** SegFormer all-MLP head (1×1 → 768 per stage, upsample to 1/4, concatenate, fuse
  1×1 → 768, BN-ReLU, dropout 0.1, 1×1 → K), bilinear to full size, per frame. The fuse is linear,
  so each stage's share of it runs before the upsampling, at the stage's own resolution. The clip
  prediction is the log of the mean per-frame probability (or frame ``eval_frame``).
* **Loss.** Structure loss (weighted BCE + weighted IoU, weights 1 + 5·|avgpool31(m) − m|) on
  one-hot K-class targets, every frame supervised with the clip mask (``supervise_frame=0``: the
  authors' run, frame 0 only).
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from ssnet.errors import input_error
from ssnet.models.base import SegOutput
from ssnet.models.clip_modes import average_frame_probabilities
from ssnet.models.mit import MIT_B3, MixTransformer, init_transformer_weights
from ssnet.models.pretrained import adapt_stem_kernel, read_state_dict
from ssnet.models.selective_scan import SCAN_BACKENDS, selective_scan
from ssnet.registry import register

DIRECTIONS = ("fwd", "rev", "pix")  # forward, reversed, pixel-major (across time at each location)


class ScanDirection(nn.Module):
    """One selective-scan direction of Mamba: causal depthwise conv1d, x/dt projections, A, D."""

    def __init__(
        self,
        d_inner: int,
        d_state: int,
        d_conv: int,
        dt_rank: int,
        dt_min: float = 1e-3,
        dt_max: float = 0.1,
        dt_floor: float = 1e-4,
    ) -> None:
        super().__init__()
        self.d_state, self.dt_rank = d_state, dt_rank
        self.conv1d = nn.Conv1d(d_inner, d_inner, d_conv, groups=d_inner, padding=d_conv - 1)
        self.x_proj = nn.Linear(d_inner, dt_rank + 2 * d_state, bias=False)
        self.dt_proj = nn.Linear(dt_rank, d_inner)
        self.A_log = nn.Parameter(torch.empty(d_inner, d_state))
        self.D = nn.Parameter(torch.empty(d_inner))
        # Mamba's initialisation: dt log-uniform in [dt_min, dt_max] through an inverse softplus,
        # A = -(1 … d_state) per channel (S4D-real), D = 1.
        with torch.no_grad():
            bound = dt_rank**-0.5
            nn.init.uniform_(self.dt_proj.weight, -bound, bound)
            dt = torch.exp(torch.rand(d_inner) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min))
            dt = dt.clamp(min=dt_floor)
            self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))
            self.A_log.copy_(torch.log(torch.arange(1, d_state + 1, dtype=torch.float32)).repeat(d_inner, 1))
            self.D.fill_(1.0)

    def forward(self, x: torch.Tensor, z: torch.Tensor, backend: str, checkpoint: bool | None = None) -> torch.Tensor:
        """``x``, ``z``: ``(B, d_inner, L)`` in scan order → gated scan output ``(B, d_inner, L)``."""
        length = x.shape[-1]
        x = F.silu(self.conv1d(x)[..., :length])
        dt, b_in, c_out = self.x_proj(x.transpose(1, 2)).split([self.dt_rank, self.d_state, self.d_state], -1)
        delta = (dt @ self.dt_proj.weight.t()).transpose(1, 2)
        return selective_scan(
            x, delta, -torch.exp(self.A_log.float()), b_in.transpose(1, 2), c_out.transpose(1, 2),
            D=self.D, z=z, delta_bias=self.dt_proj.bias, delta_softplus=True, backend=backend, checkpoint=checkpoint,
        )


class MambaV3(nn.Module):
    """Vivim's three-direction Mamba on frame-major tokens ``(B, T·S, C)``; S = h·w locations.

    Parameters per width C (d_inner = 2C, N = 16, r = ceil(C/16)): in_proj 4C², out_proj 2C²,
    and per direction conv1d 10C, x_proj 2C(r + 32), dt_proj 2Cr + 2C, A 32C, D 2C. At C = 64 /
    128 / 320 / 512 this is 48,768 / 152,832 / 796,800 / 1,938,432 (the reference's numbers).
    """

    def __init__(
        self, dim: int, d_state: int = 16, d_conv: int = 4, expand: int = 2, scan_backend: str = "auto"
    ) -> None:
        super().__init__()
        if scan_backend not in SCAN_BACKENDS:
            raise ValueError(f"unknown scan_backend {scan_backend!r}; available: {', '.join(SCAN_BACKENDS)}")
        d_inner = expand * dim
        self.scan_backend = scan_backend
        self.scan_checkpoint: bool | None = None  # PyTorch scan: recompute in backward (None: on CUDA)
        self.in_proj = nn.Linear(dim, 2 * d_inner, bias=False)
        self.directions = nn.ModuleDict(
            {name: ScanDirection(d_inner, d_state, d_conv, math.ceil(dim / 16)) for name in DIRECTIONS}
        )
        self.out_proj = nn.Linear(d_inner, dim, bias=False)

    def forward(self, tokens: torch.Tensor, frames: int) -> torch.Tensor:
        """``(B, L, C)`` frame-major tokens (L = T·S) → ``(B, L, C)``."""
        b, length, _ = tokens.shape
        xz = self.in_proj(tokens).transpose(1, 2)  # (B, 2·d_inner, L)
        sites = length // frames

        def to_pixel_major(t: torch.Tensor) -> torch.Tensor:  # (.., T·S) → (.., S·T)
            return t.unflatten(-1, (frames, sites)).transpose(-1, -2).flatten(-2)

        def from_pixel_major(t: torch.Tensor) -> torch.Tensor:
            return t.unflatten(-1, (sites, frames)).transpose(-1, -2).flatten(-2)

        orders = {
            "fwd": (lambda t: t, lambda t: t),
            "rev": (lambda t: t.flip(-1), lambda t: t.flip(-1)),
            "pix": (to_pixel_major, from_pixel_major),
        }
        out = 0.0
        for name, direction in self.directions.items():
            there, back = orders[name]
            x, z = there(xz).chunk(2, dim=1)
            out = out + back(direction(x, z, self.scan_backend, self.scan_checkpoint))
        return self.out_proj((out / len(self.directions)).transpose(1, 2))


class SpatioTemporalMLP(nn.Module):
    """fc(C → rC) → depthwise 3×3×3 Conv3d over (T, h, w) → GELU → fc(rC → C), on frame-major tokens."""

    def __init__(self, dim: int, ratio: int = 4) -> None:
        super().__init__()
        hidden = ratio * dim
        self.fc1 = nn.Linear(dim, hidden)
        self.dwconv = nn.Conv3d(hidden, hidden, 3, padding=1, groups=hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, tokens: torch.Tensor, frames: int, h: int, w: int) -> torch.Tensor:
        x = self.fc1(tokens)  # (B, T·h·w, rC)
        return self.fc2(F.gelu(depthwise_conv3d_tokens(self.dwconv, x, frames, h, w)))


def depthwise_conv3d_tokens(conv: nn.Conv3d, tokens: torch.Tensor, frames: int, h: int, w: int) -> torch.Tensor:
    """A depthwise, zero-padded ``conv`` over (T, h, w) on frame-major tokens ``(B, T·h·w, C)``, same layout out.

    Computed as the sum over the kernel's temporal taps of depthwise 2-D convolutions of the
    time-shifted frames (channels-last views of the tokens): the same sum of products as the 3-D
    convolution (equal up to float rounding), without the token transposes and with the CPU's fast
    2-D depthwise kernels (PyTorch's 3-D depthwise backward is several times slower).
    """
    b, _, c = tokens.shape
    taps, pad = conv.kernel_size[0], conv.padding[0]
    padded = F.pad(tokens.view(b, frames, h, w, c), (0, 0, 0, 0, 0, 0, pad, pad))
    out = 0.0
    for k in range(taps):
        shifted = padded[:, k : k + frames].reshape(b * frames, h, w, c).permute(0, 3, 1, 2)
        out = out + F.conv2d(shifted, conv.weight[:, :, k], conv.bias if k == 0 else None, padding=conv.padding[1:], groups=c)
    return out.permute(0, 2, 3, 1).reshape(b, frames * h * w, c)


class STMambaLayer(nn.Module):
    """``x + MambaV3(LN(x))``, then ``x + MLP(LN(x))``, on frame-major tokens ``(B, T·h·w, C)``."""

    def __init__(self, dim: int, d_state: int, d_conv: int, expand: int, scan_backend: str) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.mamba = MambaV3(dim, d_state, d_conv, expand, scan_backend)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = SpatioTemporalMLP(dim)

    def forward(self, tokens: torch.Tensor, frames: int, h: int, w: int) -> torch.Tensor:
        tokens = tokens + self.mamba(self.norm1(tokens), frames)
        return tokens + self.mlp(self.norm2(tokens), frames, h, w)


class STMambaStage(nn.Module):
    """``layers`` ST-Mamba layers on a stage's frame-wise features ``(B·T, C, h, w)`` (shape kept)."""

    def __init__(self, dim: int, layers: int, d_state: int, d_conv: int, expand: int, scan_backend: str) -> None:
        super().__init__()
        self.layers = nn.ModuleList(STMambaLayer(dim, d_state, d_conv, expand, scan_backend) for _ in range(layers))

    def forward(self, x: torch.Tensor, frames: int) -> torch.Tensor:
        bt, c, h, w = x.shape
        b = bt // frames
        tokens = x.reshape(b, frames, c, h * w).transpose(2, 3).reshape(b, frames * h * w, c)
        for layer in self.layers:
            tokens = layer(tokens, frames, h, w)
        return tokens.reshape(b, frames, h * w, c).transpose(2, 3).reshape(bt, c, h, w)


class SegFormerHead(nn.Module):
    """SegFormer all-MLP decoder: per stage 1×1 → dim, upsample to 1/4, concat, fuse, BN-ReLU, 1×1 → K."""

    def __init__(self, in_dims: Sequence[int], dim: int, num_classes: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.linear_c = nn.ModuleList(nn.Linear(c, dim) for c in in_dims)
        self.fuse = nn.Conv2d(dim * len(in_dims), dim, 1, bias=False)
        self.bn = nn.BatchNorm2d(dim)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Conv2d(dim, num_classes, 1)

    def forward(self, feats: Sequence[torch.Tensor]) -> torch.Tensor:
        """Per-stage ``(N, C_i, h_i, w_i)`` → logits ``(N, K, h_0, w_0)`` at the first stage's size.

        ``fuse(cat(upsample(linear_i(f_i))))`` is computed as ``Σ_i upsample(W_i · linear_i(f_i))``, with
        ``W_i`` the block of the 1×1 fuse weight that reads stage i: the 1×1 convolution is linear per
        pixel and bilinear upsampling linear per channel, so they commute (equal up to float rounding)
        and each stage's share of the fuse runs at that stage's resolution, not at 1/4.
        """
        size = feats[0].shape[-2:]
        dim = self.fuse.out_channels
        blocks = self.fuse.weight.flatten(1).split(dim, 1)[::-1]  # SegFormer concatenates deepest first
        x = 0.0
        for f, lin, weight in zip(feats, self.linear_c, blocks):
            n, _, h, w = f.shape
            y = F.linear(lin(f.flatten(2).transpose(1, 2)), weight).transpose(1, 2).reshape(n, dim, h, w)
            if (h, w) != tuple(size):
                y = F.interpolate(y, size=size, mode="bilinear", align_corners=False)
            x = x + y
        x = torch.relu(self.bn(x))
        return self.classifier(self.dropout(x))


def box_filter31(mask: torch.Tensor) -> torch.Tensor:
    """``avg_pool2d(mask, 31, stride=1, padding=15)`` (zero padding counted), done separably (fast)."""
    rows = F.avg_pool2d(mask, kernel_size=(1, 31), stride=1, padding=(0, 15))
    return F.avg_pool2d(rows, kernel_size=(31, 1), stride=1, padding=(15, 0))


def structure_loss(logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Structure loss (F3Net/PraNet): boundary-weighted BCE + weighted IoU, per channel, averaged.

    Args:
        logits: ``(N, K, H, W)`` pre-sigmoid scores.
        mask: ``(N, K, H, W)`` float targets in [0, 1] (one-hot for K classes).

    Returns:
        scalar loss, float32.
    """
    logits, mask = logits.float(), mask.float()
    weit = 1 + 5 * torch.abs(box_filter31(mask) - mask)
    wbce = F.binary_cross_entropy_with_logits(logits, mask, reduction="none")
    wbce = (weit * wbce).sum((2, 3)) / weit.sum((2, 3))
    pred = torch.sigmoid(logits)
    inter = (pred * mask * weit).sum((2, 3))
    union = ((pred + mask) * weit).sum((2, 3))
    wiou = 1 - (inter + 1) / (union - inter + 1)
    return (wbce + wiou).mean()


class Vivim(nn.Module):
    """Vivim on clips ``(B, T, C, H, W)`` → :class:`SegOutput` (clip log-probabilities + per-frame logits).

    ``aux["frame_logits"]`` holds the per-frame logits ``(B, T, K, H, W)`` that the loss supervises.
    """

    def __init__(
        self,
        *,
        num_classes: int = 4,
        in_channels: int = 1,
        rgb_stem: bool = True,
        embed_dims: Sequence[int] = MIT_B3["embed_dims"],
        depths: Sequence[int] = MIT_B3["depths"],
        num_heads: Sequence[int] = MIT_B3["num_heads"],
        sr_ratios: Sequence[int] = MIT_B3["sr_ratios"],
        mamba_layers: int = 2,
        d_state: int = 16,
        d_conv: int = 4,
        expand: int = 2,
        decoder_dim: int = 768,
        scan_backend: str = "auto",
        scan_checkpoint: bool | None = None,
        eval_frame: int | None = None,
        supervise_frame: int | None = None,
    ) -> None:
        super().__init__()
        if rgb_stem and in_channels not in (1, 3):
            raise ValueError(f"rgb_stem needs 1 (repeated ×3) or 3 input channels, got {in_channels}")
        self.in_channels = in_channels
        self.stem_channels = 3 if rgb_stem else in_channels
        self.eval_frame = eval_frame
        self.supervise_frame = supervise_frame
        self.encoder = MixTransformer(self.stem_channels, embed_dims, depths, num_heads, sr_ratios)
        self.temporal = nn.ModuleList(
            STMambaStage(c, mamba_layers, d_state, d_conv, expand, scan_backend) for c in self.encoder.embed_dims
        )
        self.head = SegFormerHead(self.encoder.embed_dims, decoder_dim, num_classes)
        self.head.apply(init_transformer_weights)
        for module in self.temporal.modules():
            if isinstance(module, MambaV3):
                module.scan_checkpoint = scan_checkpoint

    def frame_logits(self, frames: torch.Tensor) -> torch.Tensor:
        """``(B, T, C, H, W)`` → per-frame logits ``(B, T, K, H, W)``."""
        b, t, c, h, w = frames.shape
        x = frames.reshape(b * t, c, h, w)
        if self.stem_channels != c:
            x = x.expand(-1, self.stem_channels, -1, -1)  # grey repeated ×3 for the RGB stem
        feats = []
        for stage, temporal in zip(self.encoder.stages, self.temporal):
            x = temporal(stage(x), t)
            feats.append(x)
        logits = F.interpolate(self.head(feats), size=(h, w), mode="bilinear", align_corners=False)
        return logits.reshape(b, t, *logits.shape[1:])

    def forward(self, frames: torch.Tensor) -> SegOutput:
        per_frame = self.frame_logits(frames)
        return SegOutput(average_frame_probabilities(per_frame, self.eval_frame), {"frame_logits": per_frame})

    def loss(self, output: SegOutput, target: torch.Tensor) -> torch.Tensor:
        """Structure loss of every frame's logits against the one-hot clip mask ``target`` ``(B, H, W)``."""
        per_frame = output.aux["frame_logits"]
        if self.supervise_frame is not None:
            per_frame = per_frame[:, self.supervise_frame : self.supervise_frame + 1 or None]
        b, t, k, h, w = per_frame.shape
        onehot = F.one_hot(target.long(), k).permute(0, 3, 1, 2).to(per_frame.dtype)
        onehot = onehot.unsqueeze(1).expand(-1, t, -1, -1, -1).reshape(b * t, k, h, w)
        return structure_loss(per_frame.reshape(b * t, k, h, w), onehot)


def load_mit_weights(encoder: MixTransformer, path: str | Path) -> None:
    """Load a local MiT state dict (this module's key names) into ``encoder``, adapting the stem channels.

    Keys the encoder lacks (SegFormer's per-stage norms, a classifier) are ignored; a missing
    encoder key is an error.
    """
    own = encoder.state_dict()
    adapted = {}
    for key, value in read_state_dict(path).items():
        if key not in own:
            continue
        if key == "stages.0.patch_embed.proj.weight":
            value = adapt_stem_kernel(value, own[key].shape[1])
        adapted[key] = value
    missing = [k for k in own if k not in adapted]
    if missing:
        raise input_error(path, f"MiT weights lack {len(missing)} tensor(s), e.g. {missing[0]!r}")
    encoder.load_state_dict(adapted, strict=False)


@register(
    "vivim",
    kind="video",
    display_name="Vivim",
    min_frames=2,
    size_divisor=32,
    test_config={
        "frames": 4,
        "img_size": 64,
        "embed_dims": (16, 32, 40, 64),
        "depths": (1, 1, 1, 1),
        "decoder_dim": 32,
        "d_state": 4,
        "mamba_layers": 1,
    },
    paper_config={"frames": 10, "img_size": 224},
)
def build_vivim(
    *,
    frames: int,
    num_classes: int = 4,
    in_channels: int = 1,
    img_size: int = 224,
    rgb_stem: bool = True,
    embed_dims: Sequence[int] = MIT_B3["embed_dims"],
    depths: Sequence[int] = MIT_B3["depths"],
    num_heads: Sequence[int] = MIT_B3["num_heads"],
    sr_ratios: Sequence[int] = MIT_B3["sr_ratios"],
    mamba_layers: int = 2,
    d_state: int = 16,
    d_conv: int = 4,
    expand: int = 2,
    decoder_dim: int = 768,
    scan_backend: str = "auto",
    scan_checkpoint: bool | None = None,
    eval_frame: int | None = None,
    supervise_frame: int | None = None,
    encoder_weights: str | None = None,
) -> nn.Module:
    """Vivim (MiT-B3 + 2 ST-Mamba layers per stage + SegFormer head); any T ≥ 2 at run time.

    ``frames`` and ``img_size`` set nothing structural (checked by the registry only).
    """
    model = Vivim(
        num_classes=num_classes, in_channels=in_channels, rgb_stem=rgb_stem, embed_dims=embed_dims, depths=depths,
        num_heads=num_heads, sr_ratios=sr_ratios, mamba_layers=mamba_layers, d_state=d_state, d_conv=d_conv,
        expand=expand, decoder_dim=decoder_dim, scan_backend=scan_backend, scan_checkpoint=scan_checkpoint,
        eval_frame=eval_frame, supervise_frame=supervise_frame,
    )
    if encoder_weights:
        load_mit_weights(model.encoder, encoder_weights)
    return model
