"""SSNet (Yu et al., MICCAI 2025): static + motion ResNet encoders, guided decoder, uncertainty refinement.

Follows ``shared/reference/ssnet-architecture.md``: the paper where it is explicit, the authors'
code where the paper is silent, every code-only behaviour an opt-in flag. Forward pass:

    R  = X − roll(X, −1, time)                      # residual frames, computed here
    F  = static_encoder(X),  F̃ = motion_encoder(R)  # five stages each, frame-wise
    F̂_k = TC_k(F_k)                                 # temporal convolution (learned pooling)
    skip_k = F̂_k + Σ_t Attn_{k,t}(F̂_k, F̃_{k,t})    # Eq. 1-2
    M  = head(UnetDecoder(skip))                    # coarse logits (B, K, H, W)
    logits = M + U·E                                # Eq. 3-6, softmax(logits) = Ŷ

Table 2 rows (``use_static``, ``use_motion``, ``fusion``, ``refinement``):

* static only: skip_k = TC_s(F_k)
* late fusion: skip_k = TC_s(F_k) + TC_m(F̃_k) (separate temporal convolutions)
* motion guided: skip_k = TC_m(F̃_k) + Σ_t Attn_t(TC_m(F̃_k), F̃_{k,t})
* no refinement / full: skip_k = F̂_k + Z_k, refinement off / on
"""
from __future__ import annotations


import torch
import torch.nn as nn
import torch.nn.functional as F
from segmentation_models_pytorch.decoders.unet.decoder import UnetDecoder

from ssnet.models.base import SegOutput
from ssnet.models.ssnet_attention import FUSION_OPS, Fusion, GuidedCrossAttention
from ssnet.models.ssnet_backbone import BACKBONES, ResNetTrunk
from ssnet.models.losses import multiclass_soft_dice_loss
from ssnet.models.ssnet_refinement import (
    REFINE_HEADS,
    UncertaintyRefiner,
    confidence_loss,
    uncertainty_map,
)
from ssnet.models.ssnet_temporal import build_temporal_convs
from ssnet.registry import register

DECODER_CHANNELS = (256, 128, 64, 32, 16)
_PROB_EPS = 1e-7


def residual_frames(frames: torch.Tensor) -> torch.Tensor:
    """R_i = X_i − X_{i+1}, cyclic (R_{T−1} = X_{T−1} − X_0). Args/returns ``(B, T, C, H, W)``."""
    return frames - torch.roll(frames, shifts=-1, dims=1)


def _logit(p: torch.Tensor) -> torch.Tensor:
    p = p.clamp(_PROB_EPS, 1.0 - _PROB_EPS)
    return torch.log(p) - torch.log1p(-p)


