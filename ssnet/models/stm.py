"""Shared blocks of the STM-family memory baselines (AFB-URR, DPSTT), written from the baselines reference.

Geometry at ResNet-50 (widths derive from the trunk; ResNet-18/34 halve or quarter them):

======================  ==============================  ===========================
block                   resnet50                        resnet18/34
======================  ==============================  ===========================
r1 (1/2, stem)          64                              64
r2 (1/4, layer1)        256                             64
r3 (1/8, layer2)        512                             128
r4 (1/16, layer3)       1024                            256
key / value             128 / 512 (= r4/8, r4/2)        32 / 128
decoder width           256 (= r4/4)                    64
======================  ==============================  ===========================

* :class:`StmEncoder`: a ResNet trunk cut after layer3. The *memory* encoder adds 7×7 stride-2
  convolutions of the object mask and of its complement to the frame stem. The stem keeps
  torchvision's RGB shape (3 input channels) and a grey frame is repeated ×3 (baselines reference,
  "Common protocol"), so a local torchvision state dict loads unchanged.
* Every class, background included, is one "object": ``N = B·K`` memory streams per clip.
  With the empty-mask seed all foreground objects start from the same (all-zero) mask, so
  without an identity they would stay interchangeable forever; ``object_embedding`` (default on,
  a documented deviation: K × 64 parameters) adds a learned per-object vector to the memory stem.
* :class:`KeyValue`: 3×3 key and value convolutions; :func:`memory_read`: STM's read,
  ``softmax_M(kᵀq/√C_k)`` over memory positions.
* :class:`StmDecoder`: conv r4 → width, ResBlock, refine steps with r3 and r2, 2-channel logits
  at 1/4 per object; :func:`aggregate_objects` turns per-object foreground probabilities into
  K-class logits (STM's soft aggregation).
* :class:`FeatureBank`: AFB-URR's adaptive feature bank, tensor-only (runs on the meta device).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from torchvision.models import resnet

from ssnet.models.pretrained import load_local_encoder_weights

STM_BACKBONES: dict[str, tuple[int, int, int, int]] = {
    "resnet18": (64, 64, 128, 256),
    "resnet34": (64, 64, 128, 256),
    "resnet50": (64, 256, 512, 1024),
}


def stem_channels(in_channels: int) -> int:
    """Input channels of the RGB-shaped stem: a grey clip (1 channel) is repeated ×3."""
    return 3 if in_channels == 1 else in_channels


def to_stem_input(x: torch.Tensor) -> torch.Tensor:
    """Repeat a grey frame batch ``(N, 1, H, W)`` to three channels; other channel counts pass through."""
    return x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x


class _Trunk(nn.Module):
    """torchvision ResNet ``conv1`` … ``layer3`` (names kept so torchvision state dicts load)."""

    def __init__(self, backbone: str, in_channels: int) -> None:
        super().__init__()
        net = getattr(resnet, backbone)(weights=None)
        if in_channels != 3:
            net.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
            nn.init.kaiming_normal_(net.conv1.weight, mode="fan_out", nonlinearity="relu")
        self.conv1, self.bn1, self.relu, self.maxpool = net.conv1, net.bn1, net.relu, net.maxpool
        self.layer1, self.layer2, self.layer3 = net.layer1, net.layer2, net.layer3


class StmEncoder(nn.Module):
    """ResNet trunk cut after layer3; with ``memory=True`` also the mask / complement stems.

    Args:
        backbone: ``resnet18``, ``resnet34`` or ``resnet50``.
        in_channels: channels of the clip (1 = grey, repeated ×3 for the RGB-shaped stem).
        memory: add the 7×7 stride-2 mask and complement convolutions (memory encoder).
        num_objects: objects (= classes) for the optional identity embedding.
        object_embedding: add a learned ``(K, 64)`` per-object vector after the memory stem.
        weights: optional local torchvision-style ResNet state dict (``layer4``/``fc`` ignored).
    """

    def __init__(
        self,
        backbone: str = "resnet50",
        in_channels: int = 1,
        *,
        memory: bool = False,
        num_objects: int = 4,
        object_embedding: bool = False,
        weights: str | Path | None = None,
    ) -> None:
        super().__init__()
        if backbone not in STM_BACKBONES:
            raise ValueError(f"unknown backbone {backbone!r}; available: {', '.join(STM_BACKBONES)}")
        self.channels = STM_BACKBONES[backbone]
        self.trunk = _Trunk(backbone, stem_channels(in_channels))
        if weights is not None:
            load_local_encoder_weights(self.trunk, weights)
        self.memory = memory
        self.num_objects = num_objects
        if memory:
            self.conv_mask = nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3, bias=False)
            self.conv_bg = nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.object_embedding = None
        if memory and object_embedding:  # small random init: the objects differ from the first step
            self.object_embedding = nn.Parameter(torch.empty(num_objects, 64))
            nn.init.normal_(self.object_embedding, std=0.1)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> list[torch.Tensor]:
        """Encode frames.

        Args:
            x: ``(N, C, H, W)`` frames. For the memory encoder ``x`` may also be given once per clip,
                ``(B, C, H, W)`` with ``N = B·K`` masks: the frame stem is then computed once and
                repeated per object (object-major, as :func:`repeat_objects`), the same result as
                encoding the repeated frames at 1/K of the stem cost.
            mask: ``(N, 1, H, W)`` soft object masks in [0, 1] (memory encoder only); ``N = B·K``,
                object-major within a clip.

        Returns:
            ``[r1, r2, r3, r4]`` at 1/2, 1/4, 1/8, 1/16.
        """
        t = self.trunk
        f = t.conv1(to_stem_input(x))
        if self.memory:
            if mask is None:
                raise ValueError("the memory encoder needs a mask")
            if mask.shape[0] != f.shape[0]:
                f = repeat_objects(f, mask.shape[0] // f.shape[0])
            f = f + self.mask_stem(mask)
            if self.object_embedding is not None:
                emb = self.object_embedding.repeat(f.shape[0] // self.num_objects, 1)
                f = f + emb[:, :, None, None]
        r1 = t.relu(t.bn1(f))
        r2 = t.layer1(t.maxpool(r1))
        r3 = t.layer2(r2)
        r4 = t.layer3(r3)
        return [r1, r2, r3, r4]

    def mask_stem(self, mask: torch.Tensor) -> torch.Tensor:
        """``conv_mask(mask) + conv_bg(1 − mask)`` as one convolution of the stacked pair (same sum, one call)."""
        weight = torch.cat([self.conv_mask.weight, self.conv_bg.weight], 1)
        conv = self.conv_mask
        return F.conv2d(torch.cat([mask, 1.0 - mask], 1), weight, None, conv.stride, conv.padding)


class KeyValue(nn.Module):
    """3×3 key and value projections of an r4 map: ``(N, C, h, w) → (N, C_k, h, w), (N, C_v, h, w)``."""

    def __init__(self, in_channels: int, key_dim: int, value_dim: int) -> None:
        super().__init__()
        self.key = nn.Conv2d(in_channels, key_dim, 3, padding=1)
        self.value = nn.Conv2d(in_channels, value_dim, 3, padding=1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.key(x), self.value(x)


def memory_read(
    mem_key: torch.Tensor, mem_value: torch.Tensor, query_key: torch.Tensor, valid: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """STM memory read: each query position takes a softmax-weighted mean of memory values.

    Args:
        mem_key: ``(N, C_k, M)`` memory keys.
        mem_value: ``(N, C_v, M)`` memory values.
        query_key: ``(N, C_k, Q)`` query keys.
        valid: optional ``(N, M)`` bool; invalid memory positions get zero weight.

    Returns:
        ``(read (N, C_v, Q), weights (N, M, Q))``; weights sum to one over M.
    """
    logits = torch.einsum("nkm,nkq->nmq", mem_key, query_key) / math.sqrt(mem_key.shape[1])
    if valid is not None:
        logits = logits.masked_fill(~valid[:, :, None], torch.finfo(logits.dtype).min)
    weights = logits.softmax(dim=1)
    return torch.einsum("nvm,nmq->nvq", mem_value, weights), weights


class ResBlock(nn.Module):
    """STM's residual block: ``x + conv(relu(conv(relu(x))))`` (3×3, width kept)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.relu(self.conv1(F.relu(x))))


