"""UNet++, TransUNet and SwinUNETR: every clip mode forward/backward, parameter counts, losses, geometry."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from ssnet import registry
from ssnet.engine.models_cli import count_parameters
from ssnet.models.losses import ce_dice_loss, multiclass_soft_dice_loss

TINY = {  # smallest width each builder allows, 64², 4 frames
    "unetpp": {"backbone": "resnet18"},
    "transunet": {"vit_depth": 1},  # 64² → a 4×4 token grid (position embedding interpolated from 14×14)
    "swinunetr": {"feature_size": 12},
}


@pytest.mark.parametrize("mode", ["stack", "frame", "mean"])
@pytest.mark.parametrize("name", sorted(TINY))
def test_forward_backward_every_clip_mode(name: str, mode: str) -> None:
    torch.manual_seed(0)
    model = registry.build(name, frames=4, num_classes=4, img_size=64, clip_mode=mode, **TINY[name])
    out = model(torch.randn(2, 4, 1, 64, 64))
    assert out.shape == (2, 4, 64, 64) and torch.isfinite(out).all()
    if mode == "mean":  # log of the averaged per-frame probabilities
        assert torch.allclose(out.exp().sum(1), torch.ones(2, 64, 64), atol=1e-4)
    target = torch.randint(0, 4, (2, 64, 64))
    loss = model.loss(out, target) if hasattr(model, "loss") else multiclass_soft_dice_loss(out, target)
    loss.backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


# Parameter counts on the meta device. A K-class head and a T-frame `stack` stem change only the
# first and last layers, so (paper config: frames 10, K 4, 224²) − (frames 1, K 1) is pure arithmetic.
#   UNet++ / TransUNet: stem conv 7×7 → 64 without bias: 64·49 = 3,136 per input channel, ×9 = 28,224;
#                       head conv 3×3 16 → K with bias: 16·9 + 1 = 145 per class, ×3 = 435.
#   SwinUNETR (feature 48): patch embedding 2×2 → 48 (192 per channel), encoder-1 residual block
#                       conv 3×3 → 48 (432) and its 1×1 projection (48): 672 per channel, ×9 = 6,048;
#                       head 1×1 48 → K with bias: 49 per class, ×3 = 147.
PARAMS = {  # name: (frames 1 and K 1, paper config, reference in M at the reference config)
    "unetpp": (48_979_473, 48_979_473 + 28_224 + 435, 48.98),
    "transunet": (105_269_649, 105_269_649 + 28_224 + 435, 105.28),
    "swinunetr": (25_137_931, 25_137_931 + 6_048 + 147, 25.14),
}


@pytest.mark.parametrize("name", sorted(PARAMS))
def test_parameter_counts_match_reference(name: str) -> None:
    one, paper, reference_m = PARAMS[name]
    assert count_parameters(name, frames=1, num_classes=1) == one
    assert count_parameters(name) == paper
    assert abs(one / 1e6 - reference_m) / reference_m < 0.05
    assert abs(paper / 1e6 - reference_m) / reference_m < 0.05


def test_transunet_matches_the_reference_breakdown() -> None:
    # Reference: 105.28 M at RGB input and 2 classes, with a CLS token; ours has no CLS token
    # (−768 token −768 position) and otherwise the same layers: 3 input channels add 2·3,136, 2 classes add 145.
    n = count_parameters("transunet", frames=3, num_classes=2)
    assert n == 105_269_649 + 2 * 3_136 + 145 == 105_276_066
    assert round((n + 1_536) / 1e6, 2) == 105.28
    with torch.device("meta"):
        net = registry.build("transunet", frames=3, num_classes=2).net
    cnn = sum(p.numel() for p in net.vit.patch_embed.backbone.parameters())
    assert cnn == 11_894_848  # the reference's hybrid CNN exactly
    assert tuple(net.vit.pos_embed.shape) == (1, 196, 768)


def test_transunet_any_side_divisible_by_16() -> None:
    net = registry.build("transunet", frames=2, img_size=64, vit_depth=1).net.eval()
    with torch.no_grad():
        assert net(torch.randn(1, 2, 48, 80)).shape == (1, 4, 48, 80)  # 3×5 token grid
        assert net.pos_embed(14, 14) is net.vit.pos_embed
        with pytest.raises(ValueError, match="divisible by 16, got 40x80"):
            net(torch.randn(1, 2, 40, 80))
    with pytest.raises(ValueError, match="divisible by 16, got 40"):
        registry.build("transunet", frames=2, img_size=40)


def test_swinunetr_needs_sides_divisible_by_32_and_at_least_64() -> None:
    with pytest.raises(ValueError, match="divisible by 32, got 48"):
        registry.build("swinunetr", frames=2, img_size=48, feature_size=12)
    with pytest.raises(ValueError, match="at least 64 .*got 32"):
        registry.build("swinunetr", frames=2, img_size=32, feature_size=12)


def test_each_method_uses_its_own_loss() -> None:
    logits, target = torch.randn(2, 4, 8, 8), torch.randint(0, 4, (2, 8, 8))
    ce, dice = F.cross_entropy(logits, target), multiclass_soft_dice_loss(logits, target)
    assert torch.allclose(ce_dice_loss(logits, target, 0.5, 0.5), 0.5 * ce + 0.5 * dice)
    tu = registry.build("transunet", frames=2, img_size=64, vit_depth=1)
    sw = registry.build("swinunetr", frames=2, img_size=64, feature_size=12)
    assert torch.allclose(tu.loss(logits, target), 0.5 * ce + 0.5 * dice)
    assert torch.allclose(sw.loss(logits, target), ce + dice)
    assert not hasattr(registry.build("unetpp", frames=2, img_size=64, backbone="resnet18"), "loss")  # engine Dice


def test_models_params_on_meta_device(capsys) -> None:
    from ssnet.engine import models_cli

    assert models_cli.main(["--params", "*unet*"]) == 0
    lines = dict(line.split("\t") for line in capsys.readouterr().out.splitlines())
    assert {k: int(v) for k, v in lines.items() if k in PARAMS} == {k: v[1] for k, v in PARAMS.items()}


def test_sgd_poly_original_recipe() -> None:
    from ssnet.engine.config import compose
    from ssnet.engine.module import SegmentationModule
    from ssnet.errors import SsnetError

    cfg = compose(["model=transunet", "train=transunet_original", "profile=paper"])
    t = cfg.train
    assert (t.optimizer, t.lr, t.momentum, t.weight_decay, t.scheduler, t.batch_size) == ("sgd", 0.01, 0.9, 1e-4, "poly", 24)
    module = SegmentationModule(torch.nn.Linear(2, 2), cfg)
    conf = module.configure_optimizers()
    opt, sched = conf["optimizer"], conf["lr_scheduler"]["scheduler"]
    assert isinstance(opt, torch.optim.SGD) and opt.defaults["momentum"] == 0.9
    half = t.max_steps // 2
    assert sched.lr_lambdas[0](half) == pytest.approx((1 - half / t.max_steps) ** 0.9)
    cfg.train.optimizer = "lamb"
    with pytest.raises(SsnetError, match="unknown optimiser 'lamb'; available: adam, adamw, sgd"):
        SegmentationModule(torch.nn.Linear(2, 2), cfg).configure_optimizers()


@pytest.mark.parametrize("size", [(4, 4), (28, 20)])
def test_transunet_separable_bicubic_equals_interpolate(size: tuple[int, int]) -> None:
    """The deterministic-CUDA path of the position-embedding resize: same values and gradients as F.interpolate."""
    from baselines.transunet import bicubic_resize_separable

    x = torch.randn(1, 6, 14, 14, dtype=torch.float64, requires_grad=True)
    y = torch.randn(1, 6, *size, dtype=torch.float64)
    ours = bicubic_resize_separable(x, *size)
    (g_ours,) = torch.autograd.grad((ours * y).sum(), x)
    ref = F.interpolate(x, size=size, mode="bicubic", align_corners=False)
    (g_ref,) = torch.autograd.grad((ref * y).sum(), x)
    torch.testing.assert_close(ours, ref, rtol=0, atol=1e-12)
    torch.testing.assert_close(g_ours, g_ref, rtol=0, atol=1e-12)


def test_cross_entropy_helper_is_f_cross_entropy_on_cpu() -> None:
    """The engine's pixel-mean cross-entropy keeps CPU results bit-identical to F.cross_entropy, deterministic mode or not."""
    from ssnet.models.losses import cross_entropy

    logits, target = torch.randn(2, 4, 8, 8), torch.randint(0, 4, (2, 8, 8))
    before = torch.are_deterministic_algorithms_enabled()
    try:
        for on in (False, True):
            torch.use_deterministic_algorithms(on)
            assert torch.equal(cross_entropy(logits, target), F.cross_entropy(logits, target))
    finally:
        torch.use_deterministic_algorithms(before)
    torch.testing.assert_close(F.cross_entropy(logits, target, reduction="none").mean(), F.cross_entropy(logits, target))
