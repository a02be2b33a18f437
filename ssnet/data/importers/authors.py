"""``ssnet import authors SRC --out DIR``: the layout of the paper authors' data release.

Source layout::

    SRC/train_val/Cine/<patient>_<slice>_0000.nii.tiff    multi-page greyscale TIFF, one page per frame (30 in
                                                          the paper; any number >= 2 is accepted)
    SRC/train_val/masks/<patient>_<slice>_0000.nii.png    label map drawn on frame 0: 0 background,
                       (or <patient>_<slice>.nii.png)     1 LV myocardium, 2 infarct, 3 MVO
    SRC/test/Cine/...  SRC/test/masks/...                 the same for the test split
    SRC/{train_val,test}/LGE/                             ignored (reported, as is anything else in SRC)
    SRC/spacing.csv                                       optional: scan_id,spacing_row,spacing_col (mm)

Matching a cine with its mask ("same stem"): the *scan key* of a file is its name without the extension
(``.tiff``/``.tif`` for cines, ``.png`` for masks), then without ``.nii``, then without a trailing ``_0000``
(the nnU-Net channel suffix). ``P001_3_0000.nii.tiff`` therefore pairs with ``P001_3_0000.nii.png`` or
``P001_3.nii.png`` (also ``P001_3.png``); both mask names for one cine is an error, as is a cine without a mask
or a mask without a cine, or any other file in ``Cine/`` or ``masks/`` (hidden files excepted).

- scan_id = the scan key (``P001_3``); subject_id = the patient id, the name before the first ``_``.
- Frame 0 is taken as end-diastole (the frame the mask is drawn on), as given: frames are not reordered.
- ``split.csv`` is written: ``test/`` is the test split; the patients of ``train_val/`` are dealt into train and
  val 7:1 by patients, stratified by MVO presence, seed 0 (:func:`ssnet.data.split.assign_subjects`). A patient
  in both folders is refused.
- Spacing: TIFF files carry none reliably; it comes from ``SRC/spacing.csv`` when given, else stays empty.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from ssnet.data.importers.output import DatasetWriter, check_id, split_train_val_test
from ssnet.data.importers.readers import check_label, natural_key, read_png, read_tiff_frames, to_cine_dtype
from ssnet.data.importers.tiff import read_spacing_csv
from ssnet.errors import input_error

PARTS = {"train_val": False, "test": True}  # folder -> is the test split
_CINE_EXT = re.compile(r"\.tiff?$", re.IGNORECASE)
_MASK_EXT = re.compile(r"\.png$", re.IGNORECASE)


def scan_key(name: str, ext: re.Pattern) -> str | None:
    """``P001_3_0000.nii.tiff`` -> ``P001_3``; None when the extension does not match."""
    if not ext.search(name):
        return None
    stem = ext.sub("", name)
    stem = re.sub(r"\.nii$", "", stem, flags=re.IGNORECASE)
    return re.sub(r"_0000$", "", stem)


def _listing(folder: Path, ext: re.Pattern, what: str, example: str) -> dict[str, Path]:
    out: dict[str, Path] = {}
    for p in sorted(folder.iterdir(), key=lambda p: natural_key(p.name)):
        if p.name.startswith("."):
            continue
        key = scan_key(p.name, ext) if p.is_file() else None
        if not key:
            raise input_error(p, f"unexpected {'folder' if p.is_dir() else 'file'} in {folder.name}/ "
                                 f"(expected {what} files named like {example})")
        if key in out:
            raise input_error(p, f"same scan {key!r} as {out[key].name}; keep one of the two")
        out[key] = p
    return out


def _plan(src: Path) -> tuple[list[tuple[str, str, bool, Path, Path]], dict]:
    """Every (scan_id, subject, is_test, cine, mask), checked for pairing before any image is read."""
    plan, ignored = [], {}
    parts = [p for p in PARTS if (src / p).is_dir()]
    if not parts:
        raise input_error(src, "neither train_val/ nor test/ found (expected SRC/{train_val,test}/Cine and masks)")
    seen: dict[str, Path] = {}
    for part in parts:
        base = src / part
        for sub in ("Cine", "masks"):
            if not (base / sub).is_dir():
                raise input_error(base / sub, "folder not found")
        extra = [p.name for p in base.iterdir() if not p.name.startswith(".") and p.name not in ("Cine", "masks")]
        unknown = [n for n in extra if n != "LGE"]
        if unknown:
            raise input_error(base / unknown[0], f"unexpected entry in {part}/ (expected Cine/, masks/ and "
                                                 "optionally LGE/)")
        if "LGE" in extra:
            ignored[f"{part}/LGE"] = sum(1 for p in (base / "LGE").rglob("*") if p.is_file())
        cines = _listing(base / "Cine", _CINE_EXT, "cine", "<patient>_<slice>_0000.nii.tiff")
        masks = _listing(base / "masks", _MASK_EXT, "mask", "<patient>_<slice>_0000.nii.png")
        for key, p in masks.items():
            if key not in cines:
                raise input_error(p, f"mask without a cine (expected {key}_0000.nii.tiff in {base / 'Cine'})")
        for key, cine in cines.items():
            if key not in masks:
                raise input_error(cine, f"cine without a mask (expected {key}_0000.nii.png or {key}.nii.png in "
                                        f"{base / 'masks'})")
            scan_id = check_id(key, "scan id", cine)
            if scan_id in seen:
                raise input_error(cine, f"scan {scan_id!r} is also in {seen[scan_id]}")
            seen[scan_id] = cine
            subject = check_id(scan_id.split("_", 1)[0], "patient id", cine)
            plan.append((scan_id, subject, PARTS[part], cine, masks[key]))
    for p in sorted(src.iterdir()):
        if not p.name.startswith(".") and p.name not in (*PARTS, "spacing.csv"):
            ignored[p.name] = (sum(1 for q in p.rglob("*") if q.is_file()) if p.is_dir() else 1)
    if not plan:
        raise input_error(src, "no cines found (expected SRC/{train_val,test}/Cine/<patient>_<slice>_0000.nii.tiff)")
    return plan, ignored


def import_authors(src: Path, out: Path, force: bool = False, seed: int = 0) -> dict:
    """Import the authors' layout (module docstring) into ``out``; returns dataset.json's content."""
    src, out = Path(src), Path(out)
    if not src.is_dir():
        raise input_error(src, "source folder not found")
    plan, ignored = _plan(src)
    spacing = read_spacing_csv(src / "spacing.csv")
    unknown = sorted(set(spacing) - {p[0] for p in plan})
    if unknown:
        raise input_error(src / "spacing.csv", f"scan {unknown[0]!r} is not in {src}")
    with DatasetWriter(out, force, src) as writer:
        per_scan, split_rows = {}, []
        for scan_id, subject, is_test, cine_path, mask_path in plan:
            cine = read_tiff_frames(cine_path)
            if cine.shape[-1] < 2:
                raise input_error(cine_path, f"cine has {cine.shape[-1]} page; expected one page per frame (>= 2)")
            cine = to_cine_dtype(cine, cine_path)
            label = check_label(read_png(mask_path, "mask"), mask_path, cine.shape[:2], cine_path.name)
            writer.add(scan_id, subject, cine, label, spacing.get(scan_id))
            classes = sorted(int(v) for v in np.unique(label))
            split_rows.append((scan_id, subject, is_test, 3 in classes))
            per_scan[scan_id] = {"cine": str(cine_path.relative_to(src)), "mask": str(mask_path.relative_to(src)),
                                 "shape": list(cine.shape), "dtype": str(cine.dtype), "label_classes": classes}
        split = split_train_val_test(split_rows, src, seed=seed)
        counts = {part: sum(1 for v in split.values() if v == part) for part in ("train", "val", "test")}
        provenance = {
            "source": "SSNet authors' layout ({train_val,test}/Cine/*.nii.tiff + masks/*.nii.png)",
            "importer": "ssnet import authors", "src": str(src), "scans": per_scan,
            "spacing_from": "spacing.csv" if spacing else None,
            "ignored": {k: f"{n} file(s) not read" + (" (LGE images are not used)" if "LGE" in k else "")
                        for k, n in ignored.items()},
            "frame_0": "as given: the first TIFF page is taken as end-diastole (the frame the mask is drawn on)",
            "labels": {"0": "background", "1": "LV myocardium", "2": "infarct", "3": "mvo"},
            "split": {"rule": f"test/ = test; train_val/ patients dealt 7:1 into train:val, stratified by MVO, "
                              f"seed {seed}", "scans": counts},
        }
        writer.commit(provenance, split=split)
    return provenance
