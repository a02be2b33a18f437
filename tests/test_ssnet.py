"""SSNet: shapes, Table 2 switches, reference parameter counts, gradients, loss, overfit (CPU, tiny)."""
from __future__ import annotations

import math
import shutil
from pathlib import Path

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from ssnet import registry
from ssnet.models.base import SegOutput
from ssnet.models.ssnet import SSNet, build_ssnet, residual_frames
from ssnet.models.ssnet_attention import GuidedCrossAttention
from ssnet.models.losses import multiclass_soft_dice_loss
from ssnet.models.ssnet_refinement import confidence_loss, uncertainty_map
from ssnet.models.ssnet_temporal import TemporalConv, build_temporal_convs, temporal_kernels

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs" / "model"
VARIANTS = ["ssnet", "ssnet_static_only", "ssnet_late_fusion", "ssnet_motion_guided", "ssnet_no_refinement"]
TINY = dict(num_classes=4, in_channels=1, img_size=64, backbone="resnet18")
SMALL = dict(TINY, img_size=32)  # where the spatial size is not the point (N₁ = 256 tokens)


def n_params(module: nn.Module | None) -> int:
    return 0 if module is None else sum(p.numel() for p in module.parameters())


def meta_model(**kw) -> SSNet:
    with torch.device("meta"):
        return build_ssnet(**kw)


def clip(b: int = 2, t: int = 5, size: int = 64, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, t, 1, size, size, generator=g)


# ------------------------------------------------------------------ shapes, any T
@pytest.mark.parametrize("attention", ["per_frame", "shared"])
@pytest.mark.parametrize("frames", [5, 10, 15, 30])
def test_output_shapes(frames: int, attention: str) -> None:
    torch.manual_seed(0)
    model = build_ssnet(frames=frames, attention=attention, **SMALL).eval()
    with torch.no_grad():
        out = model(clip(1, frames, 32))
    assert isinstance(out, SegOutput)
    assert out.logits.shape == (1, 4, 32, 32)
    assert out.aux["coarse_logits"].shape == (1, 4, 32, 32)
    assert out.aux["uncertainty"].shape == (1, 1, 32, 32)
    assert out.aux["refinement"].shape == (1, 4, 32, 32)
    assert torch.isfinite(out.logits).all()


@pytest.mark.parametrize("frames", [2, 7])
def test_any_frame_count(frames: int) -> None:
    model = build_ssnet(frames=frames, attention="shared", **SMALL).eval()
    with torch.no_grad():
        assert model(clip(1, frames, 32)).logits.shape == (1, 4, 32, 32)
    with pytest.raises(ValueError, match="built for T"):
        model(clip(1, frames + 1, 32))


def test_registry_entry() -> None:
    entry = registry.get("ssnet")
    assert entry.kind == "video" and entry.min_frames == 2 and entry.label == "SSNet"
    model = registry.build("ssnet", **entry.test_config)
    t, size = entry.test_config["frames"], entry.test_config["img_size"]
    out = model(clip(1, t, size))
    out.logits.sum().backward()
    with pytest.raises(ValueError):
        registry.build("ssnet", frames=1)
    with pytest.raises(ValueError, match="divisible by 32"):
        build_ssnet(frames=5, img_size=100)


def test_residual_frames_are_cyclic() -> None:
    x = clip(2, 5)
    r = residual_frames(x)
    assert torch.equal(r[:, 0], x[:, 0] - x[:, 1])
    assert torch.equal(r[:, -1], x[:, -1] - x[:, 0])


