"""PNS+ (Ji et al., Machine Intelligence Research 2022): anchor frame + normalized self-attention.

Re-implemented from the baselines reference (no original code):

* **Encoder.** timm ``res2net50d`` (Res2Net-50 v1b, 26w×4s), random init or a local state dict,
  run up to layer3. The grey frame is repeated ×3 for the RGB stem. layer3 → LightRFB → 32 ch at
  1/16 ("high"), layer2 → LightRFB → 24 ch at 1/8 ("low"). layer4 and fc stay registered (as in
  the original, whose count includes them) but never run.
* **NS blocks** (:mod:`ssnet.models.ns_attention`). Global: query = anchor (frame 0), key/value =
  the local frames, dilations 3, 4, 3, 4. Local: on its own output, dilations 1, 2, 1, 2. Residuals:
  ``h1 = G(anchor, L) + L``, ``h2 = N(h1, h1) + h1``, ``high = h2 + L``. The query LayerNorm is
  ``[8, H/16, W/16]``, fixed by ``img_size`` at build time.
* **Decoder.** high upsampled to 1/8 and fused with low, 16 ch, then a K-class 1×1 head (the
  original's is binary) and bilinear upsampling ×8; one output per local frame.
* **Clip.** Anchor = frame 0; windows of ``window`` (5) consecutive frames slide over frames
  1…T−1 with stride ``window_stride`` (1; the last window always ends at frame T−1). With fewer
  than ``window`` local frames one window takes them all. Backbone and LightRFBs run once per
  frame; every window runs the NS blocks and decoder. A frame's probability is the mean over the
  windows that hold it; the clip's is the mean over frames (or the frame named by ``eval_frame``).
* **Loss.** The original's BCE (sigmoid per class) on the K-class one-hot clip mask, for every
  output frame of every window; ``loss="ce"`` uses cross-entropy instead.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from ssnet.errors import input_error
from ssnet.models.base import SegOutput
from ssnet.models.clip_modes import average_frame_probabilities
from ssnet.models.losses import cross_entropy
from ssnet.models.ns_attention import NSBlock
from ssnet.models.pretrained import read_state_dict
from ssnet.registry import register

LOSSES = ("bce", "ce")


def _conv_bn(
    cin: int, cout: int, k: int = 1, dilation: int = 1, groups: int = 1, act: nn.Module | None = None
) -> nn.Sequential:
    """Bias-free conv (``same`` padding), BatchNorm, optional activation."""
    layers: list[nn.Module] = [
        nn.Conv2d(cin, cout, k, padding=dilation * (k // 2), dilation=dilation, groups=groups, bias=False),
        nn.BatchNorm2d(cout, momentum=0.01),
    ]
    if act is not None:
        layers.append(act)
    return nn.Sequential(*layers)


class LightRFB(nn.Module):
    """Light receptive-field block: SE gate, 1×1 reduction, four depth-wise branches, 1×1 fusion.

    Branch 0 is 1×1 (PReLU) + depth-wise 3×3; branch ``i`` = 1, 2, 3 is depth-wise ``(2i+1)²``,
    1×1 (PReLU), depth-wise 3×3 of dilation ``2i+1``. The input and the four branches are
    concatenated and fused by 1×1 + BN + PReLU to ``channels_out``.
    """

    def __init__(self, channels_in: int, channels_mid: int = 128, channels_out: int = 32) -> None:
        super().__init__()
        m = channels_mid
        self.se = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Flatten(),
            nn.Linear(channels_in, channels_in // 4), nn.ReLU(inplace=True),
            nn.Linear(channels_in // 4, channels_in), nn.Hardsigmoid(),
        )
        self.reduce = _conv_bn(channels_in, m, act=nn.PReLU(m))
        branches = [nn.Sequential(_conv_bn(m, m, act=nn.PReLU()), _conv_bn(m, m, 3, groups=m))]
        for i in (1, 2, 3):
            branches.append(nn.Sequential(
                _conv_bn(m, m, 2 * i + 1, groups=m),
                _conv_bn(m, m, act=nn.PReLU()),
                _conv_bn(m, m, 3, dilation=2 * i + 1, groups=m),
            ))
        self.branches = nn.ModuleList(branches)
        self.fuse = _conv_bn(channels_in + 4 * m, channels_out, act=nn.PReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, channels_in, h, w) → (N, channels_out, h, w)``."""
        reduced = self.reduce(x * self.se(x)[:, :, None, None])
        return self.fuse(torch.cat([x, *(branch(reduced) for branch in self.branches)], dim=1))


