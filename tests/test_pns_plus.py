"""PNS+ baseline: NS attention against a naive loop, shapes, clip handling, loss, parameter counts."""
from __future__ import annotations

import itertools

import pytest
import torch

from ssnet import registry
from ssnet.models.ns_attention import NSBlock, ns_aggregate, ns_relevance


def _naive_relevance(q: torch.Tensor, k: torch.Tensor, r: int, d: int) -> torch.Tensor:
    b, tq, c, h, w = q.shape
    tk, side = k.shape[1], 2 * r + 1
    out = torch.zeros(b, tq, tk * side * side, h, w, dtype=q.dtype)
    for bi, qi, ti, i, j, y, x in itertools.product(*map(range, (b, tq, tk, side, side, h, w))):
        yy, xx = y + (i - r) * d, x + (j - r) * d
        if 0 <= yy < h and 0 <= xx < w:
            out[bi, qi, ti * side * side + i * side + j, y, x] = (q[bi, qi, :, y, x] * k[bi, ti, :, yy, xx]).sum()
    return out


def _naive_aggregate(s: torch.Tensor, v: torch.Tensor, r: int, d: int) -> torch.Tensor:
    b, tq, _, h, w = s.shape
    tk, c, side = v.shape[1], v.shape[2], 2 * r + 1
    out = torch.zeros(b, tq, c, h, w, dtype=v.dtype)
    for bi, qi, ti, i, j, y, x in itertools.product(*map(range, (b, tq, tk, side, side, h, w))):
        yy, xx = y + (i - r) * d, x + (j - r) * d
        if 0 <= yy < h and 0 <= xx < w:
            out[bi, qi, :, y, x] += s[bi, qi, ti * side * side + i * side + j, y, x] * v[bi, ti, :, yy, xx]
    return out


@pytest.mark.parametrize(("radius", "dilation"), [(1, 1), (1, 3), (3, 1), (3, 2)])
def test_ns_relevance_and_aggregation_match_a_naive_loop(radius: int, dilation: int) -> None:
    g = torch.Generator().manual_seed(radius * 10 + dilation)
    q = torch.randn(1, 2, 3, 5, 6, generator=g, dtype=torch.float64)
    k = torch.randn(1, 3, 3, 5, 6, generator=g, dtype=torch.float64)
    v = torch.randn(1, 3, 3, 5, 6, generator=g, dtype=torch.float64)
    scores = ns_relevance(q, k, radius, dilation)
    assert scores.shape == (1, 2, 3 * (2 * radius + 1) ** 2, 5, 6)
    torch.testing.assert_close(scores, _naive_relevance(q, k, radius, dilation))
    s = torch.randn(scores.shape, generator=g, dtype=torch.float64)  # independent weights, borders included
    torch.testing.assert_close(ns_aggregate(s, v, radius, dilation), _naive_aggregate(s, v, radius, dilation))


def test_ns_relevance_scores_zero_outside_the_map() -> None:
    q, k = torch.ones(1, 1, 2, 4, 4), torch.ones(1, 1, 2, 4, 4)
    scores = ns_relevance(q, k, 3, 4).view(1, 1, 7, 7, 4, 4)
    assert scores[0, 0, 3, 3].eq(2).all()  # centre offset always inside
    assert scores[0, 0, 0, 0].eq(0).all()  # offset (-12, -12) never inside a 4x4 map


def test_ns_block_gate_and_unnormalised_aggregation() -> None:
    torch.manual_seed(0)
    block = NSBlock(8, (4, 4), heads=2, radius=1, dilations=(1, 2))
    q, kv = torch.randn(2, 1, 8, 4, 4), torch.randn(2, 3, 8, 4, 4)
    out = block(q, kv)
    assert out.shape == (2, 1, 8, 4, 4)
    # recompute by hand: raw-score aggregation, gate = max over heads and positions of the softmax
    proj = lambda conv, x: conv(x.transpose(1, 2)).transpose(1, 2).chunk(2, 2)  # noqa: E731
    outs, gates = [], []
    for qi, ki, vi, d in zip(proj(block.query, q), proj(block.key, kv), proj(block.value, kv), (1, 2)):
        s = ns_relevance(block.query_norm(qi), ki, 1, d) / 2.0
        gates.append(s.softmax(2).amax(2))
        outs.append(ns_aggregate(s, vi, 1, d))
    want = block.proj(torch.cat(outs, 2).transpose(1, 2)).transpose(1, 2) * torch.maximum(*gates).unsqueeze(2)
    torch.testing.assert_close(out, want)