# ------------------------------------------------------------ parameter counts
def test_reference_parameter_counts() -> None:
    full = meta_model(frames=10)
    assert n_params(full) == 279_219_906
    assert n_params(full.static_encoder) == n_params(full.motion_encoder) == 23_501_760
    assert n_params(full.static_temporal) == 4_797
    assert n_params(full.attention) == 223_142_400
    assert n_params(full.decoder) == 9_012_928
    assert n_params(full.head) == 580 and n_params(full.refiner) == 55_681
    shared = meta_model(frames=10, attention="shared")
    assert n_params(shared.attention) == 22_314_240
    assert n_params(shared) == 78_391_746
    paired = meta_model(frames=10, refine_head="paired")
    assert n_params(paired.head) == 1_160 and n_params(paired.refiner) == 55_970
    assert n_params(paired) == 279_220_775
    assert n_params(meta_model(frames=10, attention="shared", refine_head="paired")) == 78_392_615
    per_stage = [n_params(meta_model(frames=10, attention="shared").attention[k]) for k in range(5)]
    assert per_stage == [16_640, 263_168, 1_050_624, 4_198_400, 16_785_408]


@pytest.mark.parametrize("frames,temporal", [(5, 462), (10, 4_797), (15, 6_926), (30, 11_261)])
def test_parameter_count_per_frames(frames: int, temporal: int) -> None:
    model = meta_model(frames=frames)
    assert n_params(model.static_temporal) == temporal
    assert n_params(model) == 56_072_709 + frames * 22_314_240 + temporal
    paired = meta_model(frames=frames, refine_head="paired")
    assert n_params(paired) == 56_073_578 + frames * 22_314_240 + temporal


def test_ablation_parameter_structure() -> None:
    enc, tc, attn = 23_501_760, 4_797, 223_142_400
    dec_head = 9_012_928 + 580
    assert n_params(meta_model(frames=10, use_motion=False, fusion="late", refinement=False)) == enc + tc + dec_head
    assert n_params(meta_model(frames=10, fusion="late", refinement=False)) == 2 * enc + 2 * tc + dec_head
    assert n_params(meta_model(frames=10, use_static=False, refinement=False)) == enc + tc + attn + dec_head
    assert n_params(meta_model(frames=10, refinement=False)) == 2 * enc + tc + attn + dec_head


# ------------------------------------------------------- Table 2 rows (Hydra configs)
def compose_model(variant: str, tmp_path: Path):
    from hydra import compose, initialize_config_dir

    root = tmp_path / "conf"
    (root / "model").mkdir(parents=True)
    for f in CONFIG_DIR.glob("ssnet*.yaml"):
        shutil.copy(f, root / "model" / f.name)
    (root / "config.yaml").write_text("defaults:\n  - model: ssnet\n  - _self_\n")
    with initialize_config_dir(config_dir=str(root), version_base=None):
        return compose(config_name="config", overrides=[f"model={variant}"]).model


EXPECTED_ROWS = {
    "ssnet": (True, True, True, True),
    "ssnet_static_only": (True, False, False, False),
    "ssnet_late_fusion": (True, True, False, False),
    "ssnet_motion_guided": (False, True, True, False),
    "ssnet_no_refinement": (True, True, True, False),
}


@pytest.mark.parametrize("variant", VARIANTS)
def test_ablation_row_trains_one_step(variant: str, tmp_path: Path) -> None:
    cfg = compose_model(variant, tmp_path)
    assert cfg.name == "ssnet"
    a = cfg.ablation
    assert (a.static_encoder, a.motion_encoder, a.guided_decoder, a.uncertainty_refinement) == EXPECTED_ROWS[variant]
    torch.manual_seed(0)
    model = registry.build(cfg.name, frames=3, num_classes=4, in_channels=1, img_size=32,
                           **cfg.options, backbone="resnet18")
    assert (model.static_encoder is not None) == a.static_encoder
    assert (model.motion_encoder is not None) == a.motion_encoder
    assert (model.attention is not None) == a.guided_decoder
    assert (model.refiner is not None) == a.uncertainty_refinement
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    target = torch.randint(0, 4, (2, 32, 32))
    out = model(clip(2, 3, 32))
    loss = model.loss(out, target)
    assert torch.isfinite(loss)
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    opt.step()
    if not a.uncertainty_refinement:  # Dice only
        assert torch.allclose(loss, multiclass_soft_dice_loss(out.logits, target))


