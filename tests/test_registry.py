"""Registry contract, and a forward/backward test for every registered model at its test config."""
from __future__ import annotations

import pytest
import torch

from ssnet import registry
from ssnet.models.base import as_output


def test_duplicate_name_raises() -> None:
    registry.discover()
    with pytest.raises(ValueError, match="duplicate model name 'unet'"):
        registry.register("unet")(lambda **kw: None)


def test_unknown_name_lists_available() -> None:
    with pytest.raises(KeyError, match="unknown model 'nope'; available: .*unet"):
        registry.get("nope")


def test_names_pattern() -> None:
    assert "unet" in registry.names()
    assert registry.names("une*") == ["unet", "unetpp"]
    assert registry.names("zzz*") == []


@pytest.mark.parametrize("name", registry.names())
def test_every_model_forward_backward(name: str) -> None:
    entry = registry.get(name)
    cfg = {"num_classes": 4, "in_channels": 1, "img_size": 64, "frames": max(entry.min_frames, 4), **entry.test_config}
    torch.manual_seed(0)
    model = entry.build(**cfg)
    x = torch.randn(2, cfg["frames"], 1, cfg["img_size"], cfg["img_size"])
    out = as_output(model(x))
    assert out.logits.shape == (2, 4, cfg["img_size"], cfg["img_size"])
    assert torch.isfinite(out.logits).all()
    target = torch.randint(0, 4, (2, cfg["img_size"], cfg["img_size"]))
    if hasattr(model, "loss"):
        loss = model.loss(out, target)
    else:
        loss = torch.nn.functional.cross_entropy(out.logits, target)
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert any(g is not None and g.abs().sum() > 0 for g in grads)


def test_unet_parameter_count_matches_reference() -> None:
    # baselines reference: 23,501,760 encoder + 9,012,928 decoder + 145 head at C=1, K=1;
    # stack with C=10 adds 28,224; each extra class adds 145.
    with torch.device("meta"):
        one = registry.build("unet", frames=1, num_classes=1)
        paper = registry.build("unet", frames=10, num_classes=4)
    assert sum(p.numel() for p in one.parameters()) == 32_514_833
    assert sum(p.numel() for p in paper.parameters()) == 32_514_833 + 28_224 + 3 * 145


@pytest.mark.parametrize("mode", ["stack", "frame", "mean"])
def test_unet_clip_modes(mode: str) -> None:
    model = registry.build("unet", frames=3, img_size=64, backbone="resnet18", clip_mode=mode)
    out = model(torch.randn(2, 3, 1, 64, 64))
    assert out.shape == (2, 4, 64, 64)
    if mode == "mean":  # log of averaged probabilities: softmax sums to one and equals exp
        assert torch.allclose(out.exp().sum(1), torch.ones(2, 64, 64), atol=1e-4)


def test_size_divisor_is_checked_with_a_clear_error() -> None:
    entry = registry.ModelEntry("toy", lambda **kw: None, size_divisor=32)
    registry.check_geometry(entry, frames=4, img_size=64)
    with pytest.raises(ValueError, match="divisible by 32, got 48"):
        registry.check_geometry(entry, frames=4, img_size=48)


def test_average_frame_probabilities() -> None:
    from ssnet.models.clip_modes import average_frame_probabilities

    logits = torch.randn(2, 3, 4, 8, 8)
    mean = average_frame_probabilities(logits)
    assert torch.allclose(mean.exp(), logits.softmax(2).mean(1), atol=1e-6)
    last = average_frame_probabilities(logits, eval_frame=-1)
    assert torch.allclose(last.exp(), logits[:, -1].softmax(1), atol=1e-6)
