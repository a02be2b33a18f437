"""Batched on-device augmentation: equal to the per-sample torchvision reference, a pure function of the seeds."""
from __future__ import annotations

import pytest
import torch

from ssnet.data.augment import BatchAugment
from ssnet.data.dataset import Augment, augment_batch

SEEDS = [11, 2**32 - 5, 7, 123456, 0, 99]


def _clips(b: int = 6, t: int = 3, h: int = 40, w: int = 36) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    frames = torch.randn(b, t, 1, h, w, generator=g)
    labels = torch.randint(0, 4, (b, h, w), generator=g)
    return frames, labels


def _reference(frames: torch.Tensor, labels: torch.Tensor, seeds: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    ref, out_f, out_l = Augment(), [], []
    for i, seed in enumerate(seeds):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            f, lab = ref(frames[i], labels[i])
        out_f.append(f)
        out_l.append(lab)
    return torch.stack(out_f), torch.stack(out_l)


def test_batched_equals_per_sample_torchvision_reference() -> None:
    frames, labels = _clips()
    ref_f, ref_l = _reference(frames, labels, SEEDS)
    out_f, out_l = BatchAugment()(frames, labels, SEEDS)
    assert out_f.shape == frames.shape and out_l.shape == labels.shape and out_l.dtype == torch.int64
    # same parameters and the same two nearest resamplings: equal up to rare rounding at pixel boundaries
    assert (out_f != ref_f).float().mean() < 1e-3
    assert (out_l != ref_l).float().mean() < 1e-3
    # nearest sampling: every output value is an input value of the same sample or the fill 0
    for i in range(len(SEEDS)):
        allowed = torch.cat([frames[i].flatten(), torch.zeros(1)])
        assert torch.isin(out_f[i].flatten(), allowed).all()
    assert set(out_l.unique().tolist()) <= {0, 1, 2, 3}


def test_pure_function_of_seed_whatever_the_batch() -> None:
    frames, labels = _clips()
    aug = BatchAugment()
    a_f, a_l = aug(frames, labels, SEEDS)
    torch.manual_seed(12345)  # the global RNG plays no part
    b_f, b_l = aug(frames, labels, SEEDS)
    assert torch.equal(a_f, b_f) and torch.equal(a_l, b_l)
    # a sample's transform does not depend on its batch or position
    rev = list(range(len(SEEDS)))[::-1]
    r_f, r_l = aug(frames[rev], labels[rev], [SEEDS[i] for i in rev])
    assert torch.equal(r_f, a_f[rev]) and torch.equal(r_l, a_l[rev])
    one_f, one_l = aug(frames[2:3], labels[2:3], SEEDS[2:3])
    assert torch.equal(one_f[0], a_f[2]) and torch.equal(one_l[0], a_l[2])
    # different seeds, different transforms
    c_f, _ = aug(frames, labels, [s + 1 for s in SEEDS])
    assert all(not torch.equal(c_f[i], a_f[i]) for i in range(len(SEEDS)))


def test_params_match_torchvision_draw_order() -> None:
    p = BatchAugment().params([5], 8, 8)
    torch.manual_seed(5)
    assert bool(torch.rand(1) < 0.5) == bool(p.hflip[0]) and bool(torch.rand(1) < 0.5) == bool(p.vflip[0])
    assert torch.empty(1).uniform_(-180, 180).item() == p.angle[0].item()
    assert torch.equal(torch.rand(1, 1, 8, 8)[0, 0] * 2 - 1, p.noise[0, 0])


def test_augment_batch_only_with_seeds_and_float16_storage() -> None:
    frames, labels = _clips(b=2)
    plain = augment_batch({"frames": frames.half(), "label": labels}, BatchAugment())
    assert plain["frames"].dtype == torch.float32 and torch.equal(plain["label"], labels)
    seeded = augment_batch({"frames": frames, "label": labels, "aug_seed": SEEDS[:2]}, BatchAugment())
    assert torch.equal(seeded["frames"], BatchAugment()(frames, labels, SEEDS[:2])[0])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_equals_cpu() -> None:
    frames, labels = _clips(b=6, t=10, h=96, w=96)
    cpu_f, cpu_l = BatchAugment()(frames, labels, SEEDS)
    gpu_f, gpu_l = BatchAugment()(frames.cuda(), labels.cuda(), SEEDS)
    assert (gpu_f.cpu() != cpu_f).float().mean() < 1e-3
    assert (gpu_l.cpu() != cpu_l).float().mean() < 1e-3


def test_zoom_and_gamma_are_opt_in_and_do_what_they_say() -> None:
    from ssnet.data.augment import batch_augment_from_config

    frames, labels = _clips(b=2, h=32, w=32)
    # off by default: the reference draws and outputs are unchanged
    p = BatchAugment().params(SEEDS[:2], 32, 32)
    assert p.zoom is None and p.gamma is None
    # extra draws come after the reference ones: the shared parameters do not move
    q = BatchAugment(scale=(0.8, 1.25), gamma=(0.7, 1.4)).params(SEEDS[:2], 32, 32)
    assert torch.equal(p.angle, q.angle) and torch.equal(p.noise, q.noise) and torch.equal(p.hflip, q.hflip)
    assert ((q.zoom >= 0.8) & (q.zoom <= 1.25)).all() and ((q.gamma >= 0.7) & (q.gamma <= 1.4)).all()
    # a fixed zoom of 2 (no rotation, no elastic, flips cannot change a centred square) doubles a square's side
    square = torch.zeros(1, 32, 32, dtype=torch.long)
    square[:, 12:20, 12:20] = 1
    still = BatchAugment(rotation=0.0, elastic_alpha=0.0, scale=(2.0, 2.0))
    _, zoomed = still(torch.zeros(1, 1, 1, 32, 32), square, [3])
    assert zoomed.sum().item() == 16 * 16
    # gamma acts on the [0, 1] intensities: 0.25 with gamma 2 becomes 0.0625; the mask is untouched
    gam = BatchAugment(rotation=0.0, elastic_alpha=0.0, gamma=(2.0, 2.0))
    mid = torch.full((1, 1, 1, 32, 32), (0.25 - 0.459) / 0.223)
    out_f, out_l = gam(mid, square, [3])
    torch.testing.assert_close(out_f * 0.223 + 0.459, torch.full_like(out_f, 0.0625), atol=1e-5, rtol=0)
    assert torch.equal(out_l, square)
    # a pure function of the seeds
    aug = BatchAugment(scale=(0.8, 1.25), gamma=(0.7, 1.4))
    a, b = aug(frames, labels, SEEDS[:2]), aug(frames, labels, SEEDS[:2])
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    # from the data config; bad ranges are named
    from omegaconf import OmegaConf

    cfg = OmegaConf.create({"augment": True, "augment_scale": [0.9, 1.1], "augment_gamma": None})
    assert batch_augment_from_config(cfg).scale == (0.9, 1.1) and batch_augment_from_config(cfg).gamma is None
    assert batch_augment_from_config(OmegaConf.create({"augment": False})) is None
    with pytest.raises(ValueError, match="augment scale"):
        BatchAugment(scale=(1.2, 0.8))