class Refine(nn.Module):
    """STM's refine step: skip conv + ResBlock, add the upsampled coarser map, ResBlock."""

    def __init__(self, skip_channels: int, width: int) -> None:
        super().__init__()
        self.conv_skip = nn.Conv2d(skip_channels, width, 3, padding=1)
        self.res_skip = ResBlock(width)
        self.res_out = ResBlock(width)

    def forward(self, skip: torch.Tensor, coarse: torch.Tensor) -> torch.Tensor:
        """Args: ``skip (B, C_s, h, w)`` or ``(B·K, …)``, ``coarse (B·K, width, h', w')``.

        A skip given once per clip (the query features are shared by the K objects) runs the skip
        branch once and is repeated per object afterwards: the same result at 1/K of the cost.
        """
        s = self.res_skip(self.conv_skip(skip))
        if s.shape[0] != coarse.shape[0]:
            s = repeat_objects(s, coarse.shape[0] // s.shape[0])
        return self.res_out(s + F.interpolate(coarse, size=s.shape[-2:], mode="bilinear", align_corners=False))


class StmDecoder(nn.Module):
    """STM decoder: conv r4-read → width, ResBlock, refine with r3 and r2, 2-channel logits at 1/4.

    Args:
        in_channels: channels of the read map at 1/16 (read ⊕ query value).
        r3_channels, r2_channels: skip widths (512, 256 at ResNet-50).
        width: decoder width (256 at ResNet-50).
    """

    def __init__(self, in_channels: int, r3_channels: int, r2_channels: int, width: int) -> None:
        super().__init__()
        self.conv_in = nn.Conv2d(in_channels, width, 3, padding=1)
        self.res_in = ResBlock(width)
        self.refine3 = Refine(r3_channels, width)
        self.refine2 = Refine(r2_channels, width)
        self.pred = nn.Conv2d(width, 2, 3, padding=1)

    def forward(self, x: torch.Tensor, r3: torch.Tensor, r2: torch.Tensor) -> torch.Tensor:
        """Args: x ``(N, C, h, w)`` at 1/16, r3 at 1/8, r2 at 1/4 (``N = B·K`` rows, or ``B`` rows shared
        by the K objects of each clip, see :class:`Refine`). Returns: ``(N, 2, H/4, W/4)`` logits."""
        m = self.res_in(self.conv_in(x))
        m = self.refine3(r3, m)
        m = self.refine2(r2, m)
        return self.pred(F.relu(m))


def aggregate_objects(pair_logits: torch.Tensor, num_objects: int) -> torch.Tensor:
    """Soft aggregation: per-object 2-channel logits ``(B·K, 2, H, W)`` → K-class logits ``(B, K, H, W)``.

    Each object's foreground probability ``p`` becomes the logit ``log(p / (1 − p))``; a softmax
    over the K objects of the result is the normalised class probability.
    """
    n, _, h, w = pair_logits.shape
    # log(p/(1-p)) with p = softmax(.)[1] equals the logit difference; clamped like STM's p clamp.
    logit = (pair_logits[:, 1] - pair_logits[:, 0]).clamp(-16.0, 16.0)
    return logit.reshape(n // num_objects, num_objects, h, w)


def repeat_objects(x: torch.Tensor, num_objects: int) -> torch.Tensor:
    """``(B, …) → (B·K, …)``, object-major within each clip (matches ``reshape(B, K, …)``)."""
    return x.repeat_interleave(num_objects, dim=0)


def shared_input_conv(conv: nn.Conv2d, shared: torch.Tensor, own: torch.Tensor) -> torch.Tensor:
    """``conv(cat([repeat_objects(shared, K), own], 1))`` with the shared input's share computed once per clip.

    A convolution is linear in its input channels, so the convolution of the concatenation is the
    sum of the two halves' convolutions (equal up to float rounding); the half that reads the
    per-clip ``shared (B, C_s, h, w)`` runs on B rows instead of ``B·K``.

    Args:
        conv: a zero-padded, ungrouped convolution with ``C_s + C_o`` input channels (shared first).
        shared: ``(B, C_s, h, w)`` features common to the K objects of each clip.
        own: ``(B·K, C_o, h, w)`` per-object features, object-major within a clip.
    """
    if conv.groups != 1 or conv.padding_mode != "zeros":
        raise ValueError("shared_input_conv needs an ungrouped, zero-padded convolution")
    cs = shared.shape[1]

    def part(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        return F.conv2d(x, weight, bias, conv.stride, conv.padding, conv.dilation)

    common = part(shared, conv.weight[:, :cs], None)
    return repeat_objects(common, own.shape[0] // shared.shape[0]) + part(own, conv.weight[:, cs:], conv.bias)


def empty_mask(batch: int, num_objects: int, height: int, width: int, like: torch.Tensor) -> torch.Tensor:
    """The empty-mask seed: background (object 0) = 1, every other object 0; ``(B, K, H, W)``."""
    seed = torch.zeros(batch, num_objects, height, width, dtype=like.dtype, device=like.device)
    return torch.cat([torch.ones_like(seed[:, :1]), seed[:, 1:]], dim=1)


def stm_widths(backbone: str) -> dict[str, int]:
    """Channel widths of the STM blocks derived from the trunk (key r4/8, value r4/2, decoder r4/4)."""
    if backbone not in STM_BACKBONES:
        raise ValueError(f"unknown backbone {backbone!r}; available: {', '.join(STM_BACKBONES)}")
    r1, r2, r3, r4 = STM_BACKBONES[backbone]
    return {"r1": r1, "r2": r2, "r3": r3, "r4": r4, "key": r4 // 8, "value": r4 // 2, "decoder": r4 // 4}


def patch_memory_read(
    mem_key: torch.Tensor, mem_value: torch.Tensor, query_key: torch.Tensor, grid: int = 2
) -> torch.Tensor:
    """DPSTT's temporal read: the square map is split into ``grid × grid`` patches and each query
    patch attends only to the same patch in every memory frame.

    Args:
        mem_key: ``(N, T_m, C_k, h, w)`` keys of the memory frames.
        mem_value: ``(N, T_m, C_v, h, w)`` values.
        query_key: ``(N, C_k, h, w)``; ``h == w`` and divisible by ``grid`` (14 → 2×2 patches of 7×7).

    Returns:
        ``(N, C_v, h, w)`` read.
    """
    n, t, ck, h, w = mem_key.shape
    cv = mem_value.shape[2]
    if h != w or h % grid:
        raise ValueError(f"patch memory read needs a square map divisible into {grid}x{grid} patches, got {h}x{w}")
    ph, pw = h // grid, w // grid

    def memory_patches(x: torch.Tensor, c: int) -> torch.Tensor:  # (N, T, c, h, w) -> (N·g², c, T·ph·pw)
        x = x.reshape(n, t, c, grid, ph, grid, pw).permute(0, 3, 5, 2, 1, 4, 6)
        return x.reshape(n * grid * grid, c, t * ph * pw)

    q = query_key.reshape(n, ck, grid, ph, grid, pw).permute(0, 2, 4, 1, 3, 5).reshape(n * grid * grid, ck, ph * pw)
    read, _ = memory_read(memory_patches(mem_key, ck), memory_patches(mem_value, cv), q)
    read = read.reshape(n, grid, grid, cv, ph, pw).permute(0, 3, 1, 4, 2, 5)
    return read.reshape(n, cv, h, w)


def select_memory_frames(mem_key: torch.Tensor, mem_value: torch.Tensor, query_key: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Keep the ``k`` memory frames most similar to the query (shape-only control flow).

    The score of a memory frame is the mean, over positions, of the cosine similarity between the
    query key and that frame's key at the same position.

    Args:
        mem_key: ``(N, T_m, C_k, h, w)``; mem_value: ``(N, T_m, C_v, h, w)``; query_key: ``(N, C_k, h, w)``.

    Returns:
        the selected keys and values, ``(N, min(k, T_m), C, h, w)``, in temporal order.
    """
    t = mem_key.shape[1]
    if k >= t:
        return mem_key, mem_value
    score = (F.normalize(mem_key, dim=2) * F.normalize(query_key, dim=1)[:, None]).sum(2).mean((2, 3))  # (N, T_m)
    idx = score.topk(k, dim=1).indices.sort(dim=1).values

    def pick(x: torch.Tensor) -> torch.Tensor:
        return x.gather(1, idx[:, :, None, None, None].expand(-1, -1, *x.shape[2:]))

    return pick(mem_key), pick(mem_value)


# --------------------------------------------------------------------------- adaptive feature bank


@dataclass
class FeatureBank:
    """AFB-URR's adaptive feature bank for ``N`` objects, with fixed-shape tensors.

    Slots are never compacted: each update appends ``P`` slots (one per new key) whose ``valid``
    flag is set only for keys that were not merged, so shapes depend on the number of updates
    only, never on data (the bank runs on the meta device and under FLOP counting).

    Attributes:
        keys: ``(N, S, C_k)``; values: ``(N, S, C_v)``.
        valid: ``(N, S)`` bool, the slots in use; ``slots()`` counts them.
        usage: ``(N, S)`` accumulated read weight of each slot (detached).
        age: ``(N, S)`` updates since the slot was created (≥ 1).
    """

    keys: torch.Tensor
    values: torch.Tensor
    valid: torch.Tensor
    usage: torch.Tensor
    age: torch.Tensor

    @classmethod
    def create(cls, keys: torch.Tensor, values: torch.Tensor) -> FeatureBank:
        """A bank holding ``keys (N, P, C_k)`` and ``values (N, P, C_v)``, every slot valid."""
        n, p = keys.shape[:2]
        ones = torch.ones(n, p, device=keys.device, dtype=torch.float32)
        return cls(keys, values, ones.bool(), torch.zeros_like(ones), ones)

    def slots(self) -> torch.Tensor:
        """Slots in use per object, ``(N,)`` int64."""
        return self.valid.sum(1)

    def read(self, query_key: torch.Tensor) -> torch.Tensor:
        """Read ``(N, C_v, Q)`` for ``query_key (N, C_k, Q)``; adds each slot's read weight to ``usage``."""
        out, weights = memory_read(self.keys.transpose(1, 2), self.values.transpose(1, 2), query_key, self.valid)
        self.usage = self.usage + weights.detach().sum(2).float()
        return out

    def update(
        self,
        keys: torch.Tensor,
        values: torch.Tensor,
        threshold: float = 0.95,
        rate: float = 0.1,
        budget: int | None = None,
    ) -> FeatureBank:
        """Absorb new ``keys (N, P, C_k)`` / ``values (N, P, C_v)``; returns the updated bank.

        A new key whose best cosine similarity to a valid slot exceeds ``threshold`` is merged into
        that slot: the mean of all new keys (and values) matched to a slot, computed with
        ``scatter_reduce(..., "mean", include_self=False)``, is blended in at ``rate``
        (``slot ← (1 − rate)·slot + rate·mean``). Every other key is appended. When the slot
        count would exceed ``budget``, the old slots with the lowest use frequency (usage / age)
        are evicted first (least-frequently-used); the number kept depends on shapes only.
        """
        n, s, ck = self.keys.shape
        p = keys.shape[1]
        if budget is not None and budget < p:
            raise ValueError(f"feature bank budget {budget} is smaller than one frame's {p} keys")
        sim = torch.einsum("nsc,npc->nps", F.normalize(self.keys, dim=-1), F.normalize(keys, dim=-1))
        sim = sim.masked_fill(~self.valid[:, None, :], -2.0)
        best, slot = sim.max(dim=2)  # (N, P)
        merge = best > threshold
        trash = torch.full_like(slot, s)  # unmatched keys are reduced into an extra, discarded slot
        index = torch.where(merge, slot, trash)

        hit = torch.zeros(n, s + 1, device=keys.device).scatter_add(1, index, merge.float())[:, :s] > 0

        def merged(bank: torch.Tensor, new: torch.Tensor) -> torch.Tensor:
            pad = torch.cat([bank, bank.new_zeros(n, 1, bank.shape[2])], 1)
            idx = index[:, :, None].expand(-1, -1, new.shape[2])
            mean = pad.scatter_reduce(1, idx, new.to(pad.dtype), "mean", include_self=False)[:, :s]
            return torch.where(hit[:, :, None], (1.0 - rate) * bank + rate * mean, bank)

        old_keys, old_values = merged(self.keys, keys), merged(self.values, values)
        old_valid, old_usage, old_age = self.valid, self.usage, self.age + 1.0
        if budget is not None and s + p > budget:  # static: depends on shapes only
            keep = budget - p
            score = (old_usage / old_age).masked_fill(~old_valid, -1.0)
            kept = score.topk(keep, dim=1).indices
            old_keys = old_keys.gather(1, kept[:, :, None].expand(-1, -1, ck))
            old_values = old_values.gather(1, kept[:, :, None].expand(-1, -1, old_values.shape[2]))
            old_valid, old_usage, old_age = old_valid.gather(1, kept), old_usage.gather(1, kept), old_age.gather(1, kept)
        ones = torch.ones(n, p, device=keys.device)
        return FeatureBank(
            torch.cat([old_keys, keys.to(old_keys.dtype)], 1),
            torch.cat([old_values, values.to(old_values.dtype)], 1),
            torch.cat([old_valid, ~merge], 1),
            torch.cat([old_usage, torch.zeros_like(ones)], 1),
            torch.cat([old_age, ones], 1),
        )


# --------------------------------------------------------------------------- losses


def soft_iou_loss(logits: torch.Tensor, target: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Soft-IoU (Jaccard) loss over all K classes: ``1 − Σ p·y / Σ (p + y − p·y)`` per image and class, mean.

    Args: logits ``(N, K, H, W)``; target ``(N, H, W)`` int64. Returns: scalar.
    """
    probs = logits.float().softmax(1)
    onehot = F.one_hot(target.long(), logits.shape[1]).permute(0, 3, 1, 2).to(probs.dtype)
    inter = (probs * onehot).sum((2, 3))
    union = (probs + onehot - probs * onehot).sum((2, 3))
    return (1.0 - (inter + eps) / (union + eps)).mean()


def bootstrapped_cross_entropy(logits: torch.Tensor, target: torch.Tensor, top: float = 0.4) -> torch.Tensor:
    """Cross-entropy over the hardest ``top`` fraction of pixels of each image.

    Args: logits ``(N, K, H, W)``; target ``(N, H, W)`` int64; top in (0, 1]. Returns: scalar.
    """
    ce = F.cross_entropy(logits.float(), target.long(), reduction="none").flatten(1)
    k = max(1, int(round(top * ce.shape[1])))
    return ce.topk(k, dim=1).values.mean()


def frames_target(target: torch.Tensor, frames: int) -> torch.Tensor:
    """The clip mask ``(B, H, W)`` repeated for every frame: ``(B·T, H, W)``."""
    return target.repeat_interleave(frames, dim=0)


def segmented_index(eval_frame: int | None, frames: int) -> int | None:
    """Index into the per-frame outputs of frames 1…T−1 for the clip frame ``eval_frame``.

    Frame 0 only seeds the memory (with the empty mask), so it has no prediction of its own;
    negative values count from the end of the clip.
    """
    if eval_frame is None:
        return None
    if not (1 <= eval_frame < frames or -frames < eval_frame < 0):
        raise ValueError(
            f"eval_frame {eval_frame} is not a segmented frame of a {frames}-frame clip "
            f"(frame 0 only seeds the memory; use 1…{frames - 1} or a negative index)"
        )
    return eval_frame - 1 if eval_frame > 0 else eval_frame


def check_clip(frames: torch.Tensor, name: str, min_frames: int, divisor: int, square: bool = False) -> None:
    """Raise a one-line ``ValueError`` unless ``frames`` is ``(B, T, C, H, W)`` with T ≥ ``min_frames``,
    sides divisible by ``divisor`` (and ``H == W`` when ``square``)."""
    if frames.dim() != 5:
        raise ValueError(f"{name} expects a clip (B, T, C, H, W), got shape {tuple(frames.shape)}")
    t, h, w = frames.shape[1], frames.shape[-2], frames.shape[-1]
    if t < min_frames:
        raise ValueError(f"{name} needs at least {min_frames} frames, got {t}")
    if h % divisor or w % divisor:
        raise ValueError(f"{name} needs image sides divisible by {divisor}, got {h}x{w}")
    if square and h != w:
        raise ValueError(f"{name} needs square frames (its keys are reshaped with sqrt(HW)), got {h}x{w}")
