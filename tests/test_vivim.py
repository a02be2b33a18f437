"""Vivim: shapes at several T, parameter counts against the reference, the selective scan, the loss."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from baselines.vivim import DIRECTIONS, MambaV3, box_filter31, structure_loss
from ssnet import registry
from ssnet.models.mit import MixTransformer
from ssnet.models.selective_scan import (
    mamba_ssm_available,
    selective_scan,
    selective_scan_reference,
    selective_scan_torch,
)

TINY = registry.get("vivim").test_config


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _tiny(**overrides) -> torch.nn.Module:
    torch.manual_seed(0)
    return registry.build("vivim", num_classes=4, **{**TINY, **overrides})


def _scan_inputs(b: int, d: int, n: int, length: int, dtype: torch.dtype, device: str = "cpu", seed: int = 0):
    g = torch.Generator().manual_seed(seed)

    def r(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=g, dtype=dtype).to(device)

    A = -torch.rand(d, n, generator=g, dtype=dtype).to(device) * 4 - 0.05
    return dict(u=r(b, d, length), delta=r(b, d, length), A=A, B=r(b, n, length), C=r(b, n, length), D=r(d),
                z=r(b, d, length), delta_bias=r(d))


# --------------------------------------------------------------------------------------- model


def test_forward_backward_two_layers_64px_4_frames() -> None:
    model = _tiny(mamba_layers=2)
    x = torch.randn(2, 4, 1, 64, 64)
    out = model(x)
    assert out.logits.shape == (2, 4, 64, 64) and out.aux["frame_logits"].shape == (2, 4, 4, 64, 64)
    assert torch.isfinite(out.logits).all()
    # clip output = log of the mean per-frame probability
    assert torch.allclose(out.logits.exp(), out.aux["frame_logits"].softmax(2).mean(1), atol=1e-5)
    model.loss(out, torch.randint(0, 4, (2, 64, 64))).backward()
    for stage in model.temporal:
        for layer in stage.layers:
            for name in DIRECTIONS:
                grad = layer.mamba.directions[name].A_log.grad
                assert grad is not None and grad.abs().sum() > 0, name


@pytest.mark.parametrize("frames", [5, 10, 30])
def test_any_number_of_frames(frames: int) -> None:
    model = _tiny().eval()
    with torch.no_grad():
        out = model(torch.randn(1, frames, 1, 64, 64))
    assert out.logits.shape == (1, 4, 64, 64) and out.aux["frame_logits"].shape == (1, frames, 4, 64, 64)
    assert torch.isfinite(out.logits).all()


def test_eval_frame_and_meta_device() -> None:
    model = _tiny(eval_frame=-1).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, 1, 64, 64))
    assert torch.allclose(out.logits.exp(), out.aux["frame_logits"][:, -1].softmax(1), atol=1e-5)
    with torch.device("meta"):  # ssnet models --flops builds and runs on meta: no host reads in the scan
        meta = registry.build("vivim", num_classes=4, **TINY)
        assert meta(torch.randn(1, 3, 1, 64, 64)).logits.shape == (1, 4, 64, 64)


def test_parameter_counts_match_reference() -> None:
    with torch.device("meta"):
        paper = registry.build("vivim", frames=10, num_classes=4, img_size=224)
        one = registry.build("vivim", frames=10, num_classes=1, img_size=224)
        grey = registry.build("vivim", frames=10, num_classes=1, img_size=224, rgb_stem=False)
        mit_with_stage_norms = MixTransformer(stage_norms=True)
    assert _count(one.encoder) == 44_070_080  # reference 44,072,128 less the per-stage norms (2,048) forward skips
    assert _count(mit_with_stage_norms) == 44_072_128
    assert _count(one.temporal) == 12_281_856
    assert [_count(s.layers[0].mamba) for s in one.temporal] == [48_768, 152_832, 796_800, 1_938_432]
    assert _count(one.head) == 3_265_686 - 115_350 + 769  # reference head less the unused ADE classifier, K = 1
    assert _count(one) == 59_503_041
    assert _count(one) + 115_350 + 2_048 == 59_620_439  # the reference total with its dead weights
    assert _count(paper) == 59_503_041 + 3 * 769
    assert abs(_count(paper) - 59_620_439) / 59_620_439 < 0.05
    assert _count(one) - _count(grey) == 2 * 64 * 7 * 7  # 1-channel stem


def test_three_directions_have_independent_parameters() -> None:
    mamba = MambaV3(16, d_state=4)
    per_dir = {name: dict(mamba.directions[name].named_parameters()) for name in DIRECTIONS}
    expected = {"conv1d.weight", "conv1d.bias", "x_proj.weight", "dt_proj.weight", "dt_proj.bias", "A_log", "D"}
    assert all(set(params) == expected for params in per_dir.values())
    ptrs = [p.data_ptr() for p in mamba.parameters()]
    assert len(ptrs) == len(set(ptrs)) == 2 + 3 * 7
    # perturbing one direction's A changes the output; each direction's gradient is its own
    x = torch.randn(2, 3 * 16, 16)
    base = mamba(x, frames=3)
    with torch.no_grad():
        mamba.directions["pix"].A_log.add_(0.5)
    assert not torch.allclose(mamba(x, frames=3), base)
    mamba(x, frames=3).square().sum().backward()
    grads = [mamba.directions[n].x_proj.weight.grad for n in DIRECTIONS]
    assert all(g.abs().sum() > 0 for g in grads)
    assert not torch.allclose(grads[0], grads[1]) and not torch.allclose(grads[0], grads[2])


def test_pixel_major_direction_scans_across_time_at_each_location() -> None:
    # With only the pixel-major direction wired, token (t, s) must not depend on tokens at later
    # positions of the pixel-major order, i.e. on (t' > t, s) or any later location s' > s.
    torch.manual_seed(0)
    mamba = MambaV3(8, d_state=4).double()
    mamba.directions = torch.nn.ModuleDict({"pix": mamba.directions["pix"]})
    frames, sites = 3, 5
    x = torch.randn(1, frames * sites, 8, dtype=torch.float64, requires_grad=True)
    out = mamba(x, frames=frames)
    t, s = 1, 2
    (grad,) = torch.autograd.grad(out[0, t * sites + s].sum(), x)
    influence = grad[0].abs().sum(-1).reshape(frames, sites)
    order = torch.arange(frames * sites).reshape(sites, frames).t()  # pixel-major position of (t, s)
    later = order > order[t, s]
    assert influence[later].max() == 0 and influence[~later].min() > 0


# --------------------------------------------------------------------------------------- scan


@pytest.mark.parametrize("length,chunk", [(1, None), (37, None), (64, 8), (101, 7), (200, 1), (50, 500)])
def test_torch_scan_matches_sequential_reference_float64(length: int, chunk: int | None) -> None:
    kw = _scan_inputs(2, 3, 4, length, torch.float64)
    ref = selective_scan_reference(**kw, delta_softplus=True)
    ours = selective_scan_torch(**kw, delta_softplus=True, chunk_size=chunk)
    assert torch.allclose(ours, ref, rtol=0, atol=1e-10)
    plain = {k: kw[k] for k in ("u", "delta", "A", "B", "C")}  # without D, z, bias, softplus
    ours_plain = selective_scan_torch(**plain, chunk_size=chunk)
    assert torch.allclose(ours_plain, selective_scan_reference(**plain), atol=1e-10)


def test_torch_scan_matches_reference_float32_and_gradients() -> None:
    kw64 = _scan_inputs(2, 4, 8, 150, torch.float64, seed=1)
    kw32 = {k: v.float().requires_grad_() for k, v in kw64.items()}
    kw64 = {k: v.clone().requires_grad_() for k, v in kw64.items()}
    ref = selective_scan_reference(**kw64, delta_softplus=True)
    ours = selective_scan_torch(**kw32, delta_softplus=True)
    assert ours.dtype == torch.float32
    assert torch.allclose(ours.double(), ref, atol=1e-5, rtol=1e-5)
    w = torch.randn_like(ref)
    (ref * w).sum().backward()
    (ours * w.float()).sum().backward()
    for k in kw64:
        assert torch.allclose(kw32[k].grad.double(), kw64[k].grad, atol=1e-4, rtol=1e-4), k


def test_checkpointed_scan_gives_the_same_gradients() -> None:
    kw = {k: v.requires_grad_() for k, v in _scan_inputs(1, 3, 4, 40, torch.float64, seed=4).items()}
    grads = []
    for checkpoint in (False, True):
        y = selective_scan(**kw, delta_softplus=True, backend="torch", checkpoint=checkpoint)
        grads.append(torch.autograd.grad(y.square().sum(), list(kw.values())))
    assert all(torch.allclose(a, b) for a, b in zip(*grads))


def test_torch_scan_is_stable_under_strong_decay() -> None:
    kw = _scan_inputs(1, 2, 16, 3000, torch.float32, seed=2)
    kw["A"] = -torch.arange(1, 17, dtype=torch.float32).repeat(2, 1)  # Mamba's A init: -1 … -16
    kw["delta"] = kw["delta"].abs() * 20  # decays exp(Δ·A) down to e^-1000: cumulative sums would overflow
    ours = selective_scan_torch(**kw, delta_softplus=True)
    assert torch.isfinite(ours).all()
    ref = selective_scan_reference(**{k: v.double() for k, v in kw.items()}, delta_softplus=True)
    assert torch.allclose(ours.double(), ref, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("block_elements", [1, 40, 1000, 2**18])  # 1 step per block, ragged blocks, one block
def test_cpu_sequential_scan_matches_reference_with_gradients(monkeypatch, block_elements: int) -> None:
    import ssnet.models.selective_scan_cpu as cpu_scan

    monkeypatch.setattr(cpu_scan, "BLOCK_ELEMENTS", block_elements)
    kw = {k: v.requires_grad_() for k, v in _scan_inputs(2, 3, 4, 1000, torch.float64, seed=5).items()}
    with torch.no_grad():  # large |A|·Δ: decays down to e^-1000 (0 in float64), where a cumulative sum would overflow
        kw["A"][0] *= 50
        kw["delta"][:, :, 500:600] += 10
    ref = selective_scan_reference(**kw, delta_softplus=True)
    ours = selective_scan_torch(**kw, delta_softplus=True)
    assert torch.allclose(ours, ref, rtol=0, atol=1e-10)
    w = torch.randn_like(ref)
    for a, b in zip(torch.autograd.grad((ours * w).sum(), list(kw.values())),
                    torch.autograd.grad((ref * w).sum(), list(kw.values()))):
        assert torch.allclose(a, b, rtol=1e-10, atol=1e-10)


def test_cpu_sequential_scan_gradcheck(monkeypatch) -> None:
    import ssnet.models.selective_scan_cpu as cpu_scan

    monkeypatch.setattr(cpu_scan, "BLOCK_ELEMENTS", 50)  # several blocks of 4 steps
    kw = _scan_inputs(2, 3, 4, 11, torch.float64, seed=6)
    args = [kw["delta"].abs(), kw["u"], kw["A"], kw["B"], kw["C"]]
    assert torch.autograd.gradcheck(cpu_scan.sequential_scan, [a.requires_grad_() for a in args])


@pytest.mark.skipif(not (torch.cuda.is_available() and mamba_ssm_available()),
                    reason="needs CUDA and mamba_ssm (pip install -e .[gpu]); runs on the GPU machine")
def test_torch_scan_matches_mamba_ssm_on_gpu() -> None:
    kw = {k: v.cuda() for k, v in _scan_inputs(2, 64, 16, 3000, torch.float32, seed=3).items()}
    fused = selective_scan(**kw, delta_softplus=True, backend="mamba_ssm")
    ours = selective_scan(**kw, delta_softplus=True, backend="torch")
    assert torch.allclose(fused, ours, atol=1e-4, rtol=1e-4)
    model = _tiny(scan_backend="torch").cuda().eval()
    x = torch.randn(1, 5, 1, 64, 64, device="cuda")
    with torch.no_grad():
        a = model(x).logits
        for stage in model.temporal:
            for layer in stage.layers:
                layer.mamba.scan_backend = "mamba_ssm"
        b = model(x).logits
    assert torch.allclose(a, b, atol=1e-3)


def test_unknown_scan_backend_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown scan_backend 'cuda'; available: auto, torch, mamba_ssm"):
        registry.build("vivim", num_classes=4, **{**TINY, "scan_backend": "cuda"})


def test_head_fuses_each_stage_at_its_resolution_like_the_concatenated_fuse() -> None:
    from baselines.vivim import SegFormerHead

    torch.manual_seed(0)
    head = SegFormerHead([16, 32, 40, 64], 24, 4).double()
    feats = [torch.randn(2, c, 16 >> i, 16 >> i, dtype=torch.float64, requires_grad=True)
             for i, c in enumerate([16, 32, 40, 64])]

    def concatenated() -> torch.Tensor:  # SegFormer's formulation: upsample every stage, concatenate, fuse
        ups = [F.interpolate(lin(f.flatten(2).transpose(1, 2)).transpose(1, 2).reshape(f.shape[0], -1, *f.shape[2:]),
                             size=(16, 16), mode="bilinear", align_corners=False) for f, lin in zip(feats, head.linear_c)]
        return head.classifier(head.dropout(torch.relu(head.bn(head.fuse(torch.cat(ups[::-1], 1))))))

    outs, grads = [], []
    for run in (head, concatenated):
        torch.manual_seed(1)  # the same dropout mask
        out = run(feats) if run is head else run()
        outs.append(out)
        grads.append(torch.autograd.grad(out.square().sum(), [*feats, *head.parameters()]))
    assert torch.allclose(outs[0], outs[1], rtol=0, atol=1e-12)
    assert all(torch.allclose(a, b, rtol=1e-10, atol=1e-10) for a, b in zip(*grads))


def test_spatio_temporal_mlp_conv_equals_the_3d_depthwise_conv() -> None:
    from baselines.vivim import depthwise_conv3d_tokens

    torch.manual_seed(0)
    conv = torch.nn.Conv3d(6, 6, 3, padding=1, groups=6).double()
    b, t, h, w = 2, 5, 4, 3
    tokens = torch.randn(b, t * h * w, 6, dtype=torch.float64, requires_grad=True)
    reference = conv(tokens.transpose(1, 2).reshape(b, 6, t, h, w)).flatten(2).transpose(1, 2)
    ours = depthwise_conv3d_tokens(conv, tokens, t, h, w)
    assert torch.allclose(ours, reference, rtol=0, atol=1e-12)
    weights = torch.randn_like(reference)
    for a, r in zip(torch.autograd.grad((ours * weights).sum(), [tokens, *conv.parameters()]),
                    torch.autograd.grad((reference * weights).sum(), [tokens, *conv.parameters()])):
        assert torch.allclose(a, r, rtol=0, atol=1e-12)


# --------------------------------------------------------------------------------------- loss, weights


def test_box_filter_equals_31px_average_pool() -> None:
    m = (torch.rand(2, 4, 40, 50) > 0.5).float()
    assert torch.allclose(box_filter31(m), F.avg_pool2d(m, kernel_size=31, stride=1, padding=15), atol=1e-6)


def test_structure_loss_prefers_the_right_answer_and_supervise_frame() -> None:
    target = torch.zeros(1, 32, 32, dtype=torch.long)
    target[:, 8:20, 8:20] = 2
    onehot = F.one_hot(target, 4).permute(0, 3, 1, 2).float()
    good, bad = structure_loss(20 * (2 * onehot - 1), onehot), structure_loss(torch.zeros_like(onehot), onehot)
    assert good < 0.05 < bad
    model = _tiny(supervise_frame=0)
    frame_logits = torch.randn(1, 3, 4, 32, 32, requires_grad=True)
    from ssnet.models.base import SegOutput

    model.loss(SegOutput(frame_logits[:, 0], {"frame_logits": frame_logits}), target).backward()
    assert frame_logits.grad[:, 0].abs().sum() > 0 and frame_logits.grad[:, 1:].abs().sum() == 0


def test_local_encoder_weights_load_and_adapt_the_stem(tmp_path: Path) -> None:
    src = _tiny()
    state = {f"encoder.{k}": v for k, v in src.encoder.state_dict().items()}
    state["encoder.stages.0.norm.weight"] = torch.ones(16)  # SegFormer's skipped stage norm: ignored
    path = tmp_path / "mit.pt"
    torch.save(state, path)
    rgb = _tiny(encoder_weights=str(path))
    assert torch.equal(rgb.encoder.stages[3].blocks[0].attn.q.weight, src.encoder.stages[3].blocks[0].attn.q.weight)
    grey = _tiny(encoder_weights=str(path), rgb_stem=False)
    stem = src.encoder.stages[0].patch_embed.proj.weight
    assert torch.allclose(grey.encoder.stages[0].patch_embed.proj.weight, stem.sum(1, keepdim=True))
    # the grey stem on one channel equals the RGB stem on the channel repeated
    x = torch.randn(1, 2, 1, 64, 64)
    rgb.eval(), grey.eval()
    grey.load_state_dict({k: v for k, v in rgb.state_dict().items() if k != "encoder.stages.0.patch_embed.proj.weight"},
                         strict=False)
    with torch.no_grad():
        assert torch.allclose(rgb(x).logits, grey(x).logits, atol=1e-4)


def test_hydra_config_builds_the_reference_model() -> None:
    from ssnet.engine.config import compose, model_kwargs

    kwargs = model_kwargs(compose(["model=vivim", "profile=paper"]))
    with torch.device("meta"):
        model = registry.build("vivim", **kwargs)
    assert _count(model) == 59_503_041 + 3 * 769
