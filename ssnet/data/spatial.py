"""Bring images and label maps onto the square evaluation grid (centre crop/pad or resize).

One helper serves the training dataset and the scorer, so a prediction and its
ground truth always pass through exactly the same geometry.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

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


# --------------------------------------------------------------------------- native <-> model grid
# One forward map (native grid -> optional isotropic resampling -> centre crop/pad or resize) and its
# exact inverse, used by training (inputs and targets), prediction (outputs back to the native grid)
# and scoring (which then compares on the native grid only).


def nearest_indices(n_in: int, n_out: int) -> np.ndarray:
    """Source index of each of ``n_out`` samples of an axis of ``n_in`` pixels (pixel centres, nearest-exact)."""
    return np.minimum(np.floor((np.arange(n_out) + 0.5) * n_in / n_out).astype(np.int64), n_in - 1)


def _resize_linear(array: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of the last two axes (pixel-centre convention, antialiased when shrinking)."""
    import torch
    import torch.nn.functional as F

    lead = array.shape[:-2]
    t = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32)).reshape(1, -1, *array.shape[-2:])
    shrink = shape[0] < array.shape[-2] or shape[1] < array.shape[-1]
    out = F.interpolate(t, size=shape, mode="bilinear", align_corners=False, antialias=shrink)
    return out.reshape(*lead, *shape).numpy()


@dataclass(frozen=True)
class Geometry:
    """How one scan maps onto the model grid, and back.

    native_shape: (H, W) of the cine/label. resampled_shape: (h, w) after resampling to
    ``spacing_mm`` (equal to native_shape without resampling). size/mode: the square model grid
    (``crop``: centre crop/pad of the resampled grid at ``offset`` = (top, left), negative = padding;
    ``resize``: nearest-exact/bilinear resize of the whole resampled grid).
    native_spacing: mm per native pixel (None when unknown).
    """

    native_shape: tuple[int, int]
    resampled_shape: tuple[int, int]
    size: int
    mode: str = "crop"
    native_spacing: tuple[float, float] | None = None

    @property
    def resampled(self) -> bool:
        return self.resampled_shape != self.native_shape

    @property
    def offset(self) -> tuple[int, int]:
        h, w = self.resampled_shape
        return (h - self.size) // 2, (w - self.size) // 2

    @property
    def scale(self) -> tuple[float, float]:
        """Native pixels per resampled pixel along (rows, cols)."""
        return self.native_shape[0] / self.resampled_shape[0], self.native_shape[1] / self.resampled_shape[1]

    def model_spacing(self) -> tuple[float, float] | None:
        """mm per model-grid pixel (None when the native spacing is unknown)."""
        if self.native_spacing is None:
            return None
        sr, sc = self.native_spacing[0] * self.scale[0], self.native_spacing[1] * self.scale[1]
        if self.mode == "resize":
            sr, sc = sr * self.resampled_shape[0] / self.size, sc * self.resampled_shape[1] / self.size
        return sr, sc

    def field_of_view_mm(self) -> tuple[float, float] | None:
        sp = self.model_spacing()
        return None if sp is None else (sp[0] * self.size, sp[1] * self.size)

    # ---------------------------------------------------------------- forward
    def image_forward(self, array: np.ndarray) -> np.ndarray:
        """(..., H, W) float image → (..., size, size): linear resampling, then the crop/resize."""
        out = _resize_linear(array, self.resampled_shape) if self.resampled else array.astype(np.float32, copy=False)
        return to_grid(out, self.size, self.mode)  # resize mode: nearest-exact, as the authors' code

    def label_forward(self, label: np.ndarray) -> np.ndarray:
        """(..., H, W) label map → (..., size, size): nearest resampling, then the crop/resize (nearest)."""
        out = label
        if self.resampled:
            rows = nearest_indices(self.native_shape[0], self.resampled_shape[0])
            cols = nearest_indices(self.native_shape[1], self.resampled_shape[1])
            out = out[..., rows[:, None], cols[None, :]]
        return to_grid(out, self.size, self.mode)

    # ---------------------------------------------------------------- inverse
    def _uncrop(self, array: np.ndarray, fill: float | int) -> np.ndarray:
        """(..., size, size) → (..., h, w): undo the crop (outside the field of view: ``fill``) or the resize."""
        h, w = self.resampled_shape
        if self.mode == "resize":
            if np.issubdtype(array.dtype, np.floating):
                return _resize_linear(array, (h, w))
            return array[..., nearest_indices(self.size, h)[:, None], nearest_indices(self.size, w)[None, :]]
        out = np.full(array.shape[:-2] + (h, w), fill, dtype=array.dtype)
        top, left = self.offset
        r0, c0 = max(top, 0), max(left, 0)  # where the crop starts in the resampled grid
        s_r0, s_c0 = max(-top, 0), max(-left, 0)  # where the resampled grid starts in the crop (padding)
        nr, nc = min(h, self.size), min(w, self.size)
        out[..., r0 : r0 + nr, c0 : c0 + nc] = array[..., s_r0 : s_r0 + nr, s_c0 : s_c0 + nc]
        return out

    def label_inverse(self, label: np.ndarray, fill: int = 0) -> np.ndarray:
        """(..., size, size) label map on the model grid → (..., H, W) on the native grid.

        Un-crop (pixels outside the field of view get ``fill``, background), then nearest
        un-resampling. Guarantee (tests/test_geometry.py): for a label ``y`` and ``f = label_forward``,
        ``label_inverse(f(y)) == y`` at every native pixel inside the field of view whenever the
        resampling does not shrink (target spacing ≤ native spacing, including no resampling); when
        it shrinks, the inverse is exact the other way round: ``f(label_inverse(z)) == z`` for any
        model-grid map ``z`` (the returned native map resamples back to exactly the model's output).
        """
        out = self._uncrop(label, fill)
        if self.resampled:
            rows = nearest_indices(self.resampled_shape[0], self.native_shape[0])
            cols = nearest_indices(self.resampled_shape[1], self.native_shape[1])
            out = out[..., rows[:, None], cols[None, :]]
        return out

    def image_inverse(self, array: np.ndarray, fill: float = 0.0) -> np.ndarray:
        """(..., size, size) float map (probabilities, uncertainty) → (..., H, W): un-crop, linear un-resampling."""
        out = self._uncrop(array.astype(np.float32, copy=False), fill)
        return _resize_linear(out, self.native_shape) if self.resampled else out

    def probabilities_inverse(self, probs: np.ndarray) -> np.ndarray:
        """(K, size, size) class probabilities → (H, W) label map on the native grid.

        Without resampling this is ``label_inverse(argmax)`` exactly. With resampling the probabilities
        are un-cropped (outside the field of view: background with certainty) and linearly un-resampled
        before the arg-max, as nnU-Net does, so boundaries are not staircased at the model's coarser pixels.
        """
        if not self.resampled:
            return self.label_inverse(probs.argmax(0).astype(np.uint8))
        fill = np.zeros((probs.shape[0],) + (1,) * (probs.ndim - 1), np.float32)
        fill[0] = 1.0
        native = np.stack([self.image_inverse(probs[k], fill=float(fill[k].flat[0])) for k in range(probs.shape[0])])
        return native.argmax(0).astype(np.uint8)

    def fov_mask(self) -> np.ndarray:
        """Boolean (H, W): native pixels the model sees (their prediction is not the fill value by construction)."""
        return self.label_inverse(np.ones((self.size, self.size), dtype=np.uint8), fill=0).astype(bool)