class SSNet(nn.Module):
    """Spatiotemporal-Sensitive Network (see the module docstring); the registry builder of ``ssnet``.

    Args:
        frames: T ≥ 2, fixed at build time (temporal-conv kernels, per-frame attention).
        num_classes: K (4: background, myocardium, infarct, MVO).
        in_channels: channels per frame (1, grey).
        img_size: input side; must be divisible by 32 (the model itself has no size-dependent weights).
        backbone: ``resnet50`` (paper), ``resnet34`` or ``resnet18`` (quick profile); widths follow it.
        use_static, use_motion, fusion, refinement: Table 2 switches (``fusion`` ∈ guided, late).
        attention: ``per_frame`` (one module per frame, as the code) or ``shared``.
        fusion_op: ``sum`` (Eq. 2) | ``prod`` | ``cat`` | ``weighted``.
        refine_head: ``k_logits`` (paper) | ``paired`` (the code's 2K head; only with refinement).
        reproduce_motion_defect: motion features = static encoder(X) (the code's defect).
        attn_norm: LayerNorm on each attention output (phase-2 code).
        conf_loss_without_refiner: keep L_u in the loss when refinement is off.
        alpha: Dice weight α of Eq. 7.
        encoder_weights: path of a local ResNet state dict for both encoders (None = random init).
        temporal: ``conv1d`` (the code) or ``conv3d`` (same maths).
        temporal_init: ``default`` (PyTorch's, as the code) or ``positive`` (non-negative pooling at
            initialisation, so no stage's query starts dead; see ssnet/models/ssnet_temporal.py).
        refiner_init: ``default`` (PyTorch's, as the code) or ``zero`` (the refiner's last convolution
            starts at zero: Ŷ = softmax(M) at the first step; see ssnet/models/ssnet_refinement.py).
        refiner_bound: ``none`` (paper) | ``tanh`` (f_l's similarity squashed to (−1, 1): |U·E| ≤ 1).
        refiner_gate: ``maxpool`` (Eq. 5) | ``none`` (E_i = f_l without the MaxPool₇(p_i) factor).
        detach_uncertainty: stop the gradient through U in Eq. 6 (M + U·E): the refinement then cannot
            change M through its uncertainty weight (a diagnosis option; the paper does not detach).

    ``model(frames)`` returns a :class:`SegOutput`; ``model.loss`` is Eq. 7.
    """

    def __init__(
        self,
        *,
        frames: int,
        num_classes: int = 4,
        in_channels: int = 1,
        img_size: int = 224,
        backbone: str = "resnet50",
        use_static: bool = True,
        use_motion: bool = True,
        fusion: str = "guided",
        refinement: bool = True,
        attention: str = "per_frame",
        fusion_op: str = "sum",
        refine_head: str = "k_logits",
        reproduce_motion_defect: bool = False,
        attn_norm: bool = False,
        conf_loss_without_refiner: bool = False,
        alpha: float = 0.95,
        encoder_weights: str | None = None,
        temporal: str = "conv1d",
        temporal_init: str = "default",
        refiner_init: str = "default",
        refiner_bound: str = "none",
        refiner_gate: str = "maxpool",
        detach_uncertainty: bool = False,
    ):
        super().__init__()
        if img_size % 32:
            raise ValueError(f"SSNet needs img_size divisible by 32, got {img_size}")
        if encoder_weights is not None and str(encoder_weights).lower() in ("imagenet", "true", "default"):
            raise ValueError("encoder_weights must be a local file path; weights are never downloaded")
        if frames < 2:
            raise ValueError(f"SSNet needs at least 2 frames, got {frames}")
        if num_classes < 2:
            raise ValueError(f"SSNet needs at least 2 classes (the uncertainty uses the top two), got {num_classes}")
        if not (use_static or use_motion):
            raise ValueError("at least one of use_static / use_motion must be true")
        if fusion not in ("guided", "late"):
            raise ValueError(f"unknown fusion {fusion!r}; available: guided, late")
        if attention not in ("per_frame", "shared"):
            raise ValueError(f"unknown attention {attention!r}; available: per_frame, shared")
        if fusion_op not in FUSION_OPS:
            raise ValueError(f"unknown fusion_op {fusion_op!r}; available: {', '.join(FUSION_OPS)}")
        if refine_head not in REFINE_HEADS:
            raise ValueError(f"unknown refine_head {refine_head!r}; available: {', '.join(REFINE_HEADS)}")
        if reproduce_motion_defect and not (use_static and use_motion):
            raise ValueError("reproduce_motion_defect needs both encoders (use_static and use_motion)")
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must lie in [0, 1], got {alpha}")
        if backbone not in BACKBONES:
            raise ValueError(f"unknown backbone {backbone!r}; available: {', '.join(BACKBONES)}")

        self.frames, self.num_classes, self.in_channels = frames, num_classes, in_channels
        self.use_static, self.use_motion = use_static, use_motion
        self.guided = fusion == "guided" and use_motion
        self.refinement = refinement
        self.paired = refinement and refine_head == "paired"
        self.reproduce_motion_defect = reproduce_motion_defect
        self.use_conf_loss = refinement or conf_loss_without_refiner
        self.alpha = alpha
        self.detach_uncertainty = detach_uncertainty
        widths = BACKBONES[backbone]
        self.widths = widths

        # encoders (separate weights); the motion encoder exists under reproduce_motion_defect but is unused
        self.static_encoder = ResNetTrunk(backbone, in_channels, encoder_weights) if use_static else None
        self.motion_encoder = ResNetTrunk(backbone, in_channels, encoder_weights) if use_motion else None
        # temporal convolutions: TC_s for the static stream; TC_m when motion is used without static
        # (row 3's query) or fused late (row 2)
        self.static_temporal = build_temporal_convs(frames, temporal, temporal_init) if use_static else None
        need_tc_m = use_motion and (not use_static or not self.guided)
        self.motion_temporal = build_temporal_convs(frames, temporal, temporal_init) if need_tc_m else None
        if self.guided:
            self.attention = nn.ModuleList(
                GuidedCrossAttention(c, frames, shared=attention == "shared", norm=attn_norm) for c in widths
            )
            self.fusion = nn.ModuleList(Fusion(c, fusion_op) for c in widths)
        else:
            self.attention = None
            self.fusion = None

        self.decoder = UnetDecoder(
            encoder_channels=(in_channels, *widths),
            decoder_channels=DECODER_CHANNELS,
            n_blocks=5,
            use_norm="batchnorm",
            attention_type=None,
            add_center_block=False,
            interpolation_mode="nearest",
        )
        head_out = 2 * num_classes if self.paired else num_classes
        self.head = nn.Conv2d(DECODER_CHANNELS[-1], head_out, kernel_size=3, padding=1)
        self.refiner = (
            UncertaintyRefiner(widths[0], out_per_class=2 if self.paired else 1, init=refiner_init,
                               bound=refiner_bound, gate=refiner_gate)
            if refinement else None
        )

    # ------------------------------------------------------------------ forward
    def _encode(self, encoder: ResNetTrunk, clip: torch.Tensor) -> list[torch.Tensor]:
        b, t = clip.shape[:2]
        feats = encoder(clip.flatten(0, 1))
        return [f.unflatten(0, (b, t)) for f in feats]

    def _skips(self, frames: torch.Tensor) -> list[torch.Tensor]:
        static = self._encode(self.static_encoder, frames) if self.use_static else None
        motion = None
        if self.use_motion:
            if self.reproduce_motion_defect:
                motion = static  # the authors' code: motion features = static encoder on X
            else:
                motion = self._encode(self.motion_encoder, residual_frames(frames))
        skips = []
        for k in range(5):
            if self.guided:
                if self.use_static:
                    query = self.static_temporal[k](static[k])
                else:
                    query = self.motion_temporal[k](motion[k])
                z = self.attention[k](query, motion[k])
                skips.append(self.fusion[k](query, z))
            else:
                parts = []
                if self.use_static:
                    parts.append(self.static_temporal[k](static[k]))
                if self.use_motion:
                    parts.append(self.motion_temporal[k](motion[k]))
                skips.append(parts[0] if len(parts) == 1 else parts[0] + parts[1])
        return skips

    def forward(self, frames: torch.Tensor) -> SegOutput:
        """Segment a clip.

        Args:
            frames: ``(B, T, C_in, H, W)`` normalised frames, H and W divisible by 32, T = ``frames``.

        Returns:
            :class:`SegOutput` with ``logits`` ``(B, K, H, W)`` (softmax gives Ŷ) and ``aux``:
            ``coarse_logits`` M ``(B, K, H, W)``; ``uncertainty`` U ``(B, 1, H, W)`` in (0, 1]
            (Eq. 3, from M); with refinement also ``refinement`` E ``(B, K, H, W)`` (``paired``:
            ``(B, K, 2, H, W)``).
        """
        if frames.ndim != 5:
            raise ValueError(f"SSNet expects frames (B, T, C, H, W), got shape {tuple(frames.shape)}")
        b, t, c, h, w = frames.shape
        if t != self.frames:
            raise ValueError(f"this SSNet was built for T={self.frames} frames, got T={t}")
        if h % 32 or w % 32:
            raise ValueError(f"SSNet needs H and W divisible by 32, got {h}×{w}")
        skips = self._skips(frames)
        placeholder = frames.new_empty(b, 0, h, w)  # the decoder only reads the input's spatial size
        dec = self.decoder([placeholder, *skips])
        raw = self.head(dec)

        if not self.paired:
            coarse = raw
            probs = coarse.float().softmax(dim=1)
        else:
            pairs = raw.unflatten(1, (self.num_classes, 2)).float()  # (B, K, 2, H, W)
            fg = pairs.softmax(dim=2)[:, :, 1]  # per-pair foreground probability
            coarse = _logit(fg)
            probs = fg.softmax(dim=1)  # the code's second softmax, over K, of probabilities
        unc = uncertainty_map(probs)  # (B, 1, H, W)
        aux: dict[str, torch.Tensor] = {"coarse_logits": coarse, "uncertainty": unc}
        if not self.refinement:
            return SegOutput(coarse, aux)

        low = F.interpolate(skips[0], size=(h, w), mode="bilinear", align_corners=False)
        refine = self.refiner(probs, low).float()  # (B, K, out, H, W)
        if not self.paired:
            refine = refine[:, :, 0]
            logits = coarse.float() + (unc.detach() if self.detach_uncertainty else unc) * refine
        else:
            weight = unc.detach() if self.detach_uncertainty else unc
            final = (pairs + weight[:, :, None] * refine).softmax(dim=2)[:, :, 1]
            logits = _logit(final)
        aux["refinement"] = refine
        return SegOutput(logits, aux)

    # --------------------------------------------------------------------- loss
    def loss(self, output: SegOutput, target: torch.Tensor) -> torch.Tensor:
        """Eq. 7: α·Dice(Y, Ŷ) + (1 − α)·L_u(Û), Û from the final Ŷ; Dice only without refinement.

        Args:
            output: this model's output.
            target: ``(B, H, W)`` int64 labels in [0, K).

        Returns:
            scalar float32 loss.
        """
        logits = output.logits.float()
        dice = multiclass_soft_dice_loss(logits, target)
        if not self.use_conf_loss:
            return dice
        if self.paired:
            # the code: Û on a softmax over K of the per-pair probabilities (Û ≥ exp(1 − e))
            u_probs = torch.sigmoid(logits).softmax(dim=1)
        else:
            u_probs = logits.softmax(dim=1)
        return self.alpha * dice + (1.0 - self.alpha) * confidence_loss(u_probs)


register(
    "ssnet",
    kind="video",
    min_frames=2,
    display_name="SSNet",
    test_config={"frames": 5, "img_size": 64, "backbone": "resnet18"},
    paper_config={
        "frames": 10,
        "img_size": 224,
        "backbone": "resnet50",
        "attention": "per_frame",
        "fusion": "guided",
        "fusion_op": "sum",
        "refinement": True,
        "refine_head": "k_logits",
    },
)(SSNet)

#: The registry builder is the class itself (its signature is what configs are checked against).
build_ssnet = SSNet
