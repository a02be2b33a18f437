"""DPSTT (Li et al., MICCAI 2022): STM with a patch-wise temporal read and a spatial read, fused.

Written from the baselines reference (no code copied). Encoders and STM decoder as AFB-URR,
without its refinement, and no in-model normalisation. Three key/value heads: memory,
query-temporal and query-spatial.

* **Temporal read**: the r4 map (14×14 at 224) is split into 2×2 patches (7×7) and each query
  patch attends only to the same patch in every memory frame (:func:`patch_memory_read`, any
  square map divisible into 2×2 patches).
* **Spatial read**: all positions of the most recent memory frame.
* **Fusion**: [temporal read ⊕ temporal query value, spatial read ⊕ spatial query value]
  (2048 channels at ResNet-50) → 1×1 → 1024, BN, ReLU → 3×3 → 1024, BN, ReLU → STM decoder.
* **Memory selection**: in evaluation the temporal read keeps the ``memory_topk`` (5; the
  original's k is unreleased) memory frames of highest mean cosine similarity to the query.
* Square frames are required (the original reshapes keys with √HW): checked with a clear error;
  sides must be divisible by 32 so the 1/16 map splits into 2×2 patches.

Protocol: every class, background included, is one object; frame 0 is memorised with an
**empty mask** (background = 1), frames 1…T−1 are segmented in order (forward pass only; the
original's backward/union pass starts from ground truth and is not reproduced) and each is
memorised with its own soft prediction. Training adds the cycle-consistency term: frame 0 is
re-segmented from each frame's memory and supervised with the clip mask. Loss: bootstrapped CE
(hardest 40 % of pixels) + soft-IoU, on every segmented frame and every cycle prediction.

Deviations (documented): random initialisation, BatchNorm in train mode, a learned per-object
identity in the memory stem (``object_embedding``, K × 64 parameters; the empty seed leaves the
foreground objects interchangeable), and bias-free fusion convolutions (each is followed by BN).
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ssnet.models.base import SegOutput
from ssnet.models.clip_modes import average_frame_probabilities
from ssnet.models.stm import (
    KeyValue,
    StmDecoder,
    StmEncoder,
    aggregate_objects,
    bootstrapped_cross_entropy,
    check_clip,
    empty_mask,
    frames_target,
    memory_read,
    patch_memory_read,
    repeat_objects,
    segmented_index,
    select_memory_frames,
    soft_iou_loss,
    stm_widths,
)
from ssnet.registry import register

MIN_FRAMES = 2  # frame 0 seeds the memory; at least one frame is segmented
SIZE_DIVISOR = 32  # r4 at 1/16, split into 2x2 patches


class Dpstt(nn.Module):
    """DPSTT for square clips ``(B, T, C, H, W)`` → :class:`SegOutput` with clip log-probabilities ``(B, K, H, W)``.

    Args:
        num_classes: K (= objects, background included).
        in_channels: clip channels (grey 1 is repeated ×3 for the RGB-shaped stems).
        backbone: ResNet of both trunks (cut after layer3); widths derive from it.
        encoder_weights: optional local ResNet state dict for both trunks.
        memory_topk: memory frames kept for the temporal read in evaluation (5; None keeps all).
        topk_in_training: also select the top-k memory frames during training (default: test time only).
        patch_grid: patches per side of the temporal read (2).
        cycle_weight: weight of the cycle-consistency term (training only; 0 disables it).
        bootstrap_top: fraction of hardest pixels of the bootstrapped CE (0.4).
        detach_memory: False (default) back-propagates through the memory and the memorised soft
            predictions over the whole clip; True detaches every memorised key, value and mask.
        object_embedding: learned per-object identity in the memory stem (see module docstring).
        eval_frame: clip frame whose probabilities form the clip prediction (None: mean over frames 1…T−1).
    """

    def __init__(
        self,
        *,
        num_classes: int = 4,
        in_channels: int = 1,
        backbone: str = "resnet50",
        encoder_weights: str | None = None,
        memory_topk: int | None = 5,
        topk_in_training: bool = False,
        patch_grid: int = 2,
        cycle_weight: float = 1.0,
        bootstrap_top: float = 0.4,
        detach_memory: bool = False,
        object_embedding: bool = True,
        eval_frame: int | None = None,
    ) -> None:
        super().__init__()
        w = stm_widths(backbone)
        self.num_objects = num_classes
        self.memory_encoder = StmEncoder(
            backbone, in_channels, memory=True, num_objects=num_classes, object_embedding=object_embedding, weights=encoder_weights
        )
        self.query_encoder = StmEncoder(backbone, in_channels, weights=encoder_weights)
        self.kv_memory = KeyValue(w["r4"], w["key"], w["value"])
        self.kv_query_temporal = KeyValue(w["r4"], w["key"], w["value"])
        self.kv_query_spatial = KeyValue(w["r4"], w["key"], w["value"])
        fused = 2 * w["value"]  # 1024 at ResNet-50
        self.fusion = nn.Sequential(
            nn.Conv2d(2 * fused, fused, 1, bias=False),
            nn.BatchNorm2d(fused),
            nn.ReLU(inplace=True),
            nn.Conv2d(fused, fused, 3, padding=1, bias=False),
            nn.BatchNorm2d(fused),
            nn.ReLU(inplace=True),
        )
        self.decoder = StmDecoder(fused, w["r3"], w["r2"], w["decoder"])
        self.memory_topk, self.topk_in_training, self.patch_grid = memory_topk, topk_in_training, patch_grid
        self.cycle_weight, self.bootstrap_top = cycle_weight, bootstrap_top
        self.detach_memory = detach_memory
        self.eval_frame = eval_frame

    def memorise(self, frame: torch.Tensor, probs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Memory key ``(B·K, C_k, h, w)`` and value ``(B·K, C_v, h, w)`` of ``frame`` with masks ``probs (B, K, H, W)``."""
        if self.detach_memory:
            probs = probs.detach()
        r4 = self.memory_encoder(frame, probs.reshape(-1, 1, *probs.shape[-2:]))[3]  # frame stem shared by the K objects
        key, value = self.kv_memory(r4)
        return (key.detach(), value.detach()) if self.detach_memory else (key, value)

    def encode_query(self, frame: torch.Tensor) -> dict[str, torch.Tensor]:
        """Query features of ``frame (B, C, H, W)``: temporal and spatial key/value repeated per object,
        skips ``r2``/``r3`` once per clip (the decoder runs their branch once and repeats it per object)."""
        k = self.num_objects
        _, r2, r3, r4 = self.query_encoder(frame)
        kt, vt = self.kv_query_temporal(r4)
        ks, vs = self.kv_query_spatial(r4)
        feats = {"kt": kt, "vt": vt, "ks": ks, "vs": vs}
        return {"r2": r2, "r3": r3} | {name: repeat_objects(x, k) for name, x in feats.items()}

    def segment(self, query: dict[str, torch.Tensor], keys: list[torch.Tensor], values: list[torch.Tensor], size: tuple[int, int]) -> torch.Tensor:
        """Class logits ``(B, K, H, W)`` of the query from memory frames ``keys``/``values`` (oldest first)."""
        mem_key, mem_value = torch.stack(keys, 1), torch.stack(values, 1)  # (B·K, T_m, C, h, w)
        if self.memory_topk is not None and (self.topk_in_training or not self.training):
            mem_key, mem_value = select_memory_frames(mem_key, mem_value, query["kt"], self.memory_topk)
        temporal = patch_memory_read(mem_key, mem_value, query["kt"], self.patch_grid)
        n, cv, h, w = temporal.shape
        spatial, _ = memory_read(keys[-1].flatten(2), values[-1].flatten(2), query["ks"].flatten(2))
        x = torch.cat([temporal, query["vt"], spatial.reshape(n, cv, h, w), query["vs"]], 1)
        pair = self.decoder(self.fusion(x), query["r3"], query["r2"])
        pair = F.interpolate(pair, size=size, mode="bilinear", align_corners=False)
        return aggregate_objects(pair, self.num_objects)

    def forward(self, frames: torch.Tensor) -> SegOutput:
        """Args: frames ``(B, T, C, H, W)``, T ≥ 2, H = W divisible by 32.

        Returns:
            :class:`SegOutput` with ``logits`` the log mean probability ``(B, K, H, W)`` and ``aux``:
            ``frame_logits (B, T−1, K, H, W)`` (frames 1…T−1) and, in training with a cycle
            weight, ``cycle_logits (B, T−1, K, H, W)`` (frame 0 re-segmented from frame t's memory).
        """
        check_clip(frames, "dpstt", MIN_FRAMES, SIZE_DIVISOR, square=True)
        b, t, _, h, w = frames.shape
        index = segmented_index(self.eval_frame, t)
        cycle = self.training and self.cycle_weight > 0
        key0, value0 = self.memorise(frames[:, 0], empty_mask(b, self.num_objects, h, w, frames))
        keys, values = [key0], [value0]
        query0 = self.encode_query(frames[:, 0]) if cycle else None
        logits, cycle_logits = [], []
        for i in range(1, t):
            frame_logits = self.segment(self.encode_query(frames[:, i]), keys, values, (h, w))
            logits.append(frame_logits)
            if i < t - 1 or cycle:
                key, value = self.memorise(frames[:, i], frame_logits.softmax(1))
                keys.append(key)
                values.append(value)
                if query0 is not None:
                    cycle_logits.append(self.segment(query0, [key], [value], (h, w)))
        frame_logits = torch.stack(logits, 1)
        aux = {"frame_logits": frame_logits}
        if cycle_logits:
            aux["cycle_logits"] = torch.stack(cycle_logits, 1)
        return SegOutput(average_frame_probabilities(frame_logits, index), aux)

    def frame_loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Bootstrapped CE + soft-IoU of per-frame logits ``(B, T', K, H, W)`` against the clip mask ``(B, H, W)``."""
        flat, tgt = logits.flatten(0, 1), frames_target(target, logits.shape[1])
        return bootstrapped_cross_entropy(flat, tgt, self.bootstrap_top) + soft_iou_loss(flat, tgt)

    def loss(self, output: SegOutput, target: torch.Tensor) -> torch.Tensor:
        """Frame loss on every segmented frame, plus ``cycle_weight`` × the same loss on the cycle predictions."""
        loss = self.frame_loss(output.aux["frame_logits"], target)
        if "cycle_logits" in output.aux:
            loss = loss + self.cycle_weight * self.frame_loss(output.aux["cycle_logits"], target)
        return loss


@register(
    "dpstt",
    kind="video",
    display_name="DPSTT",
    min_frames=MIN_FRAMES,
    size_divisor=SIZE_DIVISOR,
    test_config={"frames": 4, "img_size": 64, "backbone": "resnet18"},
    paper_config={"frames": 10, "img_size": 224},
)
def build_dpstt(
    *,
    frames: int,
    num_classes: int = 4,
    in_channels: int = 1,
    img_size: int = 224,
    backbone: str = "resnet50",
    encoder_weights: str | None = None,
    memory_topk: int | None = 5,
    topk_in_training: bool = False,
    patch_grid: int = 2,
    cycle_weight: float = 1.0,
    bootstrap_top: float = 0.4,
    detach_memory: bool = False,
    object_embedding: bool = True,
    eval_frame: int | None = None,
) -> nn.Module:
    """DPSTT with every class as an object; see :class:`Dpstt` (``frames``/``img_size`` are checked per clip)."""
    if eval_frame is not None:
        segmented_index(eval_frame, frames)
    if (img_size // 16) % patch_grid:
        raise ValueError(f"dpstt: the 1/16 map of a {img_size} image does not split into {patch_grid}x{patch_grid} patches")
    return Dpstt(
        num_classes=num_classes,
        in_channels=in_channels,
        backbone=backbone,
        encoder_weights=encoder_weights,
        memory_topk=memory_topk,
        topk_in_training=topk_in_training,
        patch_grid=patch_grid,
        cycle_weight=cycle_weight,
        bootstrap_top=bootstrap_top,
        detach_memory=detach_memory,
        object_embedding=object_embedding,
        eval_frame=eval_frame,
    )
