"""SwinUNETR (Hatamizadeh et al., BrainLes 2021) via MONAI, 2-D.

MONAI ``SwinUNETR(spatial_dims=2, feature_size=48)``: depths (2, 2, 2, 2), heads (3, 6, 12, 24),
window 7, instance-norm decoder; no ``img_size`` argument (removed in MONAI 1.5). Sides must be
divisible by 32 and at least 64. Random initialisation. Loss: Dice + CE.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from ssnet.models.clip_modes import WeightedLossClipAdapter, image_in_channels
from ssnet.registry import register


@register(
    "swinunetr",
    kind="image",
    size_divisor=32,
    display_name="SwinUNETR",
    test_config={"frames": 3, "img_size": 64, "feature_size": 12},
    paper_config={"frames": 10, "img_size": 224},
)
def build_swinunetr(
    *,
    frames: int,
    num_classes: int = 4,
    in_channels: int = 1,
    img_size: int = 224,
    clip_mode: str = "stack",
    feature_size: int = 48,
    ce_weight: float = 1.0,
    dice_weight: float = 1.0,
) -> nn.Module:
    """MONAI 2-D SwinUNETR reading the clip by ``clip_mode``; ``feature_size`` must be divisible by 12.

    Sides must be at least 64: at 32 the 1/32 map is one pixel, which instance norm cannot train on.
    """
    from monai.networks.nets import SwinUNETR

    if img_size < 64:
        raise ValueError(f"model 'swinunetr' needs image sides of at least 64 (1/32 map above 1 pixel), got {img_size}")

    def make() -> nn.Module:
        return SwinUNETR(
            in_channels=image_in_channels(clip_mode, frames, in_channels),
            out_channels=num_classes,
            spatial_dims=2,
            feature_size=feature_size,
        )

    if torch.get_default_device().type == "meta":
        # MONAI computes drop-path rates with ``.item()``, which fails on meta tensors: build on the
        # CPU, then move to meta (``ssnet models --params`` builds every model on meta).
        with torch.device("cpu"):
            return WeightedLossClipAdapter(make(), clip_mode, ce_weight, dice_weight).to("meta")
    return WeightedLossClipAdapter(make(), clip_mode, ce_weight, dice_weight)
