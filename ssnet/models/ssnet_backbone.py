"""ResNet trunks for SSNet: five feature stages, any input channel count, optional local weights.

The five stages follow the architecture reference §3 (strides 2, 4, 8, 16, 32):

====  ==============================  =========================  ==================
stage layer                           widths resnet18/34         widths resnet50
====  ==============================  =========================  ==================
1     stem conv-BN-ReLU (before pool) 64                         64
2     max-pool + layer1               64                         256
3     layer2                          128                        512
4     layer3                          256                        1024
5     layer4                          512                        2048
====  ==============================  =========================  ==================

Weights are randomly initialised (torchvision's ResNet initialisation). ``weights`` may name a
*local* torchvision-style state dict; nothing is ever downloaded.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn
from torchvision.models import resnet

from ssnet.models.pretrained import load_local_encoder_weights

BACKBONES: dict[str, tuple[int, ...]] = {
    "resnet18": (64, 64, 128, 256, 512),
    "resnet34": (64, 64, 128, 256, 512),
    "resnet50": (64, 256, 512, 1024, 2048),
}


class ResNetTrunk(nn.Module):
    """A torchvision ResNet without the classifier, returning the five SSNet feature stages.

    Submodule names match torchvision's (``conv1``, ``bn1``, ``layer1`` …) so that torchvision
    state dicts load directly.

    Args:
        backbone: one of ``resnet18``, ``resnet34``, ``resnet50``.
        in_channels: input channels of the stem convolution (1 for grey cine frames).
        weights: optional path of a local torchvision-style state dict; an RGB stem is adapted
            by :func:`ssnet.models.pretrained.load_local_encoder_weights` (summed for 1 channel).
    """

    def __init__(self, backbone: str = "resnet50", in_channels: int = 1, weights: str | Path | None = None):
        super().__init__()
        if backbone not in BACKBONES:
            raise ValueError(f"unknown backbone {backbone!r}; available: {', '.join(BACKBONES)}")
        net = getattr(resnet, backbone)(weights=None)
        self.channels: tuple[int, ...] = BACKBONES[backbone]
        self.in_channels = in_channels
        stem = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
        nn.init.kaiming_normal_(stem.weight, mode="fan_out", nonlinearity="relu")
        self.conv1 = stem
        self.bn1 = net.bn1
        self.relu = net.relu
        self.maxpool = net.maxpool
        self.layer1, self.layer2, self.layer3, self.layer4 = net.layer1, net.layer2, net.layer3, net.layer4
        if weights is not None:
            load_local_encoder_weights(self, weights)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Args: x ``(N, C_in, H, W)``. Returns: five maps ``(N, C_k, H/2^k, W/2^k)``, k = 1..5."""
        s1 = self.relu(self.bn1(self.conv1(x)))
        s2 = self.layer1(self.maxpool(s1))
        s3 = self.layer2(s2)
        s4 = self.layer3(s3)
        s5 = self.layer4(s4)
        return [s1, s2, s3, s4, s5]