def geometry_for(
    native_shape: tuple[int, int],
    size: int,
    mode: str = "crop",
    spacing: tuple[float, float] | None = None,
    spacing_mm: float | None = None,
    where: object = None,
) -> Geometry:
    """The :class:`Geometry` of a scan: resampled to ``spacing_mm`` (isotropic, mm) when given.

    The resampled shape is ``round(H · spacing_row / spacing_mm)`` × ``round(W · spacing_col / spacing_mm)``,
    so its pixels are ``spacing_mm`` up to < 0.5 px of rounding over the image. ``where`` names the
    file in the error raised when ``spacing_mm`` is set but the scan's spacing is unknown.
    """
    if mode not in SPATIAL_MODES:
        raise ValueError(f"unknown spatial mode {mode!r}; available: {', '.join(SPATIAL_MODES)}")
    h, w = int(native_shape[0]), int(native_shape[1])
    known = spacing is not None and all(s is not None and math.isfinite(float(s)) and float(s) > 0 for s in spacing)
    native_spacing = (float(spacing[0]), float(spacing[1])) if known else None
    shape = (h, w)
    if spacing_mm is not None:
        if not float(spacing_mm) > 0:
            raise ValueError(f"data.spacing_mm must be a positive number of mm, got {spacing_mm}")
        if native_spacing is None:
            from ssnet.errors import input_error

            raise input_error(where, "data.spacing_mm is set but this scan's pixel spacing is unknown (empty spacing in manifest.csv)")
        shape = (max(1, round(h * native_spacing[0] / float(spacing_mm))), max(1, round(w * native_spacing[1] / float(spacing_mm))))
    return Geometry((h, w), shape, int(size), mode, native_spacing)
