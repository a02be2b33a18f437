"""TransUNet (Chen et al., arXiv 2102.04306), R50-ViT-B/16 hybrid, built from timm's ``vit_base_r50_s16_224``.

* Encoder: timm's BiT ResNetV2 (weight-standardised convs, GroupNorm 32; stages of 3/4/9 units).
  Skips: the stem after conv + norm (64 @ 1/2, before the pool), stage 0 (256 @ 1/4), stage 1
  (512 @ 1/8); stage 2 gives the 1024 @ 1/16 map.
* Transformer: 1×1 patch embedding 1024 → 768, learned position embedding without a CLS token
  (``class_token=False``, so timm's ``pos_embed`` holds only the 14×14 grid, i.e. ``pos_embed[:, 1:]`` of
  the CLS variant; bicubically interpolated when the token grid is not 14×14), dropout 0.1 as the original, 12 pre-LN ViT-B blocks, final LN.
* Decoder ("cup"): conv3×3 768 → 512, four blocks (bilinear ×2 with align_corners, concatenate
  the skip, 2 × conv-BN-ReLU) to 256/128/64/16, head conv3×3 16 → K.

Any side divisible by 16 works. Random initialisation (never a hub call). Loss: 0.5·CE + 0.5·Dice.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ssnet.models.clip_modes import WeightedLossClipAdapter, image_in_channels
from ssnet.registry import register

DECODER_CHANNELS = (256, 128, 64, 16)
SKIP_CHANNELS = (512, 256, 64, 0)  # stage 1, stage 0, stem; the last block has no skip
POS_GRID = 14  # the position embedding is learned on the 224 / 16 grid


def conv_bn_relu(cin: int, cout: int) -> nn.Sequential:
    """conv3×3 (no bias) → BatchNorm → ReLU."""
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))



def bicubic_resize_separable(x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """``F.interpolate(x, (height, width), mode="bicubic", align_corners=False)`` as two matrix products.

    Bicubic resizing is separable, so it equals ``A_h · x · A_wᵀ`` with the 1-D resize matrices (the resize
    of the identity's columns). Its backward is a matrix product too, deterministic on CUDA, where the fused
    bicubic backward is not.
    """
    def matrix(n_in: int, n_out: int) -> torch.Tensor:
        with torch.no_grad():
            eye = torch.eye(n_in, device=x.device, dtype=x.dtype).view(n_in, 1, n_in, 1)
            return F.interpolate(eye, size=(n_out, 1), mode="bicubic", align_corners=False).view(n_in, n_out).t()

    return matrix(x.shape[-2], height) @ x @ matrix(x.shape[-1], width).t()

class CupBlock(nn.Module):
    """Bilinear ×2 (align_corners), concatenate the skip, then two conv-BN-ReLU."""

    def __init__(self, cin: int, skip: int, cout: int) -> None:
        super().__init__()
        self.conv1 = conv_bn_relu(cin + skip, cout)
        self.conv2 = conv_bn_relu(cout, cout)

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        x = F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=True)
        if skip is not None:
            x = torch.cat([x, skip], 1)
        return self.conv2(self.conv1(x))


class TransUNet(nn.Module):
    """R50-ViT-B/16 encoder + cascaded upsampler: ``(B, C, H, W)`` → logits ``(B, K, H, W)``, H and W divisible by 16."""

    def __init__(self, in_channels: int, num_classes: int, dropout: float = 0.1, vit_depth: int = 12) -> None:
        super().__init__()
        import timm

        self.vit = timm.create_model(
            "vit_base_r50_s16_224",
            pretrained=False,
            in_chans=in_channels,
            num_classes=0,
            depth=vit_depth,
            class_token=False,  # the original has no CLS token: pos_embed is (1, 196, 768)
            global_pool="",
            fc_norm=False,  # keep the final LayerNorm on the tokens
            pos_drop_rate=dropout,  # embeddings dropout
            proj_drop_rate=dropout,  # MLP dropout (timm also applies it after the attention projection)
            attn_drop_rate=0.0,
        )
        width = self.vit.embed_dim
        self.conv_more = conv_bn_relu(width, 512)
        ins = (512,) + DECODER_CHANNELS[:-1]
        self.blocks = nn.ModuleList(CupBlock(i, s, o) for i, s, o in zip(ins, SKIP_CHANNELS, DECODER_CHANNELS))
        self.head = nn.Conv2d(DECODER_CHANNELS[-1], num_classes, 3, padding=1)

    def pos_embed(self, gh: int, gw: int) -> torch.Tensor:
        """Position embedding ``(1, gh·gw, D)``: the learned 14×14 grid, interpolated (bicubic) to ``gh × gw``."""
        pos = self.vit.pos_embed
        if (gh, gw) == (POS_GRID, POS_GRID):
            return pos
        grid = pos.reshape(1, POS_GRID, POS_GRID, -1).permute(0, 3, 1, 2)
        if grid.is_cuda and torch.are_deterministic_algorithms_enabled():
            grid = bicubic_resize_separable(grid, gh, gw)  # CUDA's bicubic backward has no deterministic kernel
        else:
            grid = F.interpolate(grid, size=(gh, gw), mode="bicubic", align_corners=False)
        return grid.flatten(2).transpose(1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        if h % 16 or w % 16:
            raise ValueError(f"TransUNet needs sides divisible by 16, got {h}x{w}")
        cnn = self.vit.patch_embed.backbone
        stem = cnn.stem.norm(cnn.stem.conv(x))  # 64 @ 1/2
        s0 = cnn.stages[0](cnn.stem.pool(stem))  # 256 @ 1/4
        s1 = cnn.stages[1](s0)  # 512 @ 1/8
        feat = self.vit.patch_embed.proj(cnn.stages[2](s1))  # 768 @ 1/16
        gh, gw = feat.shape[-2:]
        tokens = feat.flatten(2).transpose(1, 2) + self.pos_embed(gh, gw)
        tokens = self.vit.norm(self.vit.blocks(self.vit.norm_pre(self.vit.pos_drop(tokens))))
        y = self.conv_more(tokens.transpose(1, 2).reshape(x.shape[0], -1, gh, gw))
        for block, skip in zip(self.blocks, (s1, s0, stem, None)):
            y = block(y, skip)
        return self.head(y)


@register(
    "transunet",
    kind="image",
    size_divisor=16,
    display_name="TransUNet",
    test_config={"frames": 3, "img_size": 64, "vit_depth": 1},
    paper_config={"frames": 10, "img_size": 224},
)
def build_transunet(
    *,
    frames: int,
    num_classes: int = 4,
    in_channels: int = 1,
    img_size: int = 224,
    clip_mode: str = "stack",
    dropout: float = 0.1,
    vit_depth: int = 12,
    ce_weight: float = 0.5,
    dice_weight: float = 0.5,
) -> nn.Module:
    """TransUNet R50-ViT-B/16 reading the clip by ``clip_mode`` (stack: the root conv takes T channels).

    ``vit_depth`` (12 in the original) is lowered only by the smoke profile's hint, to keep tests small.
    """
    net = TransUNet(image_in_channels(clip_mode, frames, in_channels), num_classes, dropout, vit_depth)
    return WeightedLossClipAdapter(net, clip_mode, ce_weight, dice_weight)