def test_query_layernorm_follows_the_input_size() -> None:
    small = registry.build("pns_plus", frames=4, img_size=64)
    assert list(small.ns_global.query_norm.normalized_shape) == [8, 4, 4]
    assert list(small.ns_local.query_norm.normalized_shape) == [8, 4, 4]
    with torch.device("meta"):
        paper = registry.build("pns_plus", frames=10, img_size=224)
    assert list(paper.ns_global.query_norm.normalized_shape) == [8, 14, 14]
    with pytest.raises(ValueError, match="built for 64x64"):
        small(torch.randn(1, 4, 1, 96, 96))


def test_forward_backward_4_frames() -> None:
    torch.manual_seed(0)
    model = registry.build("pns_plus", frames=4, img_size=64)
    out = model(torch.randn(2, 4, 1, 64, 64))
    assert out.logits.shape == (2, 4, 64, 64)
    assert out.aux["frame_logits"].shape == (2, 3, 4, 64, 64)  # one window of the 3 local frames
    assert torch.allclose(out.logits.exp().sum(1), torch.ones(2, 64, 64), atol=1e-4)
    loss = model.loss(out, torch.randint(0, 4, (2, 64, 64)))
    loss.backward()
    assert torch.isfinite(loss)
    # every parameter outside layer4/fc takes part; layer4/fc never do
    unused = {id(p) for m in model.unused_modules() for p in m.parameters()}
    for p in model.parameters():
        assert (p.grad is not None) == (id(p) not in unused)
    used = sum(p.numel() for p in model.parameters() if p.grad is not None)
    assert used == 9_785_715 - 2 * 2 * 8 * (14 * 14 - 4 * 4)  # the paper count less the smaller LayerNorms


@pytest.mark.parametrize(("frames", "windows"), [(5, 1), (10, 5), (30, 25)])
def test_eval_shapes_for_any_clip_length(frames: int, windows: int) -> None:
    torch.manual_seed(0)
    model = registry.build("pns_plus", frames=frames, img_size=64).eval()
    with torch.no_grad():
        out = model(torch.randn(1, frames, 1, 64, 64))
    assert out.logits.shape == (1, 4, 64, 64)
    assert out.aux["frame_logits"].shape == (1, windows * min(5, frames - 1), 4, 64, 64)
    assert torch.isfinite(out.logits).all()


def test_clip_probability_is_mean_over_windows_then_frames() -> None:
    from baselines.pns_plus import window_starts

    assert window_starts(9, 5) == [0, 1, 2, 3, 4]
    assert window_starts(3, 5) == [0]
    assert window_starts(9, 5, stride=3) == [0, 3, 4]
    torch.manual_seed(0)
    model = registry.build("pns_plus", frames=7, img_size=64).eval()  # 6 local frames: windows [0..4], [1..5]
    with torch.no_grad():
        out = model(torch.randn(1, 7, 1, 64, 64))
    p = out.aux["frame_logits"].softmax(2)[0].view(2, 5, 4, 64, 64)
    frames = [p[0, 0], *((p[0, i + 1] + p[1, i]) / 2 for i in range(4)), p[1, 4]]
    torch.testing.assert_close(out.logits.exp()[0], torch.stack(frames).mean(0), atol=1e-5, rtol=1e-4)
    model.eval_frame = -1
    with torch.no_grad():
        last = model(torch.randn(1, 7, 1, 64, 64))
    torch.testing.assert_close(last.logits.exp()[0], last.aux["frame_logits"].softmax(2)[0, -1], atol=1e-5, rtol=1e-4)


def test_loss_bce_and_ce() -> None:
    from ssnet.models.base import SegOutput

    model = registry.build("pns_plus", frames=2, img_size=64)
    target = torch.randint(0, 4, (2, 64, 64))
    logits = torch.randn(2, 3, 4, 64, 64)
    out = SegOutput(torch.zeros(2, 4, 64, 64), {"frame_logits": logits})
    onehot = torch.nn.functional.one_hot(target, 4).permute(0, 3, 1, 2).float()
    bce = torch.nn.functional.binary_cross_entropy_with_logits
    want = torch.stack([bce(logits[:, i], onehot) for i in range(3)]).mean()
    torch.testing.assert_close(model.loss(out, target), want)
    model.loss_name = "ce"
    want = torch.stack([torch.nn.functional.cross_entropy(logits[:, i], target) for i in range(3)]).mean()
    torch.testing.assert_close(model.loss(out, target), want)


