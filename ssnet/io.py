"""Atomic file writes and NIfTI/array reading shared by every module.

Every result, split and cache goes through :func:`atomic_write`: written to a
temporary file in the same folder, fsynced, then renamed, so an interrupted
write never leaves a partial file that a later run would trust.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ssnet.errors import input_error


def _read_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _read_umask()


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "w", overwrite: bool = True) -> Iterator[Any]:
    """Open a temporary file next to ``path``; rename it onto ``path`` on success.

    Args:
        path: final destination.
        mode: ``"w"`` (text) or ``"wb"`` (binary).
        overwrite: if False and ``path`` exists, raise instead of replacing it.
    """
    path = Path(path)
    if not overwrite and path.exists():
        raise input_error(path, "already exists; refusing to overwrite it")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8", "newline": ""})) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644 & ~_UMASK)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | os.PathLike, text: str, overwrite: bool = True) -> None:
    """Write ``text`` to ``path`` atomically."""
    with atomic_write(path, "w", overwrite=overwrite) as fh:
        fh.write(text)


def atomic_write_csv(df: Any, path: str | os.PathLike, overwrite: bool = True, **to_csv: Any) -> None:
    """Write a pandas DataFrame as CSV atomically (``index=False`` unless given); a ``.gz`` path is
    gzip-compressed reproducibly (no timestamp in the header: the same table gives the same bytes)."""
    import gzip

    to_csv.setdefault("index", False)
    if str(path).endswith(".gz"):
        with atomic_write(path, "wb", overwrite=overwrite) as fh:
            fh.write(gzip.compress(df.to_csv(**to_csv).encode("utf-8"), mtime=0))
        return
    with atomic_write(path, "w", overwrite=overwrite) as fh:
        df.to_csv(fh, **to_csv)


def atomic_write_json(obj: Any, path: str | os.PathLike, overwrite: bool = True) -> None:
    """Write ``obj`` as indented, key-sorted JSON atomically."""
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n", overwrite=overwrite)


def save_nifti(path: str | os.PathLike, array: np.ndarray, spacing: tuple[float, ...] | None = None) -> None:
    """Save ``array`` as NIfTI (identity-like affine with ``spacing`` on the diagonal), atomically.

    The output is byte-identical for identical inputs (no timestamps; gzip mtime 0).
    """
    import gzip

    import nibabel as nib

    path = Path(path)
    zooms = list(spacing or ()) + [1.0] * (array.ndim - len(spacing or ()))
    affine = np.diag([float(z) for z in zooms[:3]] + [1.0] * (4 - min(3, len(zooms[:3]))))[:4, :4]
    img = nib.Nifti1Image(np.asarray(array), affine)
    img.header.set_zooms(tuple(float(z) for z in zooms[: array.ndim]))
    raw = img.to_bytes()
    with atomic_write(path, "wb") as fh:
        if path.name.endswith(".gz"):
            fh.write(gzip.compress(raw, compresslevel=1, mtime=0))
        else:
            fh.write(raw)


def load_nifti(path: str | os.PathLike) -> tuple[np.ndarray, tuple[float, ...]]:
    """Load a NIfTI file as ``(array, zooms)``; any failure becomes one clear error naming the file."""
    import nibabel as nib

    path = Path(path)
    if not path.is_file():
        raise input_error(path, "file not found")
    try:
        img = nib.load(str(path))
        arr = np.asarray(img.dataobj)
        zooms = tuple(float(z) for z in img.header.get_zooms())
    except Exception as exc:  # nibabel raises many types for corrupt files
        raise input_error(path, f"cannot read NIfTI ({type(exc).__name__}: {exc})") from exc
    return arr, zooms


def load_label_map(path: str | os.PathLike) -> np.ndarray:
    """Load a 2-D label map from ``.nii/.nii.gz``, ``.npy`` or ``.npz`` (first array)."""
    path = Path(path)
    name = path.name.lower()
    if name.endswith((".nii", ".nii.gz")):
        arr, _ = load_nifti(path)
    elif name.endswith((".npy", ".npz")):
        if not path.is_file():
            raise input_error(path, "file not found")
        try:
            loaded = np.load(path, allow_pickle=False)
            arr = loaded[loaded.files[0]] if name.endswith(".npz") else loaded
        except Exception as exc:
            raise input_error(path, f"cannot read array ({type(exc).__name__}: {exc})") from exc
    else:
        raise input_error(path, "unsupported file type (expected .nii, .nii.gz, .npy or .npz)")
    arr = np.squeeze(np.asarray(arr))
    if arr.ndim != 2:
        raise input_error(path, f"expected a 2-D label map, got shape {tuple(arr.shape)}")
    return arr


def file_sha256(path: str | os.PathLike) -> str:
    """SHA-256 hex digest of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