@pytest.mark.parametrize(
    "options",
    [{"fusion_op": "prod"}, {"fusion_op": "cat"}, {"fusion_op": "weighted"}, {"attn_norm": True},
     {"temporal": "conv3d"}, {"conf_loss_without_refiner": True, "refinement": False},
     {"use_static": False, "fusion": "late"}],
    ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()),
)
def test_code_flags_build_and_train(options: dict) -> None:
    torch.manual_seed(0)
    model = build_ssnet(frames=2, attention="shared", **{**SMALL, **options})
    loss = model.loss(model(clip(2, 2, 32)), torch.randint(0, 4, (2, 32, 32)))
    loss.backward()
    assert torch.isfinite(loss)


# ------------------------------------------------------------------ gradients
def _encoder_grads(model: SSNet) -> tuple[bool, bool]:
    model.zero_grad(set_to_none=True)
    out = model(clip(2, 3, 32))
    model.loss(out, torch.randint(0, 4, (2, 32, 32))).backward()

    def has(m: nn.Module) -> bool:
        return any(p.grad is not None and p.grad.abs().sum() > 0 for p in m.parameters())

    return has(model.static_encoder), has(model.motion_encoder)


def test_gradients_reach_both_encoders() -> None:
    torch.manual_seed(0)
    assert _encoder_grads(build_ssnet(frames=3, **SMALL)) == (True, True)


def test_motion_defect_leaves_motion_encoder_unused() -> None:
    torch.manual_seed(0)
    model = build_ssnet(frames=3, reproduce_motion_defect=True, **SMALL)
    assert n_params(model.motion_encoder) > 0  # built, counted, unused
    assert _encoder_grads(model) == (True, False)
    assert all(p.grad is None for p in model.motion_encoder.parameters())


# ----------------------------------------------------------- refinement, loss
def test_uncertainty_and_refined_logits() -> None:
    torch.manual_seed(0)
    model = build_ssnet(frames=3, **SMALL).eval()
    with torch.no_grad():
        out = model(clip(2, 3, 32))
    u = out.aux["uncertainty"]
    assert (u > 0).all() and (u <= 1).all()
    expected = out.aux["coarse_logits"] + u * out.aux["refinement"]  # Eq. 6: softmax(M + U·E)
    torch.testing.assert_close(out.logits, expected)
    probs = torch.tensor([[0.25, 0.25, 0.25, 0.25], [0.7, 0.1, 0.1, 0.1]]).T[None, :, :, None]
    torch.testing.assert_close(uncertainty_map(probs).flatten(), torch.tensor([1.0, math.exp(1 - 7)]))


def test_refiner_follows_eq_4_5() -> None:
    from ssnet.models.ssnet_refinement import UncertaintyRefiner

    torch.manual_seed(0)
    ref = UncertaintyRefiner(feat_channels=6, out_per_class=1)
    probs = torch.randn(2, 3, 16, 16).softmax(1)
    feat = torch.randn(2, 6, 16, 16)
    e = ref(probs, feat)[:, :, 0]
    for i in range(3):
        p = probs[:, i : i + 1]
        r_i = F.avg_pool2d(p * feat, 7, 1, 3) / (F.avg_pool2d(p, 7, 1, 3) + 1e-8)  # Eq. 4, local
        f_l = ref.conv_out(F.relu(ref.res(ref.conv_in(torch.cat([feat, r_i], 1)))))
        torch.testing.assert_close(e[:, i : i + 1], F.max_pool2d(p, 7, 1, 3) * f_l)  # Eq. 5


