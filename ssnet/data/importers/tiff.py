"""``ssnet import tiff SRC --out DIR``: cine and label images stored as TIFF / PNG files.

Source layout::

    SRC/<subject_id>/<scan_id>/cine.tif        multi-page TIFF, one H x W page per frame (T pages), or
    SRC/<subject_id>/<scan_id>/frames/*.png    one PNG per frame, sorted by name (digit runs compared as
                                               numbers: frame2.png before frame10.png)
    SRC/<subject_id>/<scan_id>/label.png       H x W class map: 0 background, 1 LV myocardium, 2 infarct,
                                               3 MVO (or label.tif); drawn on the first frame
    SRC/spacing.csv                            optional: scan_id,spacing_row,spacing_col (mm)

- Frame 0 must be end-diastole (the frame the label is drawn on); frames are taken in page / name order.
- ``cine.tiff`` and ``label.tiff`` are accepted too; a scan must hold exactly one cine (``cine.tif`` or
  ``frames/``) and exactly one label (``label.png`` or ``label.tif``).
- Images must be greyscale (8- or 16-bit, or float); RGB(A) images whose colour channels are equal are
  accepted as grey. A cine needs at least 2 frames, all of one size; the label must have the cine's size and
  only the values 0..3 (a 0/255 mask is refused: map it to 0/1 first).
- ``scan_id`` (the folder name) must be unique across subjects and is used as a file name (letters, digits,
  ``. _ -``). Scans without a row in ``spacing.csv`` get an empty spacing.
- Output: ``DIR/cines/<scan_id>.nii.gz`` (H, W, T), ``DIR/labels/<scan_id>.nii.gz`` (H, W) uint8,
  ``DIR/manifest.csv``, ``DIR/dataset.json``.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ssnet.data.importers.output import DatasetWriter, check_id
from ssnet.data.importers.readers import (
    check_label, natural_key, read_image_2d, read_png_frames, read_tiff_frames, to_cine_dtype,
)
from ssnet.errors import input_error

CINE_NAMES = ("cine.tif", "cine.tiff")
LABEL_NAMES = ("label.png", "label.tif", "label.tiff")


def _visible_dirs(folder: Path) -> list[Path]:
    return sorted((p for p in folder.iterdir() if p.is_dir() and not p.name.startswith((".", "_"))),
                  key=lambda p: natural_key(p.name))


def read_spacing_csv(path: Path) -> dict[str, tuple[float, float]]:
    """Read ``scan_id,spacing_row,spacing_col``; positive numbers only."""
    if not path.is_file():
        return {}
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
    except Exception as exc:
        raise input_error(path, f"malformed CSV ({type(exc).__name__}: {exc})") from exc
    df.columns = [c.strip() for c in df.columns]
    missing = [c for c in ("scan_id", "spacing_row", "spacing_col") if c not in df.columns]
    if missing:
        raise input_error(path, f"missing column(s) {', '.join(missing)}; expected scan_id,spacing_row,spacing_col")
    out: dict[str, tuple[float, float]] = {}
    for i, r in enumerate(df.itertuples(index=False), 2):
        sid = r.scan_id.strip()
        if sid in out:
            raise input_error(path, f"line {i}: duplicate scan_id {sid!r}")
        try:
            sp = (float(r.spacing_row), float(r.spacing_col))
        except ValueError:
            raise input_error(path, f"line {i}: spacing of {sid!r} is not a number") from None
        if not (np.isfinite(sp).all() and min(sp) > 0):
            raise input_error(path, f"line {i}: spacing of {sid!r} must be positive, got {sp}")
        out[sid] = sp
    return out


def _find_one(scan_dir: Path, names: tuple[str, ...], what: str, extra: Path | None = None) -> Path:
    present = [scan_dir / n for n in names if (scan_dir / n).is_file()]
    if extra is not None and extra.is_dir():
        present.append(extra)
    if not present:
        alts = " or ".join(list(names) + ([extra.name + "/*.png"] if extra is not None else []))
        raise input_error(scan_dir, f"missing {what}: expected {alts}")
    if len(present) > 1:
        raise input_error(scan_dir, f"more than one {what}: {', '.join(p.name for p in present)}; keep one")
    return present[0]


def read_scan(scan_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """Read one scan folder: ``(cine (H, W, T), label (H, W) uint8)``."""
    cine_path = _find_one(scan_dir, CINE_NAMES, "cine", scan_dir / "frames")
    cine = read_png_frames(cine_path) if cine_path.is_dir() else read_tiff_frames(cine_path)
    if cine.shape[-1] < 2:
        raise input_error(cine_path, f"cine has {cine.shape[-1]} frame; expected at least 2 (T pages or PNG files)")
    cine = to_cine_dtype(cine, cine_path)
    label_path = _find_one(scan_dir, LABEL_NAMES, "label")
    label = check_label(read_image_2d(label_path, "label"), label_path, cine.shape[:2], cine_path.name)
    return cine, label


def import_tiff(src: Path, out: Path, force: bool = False) -> dict:
    """Import a TIFF/PNG tree (layout in the module docstring) into ``out``; returns dataset.json's content."""
    src, out = Path(src), Path(out)
    if not src.is_dir():
        raise input_error(src, "source folder not found")
    spacing = read_spacing_csv(src / "spacing.csv")
    plan: list[tuple[str, str, Path]] = []
    seen: dict[str, Path] = {}
    for subj_dir in _visible_dirs(src):
        subject = check_id(subj_dir.name, "subject id", subj_dir)
        scan_dirs = _visible_dirs(subj_dir)
        if not scan_dirs:
            raise input_error(subj_dir, "subject folder holds no scan folders (<subject>/<scan>/cine.tif)")
        for scan_dir in scan_dirs:
            scan_id = check_id(scan_dir.name, "scan id", scan_dir)
            if scan_id in seen:
                raise input_error(scan_dir, f"scan id {scan_id!r} is also used by {seen[scan_id]}; scan folder "
                                            "names must be unique across subjects")
            seen[scan_id] = scan_dir
            plan.append((subject, scan_id, scan_dir))
    if not plan:
        raise input_error(src, "no scans found (expected SRC/<subject>/<scan>/cine.tif and label.png)")
    unknown = sorted(set(spacing) - set(seen))
    if unknown:
        raise input_error(src / "spacing.csv", f"scan {unknown[0]!r} is not in {src}")
    if src.resolve() in out.resolve().parents:
        raise input_error(out, f"--out must not lie inside the source folder {src} (it would be read as a subject)")
    with DatasetWriter(out, force, src) as writer:
        per_scan = {}
        for subject, scan_id, scan_dir in plan:
            cine, label = read_scan(scan_dir)
            writer.add(scan_id, subject, cine, label, spacing.get(scan_id))
            per_scan[scan_id] = {"source": str(scan_dir.relative_to(src)), "shape": list(cine.shape),
                                 "dtype": str(cine.dtype), "label_classes": sorted(int(v) for v in np.unique(label))}
        provenance = {"source": "TIFF/PNG folder tree", "importer": "ssnet import tiff", "src": str(src),
                      "spacing_from": "spacing.csv" if spacing else None, "scans": per_scan,
                      "frame_0": "as given: the first TIFF page / PNG file is taken as end-diastole"}
        writer.commit(provenance)
    return provenance
