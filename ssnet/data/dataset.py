"""The training dataset: contract + split → preprocessed clips kept in memory.

Per scan (reference §2): select ``T`` evenly spaced frames, scale to [0, 1] (min–max, or
between two percentiles with ``intensity=percentile``), resample to the
isotropic ``spacing_mm`` when set (linear for images, nearest for labels), bring onto the
``size``×``size`` grid (centre crop/pad, or resize as in the authors' code), normalise with
the code's net affine map ``(x − 0.459) / 0.223``. The whole preprocessed cohort is kept in
memory as tensors (it fits), so training never waits on disk; :meth:`CineDataset.to` moves it
onto the training device once (optionally as float16). Train-time augmentation is joint over all
frames and the mask: flips, rotation (±180°, nearest) and elastic deformation, filling with 0 after
normalisation (mid-grey), as in the authors' code. It runs batched on the batch's device
(:mod:`ssnet.data.augment`, after the batch is on the device); :class:`Augment` is the per-sample
torchvision reference it is tested against.

Items: ``frames`` (T, 1, H, W) float32, ``label`` (H, W) int64, ``scan_id`` str. Batches
(:meth:`CineDataset.__getitems__`, one indexing of the in-memory tensors, no per-item Python work):
``frames`` (B, T, 1, H, W), ``label`` (B, H, W), ``index`` (B,) and, with sampler seeds, ``aug_seed`` (list of B ints).
Each scan's :class:`~ssnet.data.spatial.Geometry` (``dataset.geometries``) maps predictions back to its native grid.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from ssnet.data.augment import BatchAugment
from ssnet.data.contract import Scan, load_scan, scans, scans_in_split
from ssnet.data.spatial import Geometry, geometry_for
from ssnet.errors import input_error


@dataclass(frozen=True)
class ClipConfig:
    """How a scan becomes a model input."""

    frames: int = 10
    size: int = 224
    spatial: str = "crop"
    norm_mean: float = 0.459
    norm_std: float = 0.223
    spacing_mm: float | None = None  # isotropic in-plane resampling before the crop (None: native pixels)
    intensity: str = "minmax"  # minmax (the code) | percentile (clip to ``percentiles`` of the clip first)
    percentiles: tuple[float, float] = (0.5, 99.5)


INTENSITY_MODES = ("minmax", "percentile")


def scale_intensity(clip: np.ndarray, mode: str = "minmax", percentiles: tuple[float, float] = (0.5, 99.5)) -> np.ndarray:
    """Scale a clip to [0, 1]: by its min and max (the authors' code), or by two of its percentiles with the
    values beyond them clipped (robust to a few bright pixels: fat, flow artefacts; nnU-Net's rule for CT).
    A constant clip becomes zeros."""
    if mode == "minmax":
        lo, hi = float(clip.min()), float(clip.max())
    elif mode == "percentile":
        lo, hi = (float(v) for v in np.percentile(clip, percentiles))
        clip = np.clip(clip, lo, hi)
    else:
        raise ValueError(f"unknown data.intensity {mode!r}; available: {', '.join(INTENSITY_MODES)}")
    if not hi > lo:
        return np.zeros_like(clip)
    out = (clip - lo) / (hi - lo)
    return np.clip(out, 0.0, 1.0, out=out) if mode == "percentile" else out  # no float32 overshoot past 1


def frame_indices(source_frames: int, frames: int) -> np.ndarray:
    """``frames`` evenly spaced indices of ``source_frames`` (10 of 30 → 0, 3, …, 27)."""
    if frames < 1:
        raise ValueError(f"frames must be >= 1, got {frames}")
    if frames > source_frames:
        raise ValueError(f"{frames} frames requested but the cine has only {source_frames}")
    return (np.arange(frames) * source_frames) // frames


def scan_geometry(native_shape: tuple[int, int], cfg: ClipConfig, scan: Scan | None = None) -> Geometry:
    """The forward/inverse grid mapping of one scan under ``cfg`` (errors name the scan's cine)."""
    where = scan.cine if scan else None
    try:
        return geometry_for(native_shape, cfg.size, cfg.spatial, scan.spacing if scan else None, cfg.spacing_mm, where)
    except ValueError as exc:
        raise input_error(where, str(exc)) from None


def preprocess(
    cine: np.ndarray, label: np.ndarray | None, cfg: ClipConfig, scan: Scan | None = None, geometry: Geometry | None = None,
    shift: int = 0,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Turn a cine (T0, H, W) and label (H, W) into model tensors ``(T, 1, S, S)`` and ``(S, S)`` (None without label).

    ``shift`` moves every selected frame by that many source frames, cyclically (the cine is one heart beat):
    ``shift=1`` starts the clip one frame after the labelled (ED) frame.
    """
    try:
        idx = (frame_indices(cine.shape[0], cfg.frames) + int(shift)) % cine.shape[0]
    except ValueError as exc:
        raise input_error(scan.cine if scan else None, str(exc)) from None
    geo = geometry or scan_geometry(cine.shape[1:], cfg, scan)
    clip = cine[idx].astype(np.float32)
    clip = scale_intensity(clip, cfg.intensity, cfg.percentiles)
    clip = (geo.image_forward(clip) - cfg.norm_mean) / cfg.norm_std
    frames = torch.from_numpy(np.ascontiguousarray(clip, dtype=np.float32)).unsqueeze(1)
    if label is None:
        return frames, None
    return frames, torch.from_numpy(np.ascontiguousarray(geo.label_forward(label))).long()


def outside_fov_counts(label: np.ndarray | None, geo: Geometry, num_classes: int = 4) -> dict[int, int]:
    """Ground-truth pixels per class (1..K-1) outside the field of view of ``geo`` ({} without label)."""
    if label is None:
        return {}
    outside = label[~geo.fov_mask()]
    return {c: int((outside == c).sum()) for c in range(1, num_classes)}


class Augment:
    """Per-sample torchvision v2 reference of the joint augmentation of a clip (T, 1, H, W) and mask (H, W).

    Training uses :class:`ssnet.data.augment.BatchAugment` (same transforms, batched, on the device);
    this class is kept as the reference it is tested against.
    """

    def __init__(self, rotation: float = 180.0, elastic_alpha: float = 33.0, elastic_sigma: float = 5.0) -> None:
        from torchvision.transforms import InterpolationMode
        from torchvision.transforms import v2

        self.transform = v2.Compose(
            [
                v2.RandomHorizontalFlip(),
                v2.RandomVerticalFlip(),
                v2.RandomRotation(rotation, interpolation=InterpolationMode.NEAREST, fill=0.0),
                v2.ElasticTransform(alpha=elastic_alpha, sigma=elastic_sigma, interpolation=InterpolationMode.NEAREST, fill=0.0),
            ]
        )

    def __call__(self, frames: torch.Tensor, label: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        from torchvision import tv_tensors

        t = frames.shape[0]
        image = tv_tensors.Image(frames[:, 0])  # frames as channels: one geometry for all frames
        mask = tv_tensors.Mask(label)
        image, mask = self.transform(image, mask)
        return image.as_subclass(torch.Tensor).reshape(t, 1, *image.shape[-2:]), mask.as_subclass(torch.Tensor)


class CineDataset(Dataset):
    """In-memory preprocessed clips of one split part, or of a sequence of parts (``part=None``: every scan).

    ``require_labels=False`` (prediction) accepts scans without a label: ``labels`` is then None
    when any scan lacks one. ``outside_fov[i]`` counts, per class 1..K-1, the ground-truth pixels of
    scan ``i`` that lie outside the model's field of view (they can only be missed; {} without label).

    ``time_shifts`` (training only, ``data.augment_time_shift``): each scan is held once per shift, its
    clip started that many source frames from the labelled frame (:func:`preprocess`) with the same label,
    so the frames next to ED teach the ED contour too. ``scans``/``geometries`` are repeated to match.
    """

    def __init__(
        self,
        data_dir: str | Path,
        part: str | tuple[str, ...] | list[str] | None,
        cfg: ClipConfig = ClipConfig(),
        augment: bool | BatchAugment = False,
        max_scans: int | None = None,
        require_labels: bool = True,
        time_shifts: tuple[int, ...] = (0,),
    ) -> None:
        self.data_dir = Path(data_dir)
        self.part = part
        self.cfg = cfg
        if part is None:
            self.scans = scans(self.data_dir)
        else:  # one part, or several (``train.fit_parts=[train,val]``) in that order
            self.scans = [s for p in ([part] if isinstance(part, str) else part) for s in scans_in_split(self.data_dir, p)]
        if max_scans is not None:
            self.scans = self.scans[: int(max_scans)]
        clips, labels, self.geometries, self.outside_fov, held = [], [], [], [], []
        for scan in self.scans:
            if scan.label is None and require_labels:
                raise input_error(self.data_dir / "manifest.csv", f"scan {scan.scan_id!r} has no label; training and validation need labels")
            cine, label = load_scan(scan)
            geo = scan_geometry(cine.shape[1:], cfg, scan)
            outside = outside_fov_counts(label, geo)
            for shift in time_shifts:
                clip, lab = preprocess(cine, label, cfg, scan, geo, shift)
                clips.append(clip)
                labels.append(lab)
            held += [scan] * len(time_shifts)
            self.geometries += [geo] * len(time_shifts)
            self.outside_fov += [outside] * len(time_shifts)
        self.scans = held
        self.frames = torch.stack(clips)  # (N, T, 1, S, S)
        self.labels = None if any(lab is None for lab in labels) else torch.stack(labels)  # (N, S, S); None: unlabeled
        self.augment = _as_augment(augment)

    @classmethod
    def from_tensors(cls, frames: torch.Tensor, labels: torch.Tensor, cfg: ClipConfig = ClipConfig(),
                     augment: bool | BatchAugment = False) -> "CineDataset":
        """A dataset over given preprocessed tensors (benchmarks, tests); scan ids ``synthetic_<i>``."""
        ds = cls.__new__(cls)
        ds.data_dir, ds.part, ds.cfg = Path("."), "synthetic", cfg
        ds.scans = [Scan(f"synthetic_{i}", f"synthetic_{i}", Path("."), Path("."), None) for i in range(len(frames))]
        ds.frames, ds.labels = frames, labels
        ds.geometries, ds.outside_fov = [], []
        ds.augment = _as_augment(augment)
        return ds

    def to(self, device: torch.device | str, frames_dtype: torch.dtype | None = None) -> "CineDataset":
        """Move the cohort onto ``device`` once (frames optionally stored as ``frames_dtype``, e.g. float16)."""
        self.frames = self.frames.to(device, frames_dtype or self.frames.dtype)
        self.labels = self.labels.to(device) if self.labels is not None else None
        return self

    def __len__(self) -> int:
        return len(self.scans)

    def __getitem__(self, item: int | tuple[int, int]) -> dict:
        """``item`` is an index, or ``(index, augmentation seed)``; augmented (float32) when the dataset augments."""
        if self.augment is not None and not isinstance(item, (tuple, list)):
            item = (item, int(torch.randint(2**31, (1,))))  # no sampler seed: draw one from the global RNG
        batch = self.__getitems__([item])
        if self.augment is not None:
            batch = augment_batch(batch, self.augment)
        return {"frames": batch["frames"][0], "label": batch["label"][0], "scan_id": self.scans[batch["index"][0]].scan_id}

    def __getitems__(self, items: list) -> dict:
        """One batch from indices or ``(index, augmentation seed)`` pairs (:class:`StepBatchSampler`), unaugmented."""
        seeded = bool(items) and isinstance(items[0], (tuple, list))
        index = [int(it[0]) if seeded else int(it) for it in items]
        idx = torch.tensor(index).to(self.frames.device, non_blocking=True)  # no stream synchronisation on a GPU
        batch = {"frames": self.frames[idx], "label": self.labels[idx], "index": torch.tensor(index)}
        if seeded:  # a list, not a tensor: stays on the host when the batch moves (drawing needs no device sync)
            batch["aug_seed"] = [int(it[1]) for it in items]
        return batch


def _as_augment(augment: bool | BatchAugment) -> BatchAugment | None:
    """``True``: the default augmentation; a :class:`BatchAugment`: that one; ``False``: none."""
    if isinstance(augment, BatchAugment):
        return augment
    return BatchAugment() if augment else None


def collate_batch(batch: dict) -> dict:
    """DataLoader ``collate_fn`` for :meth:`CineDataset.__getitems__`: the batch is already made."""
    return batch


def augment_batch(batch: dict, augment: BatchAugment | None) -> dict:
    """Augment a batch on its device from its per-sample seeds (no seeds or no augment: frames as float32)."""
    frames, label = batch["frames"], batch["label"]
    if augment is not None and "aug_seed" in batch:
        frames, label = augment(frames, label, batch["aug_seed"])
    return {**batch, "frames": frames.float(), "label": label}