def test_refiner_bound_and_gate_options() -> None:
    from ssnet.models.ssnet_refinement import UncertaintyRefiner

    probs = torch.randn(2, 3, 16, 16).softmax(1)
    feat = 50 * torch.randn(2, 6, 16, 16)  # large features: an unbounded f_l gives large E
    refs = {}
    for bound, gate in (("none", "maxpool"), ("tanh", "maxpool"), ("none", "none")):
        torch.manual_seed(0)
        refs[bound, gate] = UncertaintyRefiner(feat_channels=6, bound=bound, gate=gate)(probs, feat)[:, :, 0]
    gate = F.max_pool2d(probs, 7, 1, 3)
    plain = refs["none", "maxpool"]
    assert plain.abs().max() > 1  # the paper's E is unbounded
    torch.testing.assert_close(refs["tanh", "maxpool"], gate * torch.tanh(plain / gate))  # same f_l, squashed
    assert (refs["tanh", "maxpool"].abs() <= gate).all()
    torch.testing.assert_close(refs["none", "none"] * gate, plain)  # same f_l without the MaxPool factor
    with pytest.raises(ValueError, match="refiner_bound"):
        build_ssnet(frames=3, refiner_bound="clip", **SMALL)
    with pytest.raises(ValueError, match="refiner_gate"):
        build_ssnet(frames=3, refiner_gate="avg", **SMALL)


def test_zero_refiner_init_starts_as_the_coarse_map_and_learns() -> None:
    torch.manual_seed(0)
    model = build_ssnet(frames=3, refiner_init="zero", **SMALL)
    out = model(clip(2, 3, 32))
    assert torch.equal(out.aux["refinement"], torch.zeros_like(out.aux["refinement"]))
    torch.testing.assert_close(out.logits, out.aux["coarse_logits"].float())
    model.loss(out, torch.randint(0, 4, (2, 32, 32))).backward()
    assert model.refiner.conv_out.weight.grad.abs().sum() > 0  # the residual is learnt from the first step
    with pytest.raises(ValueError, match="refiner_init"):
        build_ssnet(frames=3, refiner_init="ones", **SMALL)


def test_detach_uncertainty_changes_gradients_not_outputs() -> None:
    target = torch.randint(0, 4, (2, 32, 32))
    grads, outs = [], []
    for detach in (False, True):
        torch.manual_seed(0)
        model = build_ssnet(frames=3, detach_uncertainty=detach, **SMALL)
        out = model(clip(2, 3, 32))
        model.loss(out, target).backward()
        outs.append(out.logits.detach())
        grads.append(model.head.weight.grad.clone())
    torch.testing.assert_close(outs[0], outs[1])  # same forward pass
    assert not torch.allclose(grads[0], grads[1])  # the path through U carried gradient into M's head


def test_paired_head() -> None:
    torch.manual_seed(0)
    model = build_ssnet(frames=3, refine_head="paired", **SMALL)
    out = model(clip(2, 3, 32))
    assert out.logits.shape == (2, 4, 32, 32) and out.aux["refinement"].shape == (2, 4, 2, 32, 32)
    u = out.aux["uncertainty"]
    assert (u >= math.exp(1 - math.e) - 1e-6).all() and (u <= 1).all()  # softmax of probabilities
    loss = model.loss(out, torch.randint(0, 4, (2, 32, 32)))
    loss.backward()
    assert torch.isfinite(loss)


def test_dice_matches_smp_and_loss_weights() -> None:
    from segmentation_models_pytorch.losses import DiceLoss

    torch.manual_seed(0)
    logits = torch.randn(3, 4, 16, 16)
    target = torch.randint(0, 3, (3, 16, 16))  # class 3 absent: contributes 0
    ref = DiceLoss("multiclass", from_logits=True)(logits, target)
    torch.testing.assert_close(multiclass_soft_dice_loss(logits, target), ref)
    model = build_ssnet(frames=2, attention="shared", **TINY)
    out = SegOutput(logits)
    probs = logits.softmax(1)
    rms = uncertainty_map(probs).flatten(1).pow(2).mean(1).sqrt().mean()
    torch.testing.assert_close(confidence_loss(probs), rms)
    torch.testing.assert_close(model.loss(out, target), 0.95 * ref + 0.05 * rms)
    no_ref = build_ssnet(frames=2, attention="shared", refinement=False, **TINY)
    torch.testing.assert_close(no_ref.loss(out, target), ref)
    keep = build_ssnet(frames=2, attention="shared", refinement=False, conf_loss_without_refiner=True, **TINY)
    torch.testing.assert_close(keep.loss(out, target), 0.95 * ref + 0.05 * rms)


