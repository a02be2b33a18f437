"""How an image (2-D) network reads a clip: ``stack``, ``frame`` or ``mean`` (baselines reference).

* ``stack`` (default): the T frames become input channels.
* ``frame``: only frame T//2 is used.
* ``mean``: each frame runs separately and the per-frame probabilities are averaged
  (returned as log-probabilities, so softmax of the output is the mean probability).
"""
from __future__ import annotations

import torch
import torch.nn as nn

from ssnet.models.base import SegOutput, as_output
from ssnet.models.losses import ce_dice_loss

CLIP_MODES = ("stack", "frame", "mean")


def image_in_channels(clip_mode: str, frames: int, in_channels: int = 1) -> int:
    """Input channels of the 2-D network for ``clip_mode``."""
    if clip_mode not in CLIP_MODES:
        raise ValueError(f"unknown clip_mode {clip_mode!r}; available: {', '.join(CLIP_MODES)}")
    return frames * in_channels if clip_mode == "stack" else in_channels


def average_frame_probabilities(frame_logits: torch.Tensor, eval_frame: int | None = None) -> torch.Tensor:
    """Clip prediction from per-frame logits ``(B, T, K, H, W)``: log of the mean per-frame probability.

    With ``eval_frame`` set, only that frame's probabilities are used (negative indices count from
    the end). The result ``(B, K, H, W)`` is a log-probability, so ``softmax`` of it is the
    averaged probability and its arg-max is the clip's label map (baselines reference, "One mask
    per clip").
    """
    if frame_logits.dim() != 5:
        raise ValueError(f"expected per-frame logits (B, T, K, H, W), got shape {tuple(frame_logits.shape)}")
    probs = frame_logits.float().softmax(2)
    probs = probs[:, eval_frame] if eval_frame is not None else probs.mean(1)
    return probs.clamp_min(1e-8).log()


class ImageClipAdapter(nn.Module):
    """Wrap a 2-D segmentation network ``(B, C, H, W) → (B, K, H, W)`` to take clips ``(B, T, C, H, W)``."""

    def __init__(self, net: nn.Module, clip_mode: str = "stack") -> None:
        super().__init__()
        image_in_channels(clip_mode, 1)  # validates
        self.net = net
        self.clip_mode = clip_mode

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        b, t, c, h, w = frames.shape
        if self.clip_mode == "stack":
            return self.net(frames.reshape(b, t * c, h, w))
        if self.clip_mode == "frame":
            return self.net(frames[:, t // 2])
        logits = self.net(frames.reshape(b * t, c, h, w))
        return average_frame_probabilities(logits.reshape(b, t, *logits.shape[1:]))


class WeightedLossClipAdapter(ImageClipAdapter):
    """:class:`ImageClipAdapter` with the method's own loss: ``ce_weight``·CE + ``dice_weight``·Dice.

    The engine calls :meth:`loss` when a model has one (TransUNet: 0.5/0.5; SwinUNETR: 1/1).
    """

    def __init__(self, net: nn.Module, clip_mode: str = "stack", ce_weight: float = 1.0, dice_weight: float = 1.0) -> None:
        super().__init__(net, clip_mode)
        self.ce_weight = float(ce_weight)
        self.dice_weight = float(dice_weight)

    def loss(self, output: torch.Tensor | SegOutput, target: torch.Tensor) -> torch.Tensor:
        """Weighted CE + Dice of the clip logits ``(B, K, H, W)`` against ``target`` ``(B, H, W)``."""
        return ce_dice_loss(as_output(output).logits, target, self.ce_weight, self.dice_weight)


def smp_clip_model(
    arch: str,
    *,
    frames: int,
    num_classes: int,
    in_channels: int,
    backbone: str,
    clip_mode: str,
    encoder_weights: str | None,
) -> ImageClipAdapter:
    """An smp architecture (``"Unet"``, ``"UnetPlusPlus"``, …) reading a clip by ``clip_mode``.

    Random initialisation (smp's hub weights are never requested); ``encoder_weights`` may name a
    local state-dict file for the encoder.
    """
    import segmentation_models_pytorch as smp

    from ssnet.models.pretrained import load_local_encoder_weights

    net = getattr(smp, arch)(
        backbone, encoder_weights=None, in_channels=image_in_channels(clip_mode, frames, in_channels), classes=num_classes
    )
    if encoder_weights:
        load_local_encoder_weights(net.encoder, encoder_weights)
    return ImageClipAdapter(net, clip_mode)
