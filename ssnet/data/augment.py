"""Batched joint augmentation of clips and masks on any device, a pure function of per-sample seeds.

The one train-time augmentation of the suite (CPU and GPU runs alike). It reproduces the torchvision v2
chain that the authors' code uses (``RandomHorizontalFlip``, ``RandomVerticalFlip``,
``RandomRotation(180, NEAREST, fill 0)``, ``ElasticTransform(alpha 33, sigma 5, NEAREST, fill 0)``,
one geometry shared by every frame and the mask) for a whole batch at once:

* **Parameters** are drawn per sample on the CPU from ``torch.Generator().manual_seed(seed)`` in
  exactly torchvision's order (h-flip ``rand(1) < 0.5``, v-flip, angle ``U(−180, 180)``, the two
  ``U(−1, 1)`` elastic noise fields ``(1, 1, H, W)``), so a sample's transform depends only on its
  seed, whatever the device, the batch or the batch position; with the sampler's seeds (derived from
  (run seed, step, position)) a resumed run sees exactly the batches of an uninterrupted one.
* **Application** runs on the batch's device: flips by ``torch.where``, the rotation as one batched
  affine ``grid_sample`` (nearest, zeros = fill 0) with torchvision's grid arithmetic, the elastic
  field blurred by a separable Gaussian (torchvision's kernel, reflect padding) and applied by a
  second ``grid_sample`` (nearest). Two nearest resamplings, as the reference: composing them into
  one would move a fraction of the pixels by one and change the distribution of the augmented data.
  The mask rides along as an extra channel (nearest sampling keeps its integer values).

Two opt-in additions for small real cohorts (off by default, so the default draws and outputs are unchanged):
``scale`` (a zoom factor drawn log-uniformly per sample, folded into the rotation's matrix: still one
nearest resampling) and ``gamma`` (an intensity gamma drawn log-uniformly per sample, applied to the
[0, 1] intensities before the geometry, so the fill value stays mid-grey). Their parameters are drawn
from the same per-sample generator after the reference ones.

``tests/test_augment.py`` checks it against the per-sample torchvision reference
(:class:`ssnet.data.dataset.Augment`) given the same seeds.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class AugmentParams:
    """Per-sample parameters of a batch (CPU tensors)."""

    hflip: torch.Tensor  # (B,) bool
    vflip: torch.Tensor  # (B,) bool
    angle: torch.Tensor  # (B,) float64, degrees, as torchvision's ``RandomRotation`` draws it
    noise: torch.Tensor  # (B, 2, H, W) float32: the unblurred U(-1, 1) fields of dx and dy
    zoom: torch.Tensor | None = None  # (B,) float64 zoom factors (> 1 enlarges), when ``scale`` is set
    gamma: torch.Tensor | None = None  # (B,) float64 intensity gammas, when ``gamma`` is set


@dataclass(frozen=True)
class BatchAugment:
    """Joint flips, rotation ±``rotation``° and elastic deformation (``alpha``, ``sigma``), fill 0.

    Opt-in: ``scale`` = (lo, hi) zoom range, ``gamma`` = (lo, hi) intensity-gamma range (both drawn
    log-uniformly); ``norm_mean``/``norm_std`` map the normalised frames back to [0, 1] for the gamma.
    """

    rotation: float = 180.0
    elastic_alpha: float = 33.0
    elastic_sigma: float = 5.0
    scale: tuple[float, float] | None = None
    gamma: tuple[float, float] | None = None
    norm_mean: float = 0.459
    norm_std: float = 0.223

    def __post_init__(self) -> None:
        for name in ("scale", "gamma"):
            rng = getattr(self, name)
            if rng is not None and not (len(rng) == 2 and 0 < float(rng[0]) <= float(rng[1])):
                raise ValueError(f"augment {name} must be a range [lo, hi] with 0 < lo <= hi, got {list(rng)}")

    def params(self, seeds: Sequence[int] | torch.Tensor, height: int, width: int, pin: bool = False) -> AugmentParams:
        """Draw every sample's parameters from its own seed (CPU generator: identical on every device).

        ``pin``: noise fields in pinned memory, so that their copy to a GPU does not block the host.
        """
        seeds = [int(s) for s in (seeds.tolist() if isinstance(seeds, torch.Tensor) else seeds)]  # keep them on the host
        g = torch.Generator()
        hflip, vflip, angle, zoom, gamma = [], [], [], [], []
        noise = torch.empty(len(seeds), 2, height, width, pin_memory=pin)
        for b, seed in enumerate(seeds):
            g.manual_seed(seed)
            hflip.append(bool(torch.rand(1, generator=g) < 0.5))
            vflip.append(bool(torch.rand(1, generator=g) < 0.5))
            angle.append(torch.empty(1).uniform_(-self.rotation, self.rotation, generator=g).item())
            noise[b, 0] = torch.rand(1, 1, height, width, generator=g)[0, 0] * 2 - 1
            noise[b, 1] = torch.rand(1, 1, height, width, generator=g)[0, 0] * 2 - 1
            if self.scale is not None:
                zoom.append(_log_uniform(self.scale, g))
            if self.gamma is not None:
                gamma.append(_log_uniform(self.gamma, g))
        as64 = lambda v: torch.tensor(v, dtype=torch.float64) if v else None  # noqa: E731
        return AugmentParams(torch.tensor(hflip), torch.tensor(vflip), torch.tensor(angle, dtype=torch.float64), noise,
                             as64(zoom), as64(gamma))

    def __call__(
        self, frames: torch.Tensor, labels: torch.Tensor, seeds: Sequence[int] | torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Augment ``frames`` (B, T, C, H, W) and ``labels`` (B, H, W) on their device; float32 frames out."""
        pin = frames.device.type == "cuda"
        with torch.profiler.record_function("BatchAugment.params"):
            p = self.params(seeds, frames.shape[-2], frames.shape[-1], pin=pin)
        with torch.profiler.record_function("BatchAugment.apply"):
            return self.apply(frames, labels, p)

    def apply(self, frames: torch.Tensor, labels: torch.Tensor, p: AugmentParams) -> tuple[torch.Tensor, torch.Tensor]:
        b, t, c, h, w = frames.shape
        dev = frames.device
        frames = frames.reshape(b, t * c, h, w).float()
        if p.gamma is not None:
            g = p.gamma.to(dev, torch.float32, non_blocking=True).view(b, 1, 1, 1)
            unit = (frames * self.norm_std + self.norm_mean).clamp(0.0, 1.0)
            frames = (unit.pow(g) - self.norm_mean) / self.norm_std
        x = torch.cat([frames, labels.reshape(b, 1, h, w).float()], 1)
        hf = p.hflip.to(dev, non_blocking=True).view(b, 1, 1, 1)
        vf = p.vflip.to(dev, non_blocking=True).view(b, 1, 1, 1)
        x = torch.where(hf, x.flip(-1), x)
        x = torch.where(vf, x.flip(-2), x)
        x = F.grid_sample(x, rotation_grid(p.angle, h, w, dev, p.zoom), mode="nearest",
                          padding_mode="zeros", align_corners=False)
        x = F.grid_sample(x, self.elastic_grid(p.noise.to(dev, non_blocking=True), h, w), mode="nearest",
                          padding_mode="zeros", align_corners=False)
        out_frames = x[:, : t * c].reshape(b, t, c, h, w)
        out_labels = x[:, t * c].round().to(labels.dtype)
        return out_frames, out_labels

    def elastic_grid(self, noise: torch.Tensor, h: int, w: int) -> torch.Tensor:
        """Identity grid + blurred displacement (B, H, W, 2), as ``torchvision`` ``ElasticTransform``."""
        k = int(8 * self.elastic_sigma + 1)
        k += 1 - k % 2
        d = gaussian_blur(noise, k, self.elastic_sigma) if self.elastic_sigma > 0 else noise
        d = torch.stack([d[:, 0] * (self.elastic_alpha / w), d[:, 1] * (self.elastic_alpha / h)], 1)
        grid = torch.empty(1, h, w, 2, device=noise.device)
        grid[..., 0].copy_(torch.linspace((-w + 1) / w, (w - 1) / w, w, device=noise.device))
        grid[..., 1].copy_(torch.linspace((-h + 1) / h, (h - 1) / h, h, device=noise.device).unsqueeze(-1))
        return grid + d.permute(0, 2, 3, 1)


