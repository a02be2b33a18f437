"""UNet++ (Zhou et al., DLMIA 2018) via segmentation-models-pytorch, ResNet encoder.

Nested dense skip paths, no deep-supervision outputs; the same encoder rules as ``unet``
(ResNet-50 at the paper profile, the profile's ``backbone`` hint otherwise). Dice loss (the
engine's default). Random initialisation by default; ``encoder_weights`` may name a local
state-dict file.
"""
from __future__ import annotations

import torch.nn as nn

from ssnet.models.clip_modes import smp_clip_model
from ssnet.registry import register


@register(
    "unetpp",
    kind="image",
    display_name="UNet++",
    test_config={"frames": 3, "img_size": 64, "backbone": "resnet18"},
    paper_config={"frames": 10, "img_size": 224},
)
def build_unetpp(
    *,
    frames: int,
    num_classes: int = 4,
    in_channels: int = 1,
    img_size: int = 224,
    backbone: str = "resnet50",
    clip_mode: str = "stack",
    encoder_weights: str | None = None,
) -> nn.Module:
    """smp ``UnetPlusPlus(backbone)`` reading the clip by ``clip_mode`` (frames stacked as channels by default)."""
    return smp_clip_model(
        "UnetPlusPlus", frames=frames, num_classes=num_classes, in_channels=in_channels, backbone=backbone,
        clip_mode=clip_mode, encoder_weights=encoder_weights,
    )
