"""AFB-URR (Liang et al., NeurIPS 2020): STM memory with an adaptive feature bank and uncertain-region refinement.

Written from the baselines reference (no code copied). Protocol for one-mask-per-clip MVO data:

* every class, background included, is one object (K memory streams per clip);
* the memory is seeded with an **empty mask** (background = 1) on frame 0, never the ground
  truth, at training and at test; frames 1…T−1 are then segmented in order and each one is
  memorised with its own soft prediction (recurrent propagation);
* the bank merges a new key into its best slot when their cosine similarity exceeds 0.95
  (``slot ← 0.9·slot + 0.1·mean of the matched new keys``), appends it otherwise, and evicts the
  least-frequently-used slots only over ``bank_budget``;
* uncertain-region refinement at 1/2: ``U = exp(1 − top1/top2)`` over the objects, a 7×7 local
  masked average of r1 as the reference, and a residual refiner ``p ← p + U·conf·refine``;
* loss: cross-entropy over the objects on every segmented frame (the clip mask) +
  0.5 × mean ``‖U‖₂/√(HW)``; object-free (MVO-negative) clips are trained on.
* clip prediction: the mean of the per-frame probabilities of frames 1…T−1, or ``eval_frame``.

Deviations (documented): random initialisation (``encoder_weights`` may name a local state dict),
BatchNorm in train mode, and a learned per-object identity (``object_embedding``, K × 64
parameters) because the empty seed leaves the foreground objects interchangeable.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ssnet.models.base import SegOutput
from ssnet.models.clip_modes import average_frame_probabilities
from ssnet.models.losses import cross_entropy
from ssnet.models.stm import (
    FeatureBank,
    KeyValue,
    ResBlock,
    StmDecoder,
    StmEncoder,
    aggregate_objects,
    check_clip,
    empty_mask,
    frames_target,
    repeat_objects,
    segmented_index,
    shared_input_conv,
    stm_widths,
)
from ssnet.registry import register

MIN_FRAMES = 2  # frame 0 seeds the memory; at least one frame is segmented
SIZE_DIVISOR = 16  # r4 at 1/16


def box_mean(x: torch.Tensor, window: int) -> torch.Tensor:
    """``window × window`` mean, stride 1, zero padding counted (= ``AvgPool2d(window, 1, window // 2)``).

    Computed as a depthwise convolution with a constant kernel, an order of magnitude faster than
    ``avg_pool2d`` with a large window on CPU (forward and backward); no parameters.
    """
    c = x.shape[1]
    kernel = x.new_full((c, 1, window, window), 1.0 / (window * window))
    return F.conv2d(x, kernel, padding=window // 2, groups=c)


class UncertainRegionRefiner(nn.Module):
    """URR at 1/2: local masked-average reference of r1 and a residual 2-channel refiner per object.

    Args:
        r1_channels: stem width (64).
        width: refiner width (32, as the original's local branch).
        window: side of the local window (7).
    """

    def __init__(self, r1_channels: int = 64, width: int = 32, window: int = 7) -> None:
        super().__init__()
        self.window = window
        self.max = nn.MaxPool2d(window, stride=1, padding=window // 2)
        self.conv = nn.Conv2d(2 * r1_channels, width, 3, padding=1)
        self.res = ResBlock(width)
        self.pred = nn.Conv2d(width, 2, 3, padding=1)

    def forward(self, pair_logits: torch.Tensor, r1: torch.Tensor, num_objects: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Refine per-object logits.

        Args:
            pair_logits: ``(B·K, 2, H/2, W/2)`` rough per-object logits.
            r1: ``(B, C1, H/2, W/2)`` query stem features, shared by the K objects of each clip.
            num_objects: K.

        Returns:
            refined ``(B·K, 2, H/2, W/2)`` logits and the uncertainty map ``U (B, 1, H/2, W/2)``.
        """
        seg = aggregate_objects(pair_logits, num_objects).softmax(1)  # (B, K, h, w), normalised over objects
        top = seg.topk(2, dim=1).values
        uncertainty = torch.exp(1.0 - top[:, :1] / (top[:, 1:2] + 1e-8))
        seg = seg.reshape(-1, 1, *seg.shape[-2:])
        masked = repeat_objects(r1, num_objects) * seg
        local = box_mean(masked, self.window) / (box_mean(seg, self.window) + 1e-8)  # 7x7 masked average: the neighbourhood reference
        confidence = self.max(seg)
        q = self.pred(F.relu(self.res(shared_input_conv(self.conv, r1, local)))) * confidence  # conv of [r1, local]
        return pair_logits + repeat_objects(uncertainty, num_objects) * q, uncertainty


class AfbUrr(nn.Module):
    """AFB-URR for clips ``(B, T, C, H, W)`` → :class:`SegOutput` with clip log-probabilities ``(B, K, H, W)``.

    Args:
        num_classes: K (= objects, background included).
        in_channels: clip channels (grey 1 is repeated ×3 for the RGB-shaped stems).
        backbone: ResNet of both trunks (cut after layer3); widths derive from it.
        encoder_weights: optional local ResNet state dict for both trunks.
        merge_threshold: cosine similarity above which a new key merges into a slot (0.95).
        merge_rate: blend rate of a merge (0.1; the reference allows 0.05–0.1).
        bank_budget: slots per object before LFU eviction (300,000; never reached by 30 frames at 14×14).
        detach_memory: False (default) back-propagates through the bank and the memorised soft
            predictions over the whole clip (full recurrence); True truncates the gradient at
            every memorisation (the bank holds detached keys and values).
        object_embedding: learned per-object identity in the memory stem (see module docstring).
        uncertainty_weight: weight of the uncertainty term (0.5).
        eval_frame: clip frame whose probabilities form the clip prediction (None: mean over frames 1…T−1).
    """

    def __init__(
        self,
        *,
        num_classes: int = 4,
        in_channels: int = 1,
        backbone: str = "resnet50",
        encoder_weights: str | None = None,
        merge_threshold: float = 0.95,
        merge_rate: float = 0.1,
        bank_budget: int | None = 300_000,
        detach_memory: bool = False,
        object_embedding: bool = True,
        uncertainty_weight: float = 0.5,
        eval_frame: int | None = None,
    ) -> None:
        super().__init__()
        w = stm_widths(backbone)
        self.num_objects = num_classes
        self.memory_encoder = StmEncoder(
            backbone, in_channels, memory=True, num_objects=num_classes, object_embedding=object_embedding, weights=encoder_weights
        )
        self.query_encoder = StmEncoder(backbone, in_channels, weights=encoder_weights)
        self.key_value = KeyValue(w["r4"], w["key"], w["value"])  # one head, shared by memory and query
        self.decoder = StmDecoder(2 * w["value"], w["r3"], w["r2"], w["decoder"])
        self.refiner = UncertainRegionRefiner(w["r1"])
        self.merge_threshold, self.merge_rate, self.bank_budget = merge_threshold, merge_rate, bank_budget
        self.detach_memory = detach_memory
        self.uncertainty_weight = uncertainty_weight
        self.eval_frame = eval_frame

    def memorise(self, frame: torch.Tensor, probs: torch.Tensor, bank: FeatureBank | None) -> FeatureBank:
        """Encode ``frame (B, C, H, W)`` with object masks ``probs (B, K, H, W)`` and add it to ``bank``."""
        if self.detach_memory:
            probs = probs.detach()
        r4 = self.memory_encoder(frame, probs.reshape(-1, 1, *probs.shape[-2:]))[3]  # frame stem shared by the K objects
        keys, values = self.key_value(r4)
        keys, values = keys.flatten(2).transpose(1, 2), values.flatten(2).transpose(1, 2)  # (B·K, hw, C)
        if self.detach_memory:
            keys, values = keys.detach(), values.detach()
        if bank is None:
            return FeatureBank.create(keys, values)
        return bank.update(keys, values, self.merge_threshold, self.merge_rate, self.bank_budget)

    def segment(self, frame: torch.Tensor, bank: FeatureBank) -> tuple[torch.Tensor, torch.Tensor]:
        """Segment ``frame (B, C, H, W)`` from ``bank``: class logits ``(B, K, H, W)`` and ``U (B, 1, H/2, W/2)``."""
        k = self.num_objects
        r1, r2, r3, r4 = self.query_encoder(frame)
        q_key, q_value = self.key_value(r4)
        h, w = r4.shape[-2:]
        read = bank.read(repeat_objects(q_key.flatten(2), k)).reshape(-1, q_value.shape[1], h, w)
        x = torch.cat([read, repeat_objects(q_value, k)], 1)
        pair = self.decoder(x, r3, r2)  # skips once per clip: their branch runs once, then is repeated per object
        pair = F.interpolate(pair, size=r1.shape[-2:], mode="bilinear", align_corners=False)
        pair, uncertainty = self.refiner(pair, r1, k)
        pair = F.interpolate(pair, size=frame.shape[-2:], mode="bilinear", align_corners=False)
        return aggregate_objects(pair, k), uncertainty

    def forward(self, frames: torch.Tensor) -> SegOutput:
        """Args: frames ``(B, T, C, H, W)``, T ≥ 2, sides divisible by 16.

        Returns:
            :class:`SegOutput` with ``logits`` the log mean probability ``(B, K, H, W)`` and ``aux``:
            ``frame_logits (B, T−1, K, H, W)`` (frames 1…T−1) and ``uncertainty (B, T−1)``
            (``‖U‖₂/√(HW)`` per frame).
        """
        check_clip(frames, "afb_urr", MIN_FRAMES, SIZE_DIVISOR)
        b, t, _, h, w = frames.shape
        index = segmented_index(self.eval_frame, t)
        bank = self.memorise(frames[:, 0], empty_mask(b, self.num_objects, h, w, frames), None)
        logits, norms = [], []
        for i in range(1, t):
            frame_logits, uncertainty = self.segment(frames[:, i], bank)
            logits.append(frame_logits)
            norms.append(uncertainty.flatten(1).norm(dim=1) / uncertainty[0, 0].numel() ** 0.5)
            if i < t - 1:
                bank = self.memorise(frames[:, i], frame_logits.softmax(1), bank)
        frame_logits = torch.stack(logits, 1)
        return SegOutput(
            average_frame_probabilities(frame_logits, index),
            {"frame_logits": frame_logits, "uncertainty": torch.stack(norms, 1)},
        )

    def loss(self, output: SegOutput, target: torch.Tensor) -> torch.Tensor:
        """CE over objects on every segmented frame (clip mask ``target (B, H, W)``) + 0.5 × uncertainty."""
        frame_logits = output.aux["frame_logits"]
        b, t = frame_logits.shape[:2]
        ce = cross_entropy(frame_logits.flatten(0, 1).float(), frames_target(target, t))
        return ce + self.uncertainty_weight * output.aux["uncertainty"].float().mean()


@register(
    "afb_urr",
    kind="video",
    display_name="AFB-URR",
    min_frames=MIN_FRAMES,
    size_divisor=SIZE_DIVISOR,
    test_config={"frames": 4, "img_size": 64, "backbone": "resnet18"},
    paper_config={"frames": 10, "img_size": 224},
)
def build_afb_urr(
    *,
    frames: int,
    num_classes: int = 4,
    in_channels: int = 1,
    img_size: int = 224,
    backbone: str = "resnet50",
    encoder_weights: str | None = None,
    merge_threshold: float = 0.95,
    merge_rate: float = 0.1,
    bank_budget: int | None = 300_000,
    detach_memory: bool = False,
    object_embedding: bool = True,
    uncertainty_weight: float = 0.5,
    eval_frame: int | None = None,
) -> nn.Module:
    """AFB-URR with every class as an object; see :class:`AfbUrr` (``frames``/``img_size`` are checked per clip)."""
    if eval_frame is not None:
        segmented_index(eval_frame, frames)
    return AfbUrr(
        num_classes=num_classes,
        in_channels=in_channels,
        backbone=backbone,
        encoder_weights=encoder_weights,
        merge_threshold=merge_threshold,
        merge_rate=merge_rate,
        bank_budget=bank_budget,
        detach_memory=detach_memory,
        object_embedding=object_embedding,
        uncertainty_weight=uncertainty_weight,
        eval_frame=eval_frame,
    )