def gaussian_kernel1d(size: int, sigma: float, device: torch.device | None = None) -> torch.Tensor:
    """torchvision v2's 1-D Gaussian kernel (its 2-D kernel is the outer product of two of these)."""
    lim = (size - 1) / (2.0 * math.sqrt(2.0))
    x = torch.linspace(-lim, lim, steps=size, device=device)
    return torch.softmax(x.div(sigma).pow(2).neg(), dim=0)


def gaussian_blur(x: torch.Tensor, size: int, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of (B, C, H, W) per channel, reflect padding (torchvision's kernel)."""
    b, c, h, w = x.shape
    k = gaussian_kernel1d(size, sigma, x.device)
    pad = size // 2
    y = F.pad(x.reshape(b * c, 1, h, w), [pad, pad, pad, pad], mode="reflect")
    y = F.conv2d(y, k.view(1, 1, 1, size))
    y = F.conv2d(y, k.view(1, 1, size, 1))
    return y.reshape(b, c, h, w)


def batch_augment_from_config(data_cfg) -> BatchAugment | None:
    """The train-time augmentation a ``data`` config asks for (None when ``data.augment`` is false).

    ``data.augment_scale`` / ``data.augment_gamma``: optional [lo, hi] ranges (null: off, the default).
    """
    if not bool(data_cfg.get("augment", False)):
        return None
    ranges = {k: data_cfg.get(f"augment_{k}") for k in ("scale", "gamma")}
    return BatchAugment(**{k: (float(v[0]), float(v[1])) if v is not None else None for k, v in ranges.items()},
                        norm_mean=float(data_cfg.get("norm_mean", 0.459)), norm_std=float(data_cfg.get("norm_std", 0.223)))


def _log_uniform(bounds: tuple[float, float], g: torch.Generator) -> float:
    """One draw, log-uniform in [lo, hi] (symmetric around 1 for ranges like (0.8, 1.25))."""
    lo, hi = math.log(float(bounds[0])), math.log(float(bounds[1]))
    return math.exp(torch.empty(1).uniform_(lo, hi, generator=g).item())


def rotation_grid(angles: torch.Tensor, h: int, w: int, device: torch.device | str = "cpu",
                  zooms: torch.Tensor | None = None) -> torch.Tensor:
    """Sampling grids (B, H, W, 2) on ``device`` of rotations about the centre, with torchvision's ``rotate`` arithmetic.

    ``zooms`` (B,), optional: each grid also scales the image by its factor about the centre (> 1 enlarges).
    Only the (B, 2, 3) matrices are made on the host; the grid itself is computed on the device.
    """
    rows = []
    zoom_list = zooms.tolist() if zooms is not None else [1.0] * len(angles)
    for angle, zoom in zip(angles.tolist(), zoom_list):
        rot = math.radians(-(angle % 360))  # torchvision: inverse matrix of the rotation by -angle
        cos, sin = math.cos(rot) / zoom, math.sin(rot) / zoom  # sampling at 1/zoom of the distance enlarges
        rows.append([cos, -(-sin), 0.0, -sin, cos, 0.0])
    theta = torch.tensor(rows, dtype=torch.float32).reshape(-1, 2, 3)
    scale = torch.tensor([0.5 * w, 0.5 * h])
    if torch.device(device).type == "cuda":
        theta, scale = theta.pin_memory(), scale.pin_memory()
    theta, scale = theta.to(device, non_blocking=True), scale.to(device, non_blocking=True)
    base = torch.empty(1, h, w, 3, device=device)
    base[..., 0].copy_(torch.linspace((1.0 - w) * 0.5, (w - 1.0) * 0.5, steps=w, device=device))
    base[..., 1].copy_(torch.linspace((1.0 - h) * 0.5, (h - 1.0) * 0.5, steps=h, device=device).unsqueeze_(-1))
    base[..., 2].fill_(1)
    scaled = theta.transpose(1, 2).div(scale)
    return base.view(1, h * w, 3).expand(len(rows), -1, -1).bmm(scaled).view(-1, h, w, 2)
