"""Bring images and label maps onto the square evaluation grid (centre crop/pad or resize).

One helper serves the training dataset and the scorer, so a prediction and its
ground truth always pass through exactly the same geometry.
"""
from __future__ import annotations

import math

import numpy as np

SPATIAL_MODES = ("crop", "resize")


def crop_or_pad(array: np.ndarray, size: int) -> np.ndarray:
    """Centre-crop the last two axes to ``size``; zero-pad any side shorter than ``size``."""
    h, w = array.shape[-2:]
    out = np.zeros(array.shape[:-2] + (size, size), dtype=array.dtype)
    top, left = (h - size) // 2, (w - size) // 2
    src_r0, src_c0 = max(top, 0), max(left, 0)
    dst_r0, dst_c0 = max(-top, 0), max(-left, 0)
    nr, nc = min(h, size), min(w, size)
    out[..., dst_r0 : dst_r0 + nr, dst_c0 : dst_c0 + nc] = array[..., src_r0 : src_r0 + nr, src_c0 : src_c0 + nc]
    return out


def resize_nearest(array: np.ndarray, size: int) -> np.ndarray:
    """Resize the last two axes to ``size`` with PyTorch's ``nearest-exact`` rule (the authors' code)."""
    h, w = array.shape[-2:]
    # nearest-exact: src = floor((dst + 0.5) * in / out), clipped
    rows = np.minimum(np.floor((np.arange(size) + 0.5) * h / size).astype(np.int64), h - 1)
    cols = np.minimum(np.floor((np.arange(size) + 0.5) * w / size).astype(np.int64), w - 1)
    return array[..., rows[:, None], cols[None, :]]


def to_grid(array: np.ndarray, size: int, mode: str = "crop") -> np.ndarray:
    """Map the last two axes of ``array`` onto a ``size``×``size`` grid by ``mode`` (crop or resize)."""
    if mode == "crop":
        return crop_or_pad(array, size)
    if mode == "resize":
        return resize_nearest(array, size)
    raise ValueError(f"unknown spatial mode {mode!r}; available: {', '.join(SPATIAL_MODES)}")


def grid_spacing(
    spacing: tuple[float, float] | None, native_shape: tuple[int, int], size: int, mode: str = "crop"
) -> tuple[float, float] | None:
    """Pixel spacing (mm) on the evaluation grid; None when the native spacing is unknown."""
    if spacing is None or any(s is None or not math.isfinite(float(s)) for s in spacing):
        return None
    sr, sc = float(spacing[0]), float(spacing[1])
    if mode == "resize":
        return sr * native_shape[0] / size, sc * native_shape[1] / size
    return sr, sc