class PNSDecoder(nn.Module):
    """Fuse high (1/16, upsampled) and low (1/8) features to 16 ch at 1/8, then a K-class 1×1 head."""

    def __init__(self, high: int = 32, low: int = 24, mid: int = 16, num_classes: int = 4) -> None:
        super().__init__()
        half = (mid + 1) // 2
        self.high_in = nn.Conv2d(high, mid, 1, bias=False)
        self.high_d1 = nn.Conv2d(half, half, 3, padding=1, bias=False)
        self.high_d2 = nn.Conv2d(mid - half, mid - half, 3, padding=2, dilation=2, bias=False)
        self.high_bn = nn.BatchNorm2d(mid)
        self.low = nn.Sequential(nn.Conv2d(low, mid, 1, bias=False), nn.BatchNorm2d(mid))
        self.act = nn.PReLU(mid)
        self.refine = nn.Sequential(nn.Conv2d(mid, mid, 3, padding=1, bias=False), nn.BatchNorm2d(mid), nn.PReLU())
        self.head = nn.Sequential(nn.Dropout2d(0.1), nn.Conv2d(mid, num_classes, 1, bias=False))

    def forward(self, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
        """``low (N, 24, h, w)``, ``high (N, 32, h/2, w/2)`` → logits ``(N, K, h, w)``."""
        high = F.interpolate(high, size=low.shape[-2:], mode="bilinear", align_corners=False)
        a, b = self.high_in(high).split([self.high_d1.in_channels, self.high_d2.in_channels], dim=1)
        high = self.high_bn(torch.cat([self.high_d1(a), self.high_d2(b)], dim=1))
        return self.head(self.refine(self.act(high + self.low(low))))


def window_starts(local_frames: int, window: int, stride: int = 1) -> list[int]:
    """Start indices (into the local frames) of the sliding windows; the last window ends at the last frame."""
    n = min(window, local_frames)
    starts = list(range(0, local_frames - n + 1, stride))
    if starts[-1] != local_frames - n:
        starts.append(local_frames - n)
    return starts


class PNSPlus(nn.Module):
    """PNS+ on a clip ``(B, T, C, H, W)``: anchor = frame 0, sliding windows over frames 1…T−1.

    Args:
        num_classes: K output classes.
        in_channels: input channels per frame (1 = grey, repeated ×3 for the RGB stem).
        img_size: square side H = W the model is built for (fixes the query LayerNorm).
        backbone: timm ResNet-style model (``res2net50d``; quick profiles may pass ``resnet18``).
        window: local frames per window (5).
        window_stride: step between windows (1).
        loss: ``bce`` (original) or ``ce``.
        eval_frame: clip frame (1…T−1, or negative from the end) whose probabilities form the
            clip prediction; ``None`` averages every local frame.
        encoder_weights: local timm-format state dict for the backbone; ``None`` = random init.
    """

    def __init__(
        self,
        num_classes: int = 4,
        in_channels: int = 1,
        img_size: int = 224,
        backbone: str = "res2net50d",
        window: int = 5,
        window_stride: int = 1,
        loss: str = "bce",
        eval_frame: int | None = None,
        encoder_weights: str | None = None,
    ) -> None:
        super().__init__()
        import timm

        if img_size % 16:
            raise ValueError(f"PNS+ needs an image side divisible by 16, got {img_size}")
        if loss not in LOSSES:
            raise ValueError(f"PNS+: unknown loss {loss!r}; available: {', '.join(LOSSES)}")
        if window < 1 or window_stride < 1:
            raise ValueError(f"PNS+: window and window_stride must be >= 1, got {window}, {window_stride}")
        if eval_frame == 0:
            raise ValueError("PNS+: eval_frame 0 is the anchor, which gets no prediction; use 1…T−1 or negative")
        self.num_classes, self.in_channels, self.img_size = num_classes, in_channels, img_size
        self.window, self.window_stride, self.loss_name, self.eval_frame = window, window_stride, loss, eval_frame
        self.encoder = timm.create_model(backbone, pretrained=False, in_chans=3 if in_channels == 1 else in_channels)
        if encoder_weights:
            _load_backbone(self.encoder, encoder_weights)
        chs = {info["module"]: info["num_chs"] for info in self.encoder.feature_info}
        self.high_rfb = LightRFB(chs["layer3"], 128, 32)
        self.low_rfb = LightRFB(chs["layer2"], 128, 24)
        feature = (img_size // 16, img_size // 16)
        self.ns_global = NSBlock(32, feature, heads=4, radius=3, dilations=(3, 4, 3, 4))
        self.ns_local = NSBlock(32, feature, heads=4, radius=3, dilations=(1, 2, 1, 2))
        self.decoder = PNSDecoder(32, 24, 16, num_classes)

    def unused_modules(self) -> list[nn.Module]:
        """Backbone modules that are registered but never run (layer4 and the classifier)."""
        return [m for name in ("layer4", "fc") if isinstance(m := getattr(self.encoder, name, None), nn.Module)]

    def _features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-frame ``(N, C, H, W)`` → (low 24 ch at 1/8, high 32 ch at 1/16)."""
        enc = self.encoder
        x = enc.maxpool(enc.act1(enc.bn1(enc.conv1(x))))
        low = enc.layer2(enc.layer1(x))
        high = enc.layer3(low)
        return self.low_rfb(low), self.high_rfb(high)

    def forward(self, frames: torch.Tensor) -> SegOutput:
        """Clip ``(B, T, C, H, W)`` → clip log-probabilities ``(B, K, H, W)``.

        ``aux["frame_logits"]`` holds every window's per-frame logits ``(B, windows·n, K, H, W)``
        (window-major), which :meth:`loss` supervises with the clip mask.
        """
        if frames.dim() != 5:
            raise ValueError(f"PNS+ expects a clip (B, T, C, H, W), got shape {tuple(frames.shape)}")
        b, t, c, h, w = frames.shape
        if t < 2:
            raise ValueError(f"PNS+ needs at least 2 frames (anchor + 1), got {t}")
        if (h, w) != (self.img_size, self.img_size):
            raise ValueError(f"PNS+ was built for {self.img_size}x{self.img_size} input (query LayerNorm); got {h}x{w}")
        if c != self.in_channels:
            raise ValueError(f"PNS+ was built for {self.in_channels} input channel(s), got {c}")
        x = frames.reshape(b * t, c, h, w)
        if c == 1:
            x = x.expand(-1, 3, -1, -1)  # grey → RGB stem
        low, high = self._features(x)
        low = low.view(b, t, *low.shape[1:])[:, 1:]
        high = high.view(b, t, *high.shape[1:])
        anchor, local = high[:, :1], high[:, 1:]

        starts = window_starts(t - 1, self.window, self.window_stride)
        n, nw = min(self.window, t - 1), len(starts)
        win_high = torch.stack([local[:, s:s + n] for s in starts], 1).flatten(0, 1)  # (B·W, n, 32, h/16, w/16)
        win_low = torch.stack([low[:, s:s + n] for s in starts], 1).flatten(0, 2)  # (B·W·n, 24, h/8, w/8)
        anchor = anchor.unsqueeze(1).expand(-1, nw, -1, -1, -1, -1).flatten(0, 1)  # (B·W, 1, 32, ...)

        h1 = self.ns_global(anchor, win_high) + win_high  # the anchor's output is shared by the n frames
        h2 = self.ns_local(h1, h1) + h1
        fused = (h2 + win_high).flatten(0, 1)
        logits = F.interpolate(self.decoder(win_low, fused), size=(h, w), mode="bilinear", align_corners=False)
        frame_logits = logits.view(b, nw * n, self.num_classes, h, w)

        # mean over the windows holding each local frame, then (in average_frame_probabilities) over frames
        weights = torch.zeros(t - 1, nw * n, device=frames.device)
        for i, s in enumerate(starts):
            weights[s:s + n, i * n:(i + 1) * n] += torch.eye(n, device=frames.device)
        weights = weights / weights.sum(1, keepdim=True)
        per_frame = torch.einsum("fk,bkchw->bfchw", weights, frame_logits.float().softmax(2))
        eval_index = self.eval_frame
        if eval_index is not None and eval_index > 0:
            eval_index -= 1  # clip frame → local frame
        if eval_index is not None and not -(t - 1) <= eval_index < t - 1:
            raise ValueError(f"PNS+: eval_frame {self.eval_frame} is outside frames 1…{t - 1}")
        clip = average_frame_probabilities(per_frame.clamp_min(1e-8).log(), eval_index)
        return SegOutput(clip, {"frame_logits": frame_logits})

    def loss(self, output: SegOutput, target: torch.Tensor) -> torch.Tensor:
        """BCE (or CE) of every window's per-frame logits against the clip mask ``target (B, H, W)``."""
        frame_logits = output.aux["frame_logits"].float()
        b, n, k = frame_logits.shape[:3]
        if target.shape != (b, *frame_logits.shape[-2:]):
            raise ValueError(f"PNS+ loss: target {tuple(target.shape)} does not match {tuple(frame_logits.shape)}")
        if self.loss_name == "ce":
            per_frame_target = target.long().unsqueeze(1).expand(-1, n, -1, -1).flatten(0, 1)
            return cross_entropy(frame_logits.flatten(0, 1), per_frame_target)
        onehot = F.one_hot(target.long(), k).permute(0, 3, 1, 2).unsqueeze(1).to(frame_logits.dtype)
        return F.binary_cross_entropy_with_logits(frame_logits, onehot.expand_as(frame_logits))


def _load_backbone(encoder: nn.Module, path: str | Path) -> None:
    """Load a local timm-format state dict into the backbone (``fc.*`` optional)."""
    own = encoder.state_dict()
    state = {k: v for k, v in read_state_dict(path).items() if k in own}
    missing = [k for k in own if k not in state and not k.startswith("fc.")]
    if missing:
        raise input_error(path, f"backbone weights lack {len(missing)} tensor(s), e.g. {missing[0]!r}")
    encoder.load_state_dict(state, strict=False)


@register(
    "pns_plus",
    kind="video",
    display_name="PNS+",
    min_frames=2,
    size_divisor=16,
    test_config={"frames": 4, "img_size": 64},
    paper_config={"frames": 10, "img_size": 224},
)
def build_pns_plus(
    *,
    frames: int,
    num_classes: int = 4,
    in_channels: int = 1,
    img_size: int = 224,
    backbone: str = "res2net50d",
    window: int = 5,
    window_stride: int = 1,
    loss: str = "bce",
    eval_frame: int | None = None,
    encoder_weights: str | None = None,
) -> nn.Module:
    """PNS+ with a K-class head; ``frames`` is only checked (any T >= 2 runs)."""
    if frames < 2:
        raise ValueError(f"PNS+ needs at least 2 frames (anchor + 1), got {frames}")
    return PNSPlus(
        num_classes, in_channels, img_size, backbone, window, window_stride, loss, eval_frame, encoder_weights
    )