# -------------------------------------------------------- temporal convolution
def test_temporal_kernels_and_params() -> None:
    table = {5: [5], 10: [5, 2], 15: [5, 3], 20: [5, 4], 30: [5, 3, 2], 2: [2], 7: [7], 14: [2, 7], 12: [4, 3]}
    for t, kernels in table.items():
        assert temporal_kernels(t) == kernels
        assert math.prod(kernels) == t
    counts = {5: 462, 10: 4_797, 15: 6_926, 30: 11_261}
    for t, count in counts.items():
        assert n_params(build_temporal_convs(t)) == count
        assert n_params(build_temporal_convs(t, "conv3d")) == count


@pytest.mark.parametrize("frames", [5, 10, 30])
def test_temporal_conv_matches_reference_and_is_nonnegative(frames: int) -> None:
    torch.manual_seed(0)
    tc = TemporalConv(frames, hidden=10)
    x = torch.randn(2, frames, 3, 4, 5)
    y = tc(x)
    assert y.shape == (2, 3, 4, 5) and (y >= 0).all()
    torch.testing.assert_close(y, tc.forward_reference(x))
    tc3 = TemporalConv(frames, hidden=10, impl="conv3d")
    with torch.no_grad():
        for a, b in zip(tc3.convs, tc.convs):
            a.weight.copy_(b.weight[..., None, None])
            a.bias.copy_(b.bias)
    torch.testing.assert_close(tc3(x), y)


# ------------------------------------------------------------------- attention
@pytest.mark.parametrize("shared", [False, True])
@pytest.mark.parametrize("norm", [False, True])
def test_attention_equals_multihead_attention(shared: bool, norm: bool) -> None:
    torch.manual_seed(0)
    c, t = 8, 3
    attn = GuidedCrossAttention(c, t, shared=shared, norm=norm)
    with torch.no_grad():
        for p in attn.parameters():
            p.normal_(0, 0.3)
    q = torch.randn(2, c, 4, 4)
    kv = torch.randn(2, t, c, 4, 4)
    z = torch.zeros(2, 16, c)
    for i in range(t):
        j = 0 if shared else i
        mha = nn.MultiheadAttention(c, 1, bias=True, batch_first=True)
        with torch.no_grad():
            mha.in_proj_weight.copy_(torch.cat([attn.q_weight[j], attn.k_weight[j], attn.v_weight[j]]))
            mha.in_proj_bias.copy_(torch.cat([attn.q_bias[j], attn.k_bias[j], attn.v_bias[j]]))
            mha.out_proj.weight.copy_(attn.out_weight[j])
            mha.out_proj.bias.copy_(attn.out_bias[j])
        key = kv[:, i].flatten(2).transpose(1, 2)
        o = mha(q.flatten(2).transpose(1, 2), key, key, need_weights=False)[0]
        if norm:
            o = F.layer_norm(o, (c,), attn.norm_weight[j], attn.norm_bias[j])
        z = z + o
    torch.testing.assert_close(attn(q, kv), z.transpose(1, 2).reshape(2, c, 4, 4), rtol=1e-4, atol=1e-5)


def test_attention_uses_fused_sdpa(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[int, ...]] = []
    sdpa = F.scaled_dot_product_attention

    def spy(q, k, v, *args, **kwargs):
        calls.append(tuple(q.shape))
        return sdpa(q, k, v, *args, **kwargs)

    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", spy)
    model = build_ssnet(frames=5, **TINY).eval()
    with torch.no_grad():
        model(clip(1, 5))
    # one fused call per stage, frames in the heads position; stage 1 at 64² has N₁ = 32·32 tokens
    assert calls == [(1, 5, 1024, 64), (1, 5, 256, 64), (1, 5, 64, 128), (1, 5, 16, 256), (1, 5, 4, 512)]