def test_bad_geometry_has_clear_errors() -> None:
    with pytest.raises(ValueError, match="at least 2 frames"):
        registry.build("pns_plus", frames=1, img_size=64)
    with pytest.raises(ValueError, match="divisible by 16, got 72"):
        registry.build("pns_plus", frames=4, img_size=72)
    with pytest.raises(ValueError, match="eval_frame 0 is the anchor"):
        registry.build("pns_plus", frames=4, img_size=64, eval_frame=0)


def test_parameter_counts_at_the_paper_config() -> None:
    # reference: 26.87 M registered, 9.79 M used (original: K = 1, LayerNorm [8, 16, 28], plus an unused
    # 1024->32 `squeeze` conv). Here: backbone used 8,671,048 (stem + layer1-3) + LightRFB high 789,829
    # + LightRFB low 305,845 + 2 NS blocks x (4 x 1,024 + LN 3,136) + decoder 4,465 + K=4 head 64.
    from ssnet.engine.models_cli import paper_kwargs

    with torch.device("meta"):
        model = registry.build("pns_plus", **paper_kwargs("pns_plus"))
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    registered = count(model)
    used = registered - sum(count(m) for m in model.unused_modules())
    assert registered == 26_833_019  # + layer4 14,998,304 + fc 2,049,000
    assert used == 9_785_715
    assert abs(registered / 26.87e6 - 1) < 0.05
    assert abs(used / 9.79e6 - 1) < 0.05
    # the arithmetic against the original: LN [8,14,14] instead of [8,16,28] (-8,064 over two blocks),
    # K = 4 head (+48), no `squeeze` conv (-32,864 registered)
    assert used == 9_793_731 - 8_064 + 48
    assert registered == 26_873_899 - 8_064 + 48 - 32_864


def test_hydra_config_builds() -> None:
    from ssnet.engine.config import compose, model_kwargs

    cfg = compose(["model=pns_plus", "profile=smoke"])
    kwargs = model_kwargs(cfg)
    assert kwargs["window"] == 5 and kwargs["loss"] == "bce" and kwargs["backbone"] == "resnet18"
    assert registry.get("pns_plus").label == "PNS+"


def test_smoke_training_run(tiny_split_dataset, tmp_path, capsys) -> None:
    import json
    from pathlib import Path

    from ssnet.cli import main as cli

    capsys.readouterr()
    code = cli(["train", "model=pns_plus", "profile=smoke", "data.frames=3", "data.size=32", "train.batch_size=2",
                f"data.dir={tiny_split_dataset}", f"run_root={tmp_path / 'runs'}"])
    out = capsys.readouterr()
    assert code == 0, out.err[-2000:]
    run_dir = Path(out.out.strip().splitlines()[-1])
    assert json.loads((run_dir / "run.json").read_text())["status"] == "done"
    assert sorted(p.name for p in (run_dir / "predictions").iterdir()) == ["P05_sl0.nii.gz", "P05_sl1.nii.gz"]


def test_local_backbone_weights_load(tmp_path) -> None:
    import timm

    src = timm.create_model("resnet18", pretrained=False)
    state = {k: v for k, v in src.state_dict().items() if not k.startswith("fc.")}  # fc is optional
    torch.save({"state_dict": state}, tmp_path / "r18.pt")
    small = {"frames": 3, "img_size": 64, "backbone": "resnet18"}
    model = registry.build("pns_plus", **small, encoder_weights=str(tmp_path / "r18.pt"))
    torch.testing.assert_close(model.encoder.layer3[0].conv1.weight, src.layer3[0].conv1.weight)
    del state["layer1.0.conv1.weight"]
    torch.save(state, tmp_path / "broken.pt")
    with pytest.raises(Exception, match="lack 1 tensor"):
        registry.build("pns_plus", **small, encoder_weights=str(tmp_path / "broken.pt"))