def test_local_encoder_weights(tmp_path: Path) -> None:
    import torchvision

    torch.manual_seed(0)
    rgb = torchvision.models.resnet18(weights=None)
    path = tmp_path / "r18.pt"
    torch.save(rgb.state_dict(), path)
    model = build_ssnet(frames=2, attention="shared", encoder_weights=str(path), **TINY)
    stem = rgb.conv1.weight.sum(1, keepdim=True)
    torch.testing.assert_close(model.static_encoder.conv1.weight, stem)
    torch.testing.assert_close(model.motion_encoder.layer4[1].conv2.weight, rgb.layer4[1].conv2.weight)
    with pytest.raises(ValueError, match="local"):
        build_ssnet(frames=2, encoder_weights="imagenet", **TINY)


# ---------------------------------------------------------------------- overfit
def moving_ring_clips(n: int = 4, t: int = 5, size: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """Rings that pulse over time except a fixed, slightly darker 'lesion' sector; label = myocardium 1,
    outer half of the sector infarct 2, inner half MVO 3 (a toy for plumbing, not the phantom)."""
    half = size / 2
    yy, xx = torch.meshgrid(torch.arange(size) - half, torch.arange(size) - half, indexing="ij")
    r, theta = torch.hypot(yy, xx) / half, torch.atan2(yy, xx)
    frames, labels = [], []
    for i in range(n):
        sector = (theta - (i * 1.6 - 2.4)).remainder(2 * math.pi) < 2.0
        seq = []
        for j in range(t):
            squeeze = 1 - 0.25 * math.sin(math.pi * j / t)
            inner = torch.where(sector, torch.tensor(0.3), torch.tensor(0.3 * squeeze))
            wall = torch.where(sector, torch.tensor(0.0), torch.tensor(0.6))
            seq.append(torch.where(r < inner, 1.5, torch.where(r < 0.6, wall, -1.0)))
        frames.append(torch.stack(seq)[:, None])
        label = ((r >= 0.3) & (r < 0.6)).long()
        label[(label == 1) & sector] = 2
        label[(label == 2) & (r < 0.45)] = 3
        labels.append(label)
    return torch.stack(frames), torch.stack(labels)


def test_overfit_four_clips() -> None:
    torch.manual_seed(0)
    x, y = moving_ring_clips(n=4, t=2, size=64)
    model = build_ssnet(frames=2, **TINY)
    opt = torch.optim.Adam(model.parameters(), lr=3e-4)
    losses = []
    for _ in range(30):
        opt.zero_grad(set_to_none=True)
        loss = model.loss(model(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] <= 0.5 * losses[0], losses


def test_temporal_init_default_can_start_dead_and_positive_cannot() -> None:
    """The authors' (PyTorch) init leaves a whole stage-1 pooling dead at some seeds on non-negative
    features (zero output, zero gradient); ``temporal_init=positive`` never does, and keeps the parameters."""
    x = torch.rand(2, 10, 3, 4, 4)  # non-negative, like ResNet stage outputs
    dead = [s for s in range(40) if (torch.manual_seed(s), TemporalConv(10, 2))[1](x).abs().max() == 0]
    assert dead, "expected some seeds whose default-initialised stage-1 pooling outputs only zeros"
    for s in dead[:3] + [0, 1]:
        torch.manual_seed(s)
        default = TemporalConv(10, 2)
        torch.manual_seed(s)
        positive = TemporalConv(10, 2, init="positive")
        assert all(torch.equal(p.weight.abs(), d.weight.abs()) for p, d in zip(positive.convs, default.convs))
        assert all(not p.bias.any() for p in positive.convs)
        y = positive(x)
        assert (y > 0).all()
        y.sum().backward()
        assert all(p.weight.grad.abs().sum() > 0 for p in positive.convs)
    with pytest.raises(ValueError, match="temporal_init"):
        TemporalConv(10, 2, init="zeros")
    a = sum(p.numel() for p in SSNet(frames=5, img_size=64, backbone="resnet18").parameters())
    b = sum(p.numel() for p in SSNet(frames=5, img_size=64, backbone="resnet18", temporal_init="positive").parameters())
    assert a == b
