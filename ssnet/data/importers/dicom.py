"""``ssnet import dicom SRC --out DIR``: cine DICOM of any vendor, with or without label masks.

Source layout::

    SRC/**/<any name>.dcm | .ima | <no extension>   DICOM images, one frame per file, in any folder structure
    SRC/masks/<scan_id>.png | .nii.gz | .nii        optional label maps (H, W), drawn on frame 0:
                                                    0 background, 1 LV myocardium, 2 infarct, 3 MVO

What the importer does:

- reads every DICOM file under ``SRC`` (recursively; ``SRC/masks/``, hidden folders and ``DICOMDIR`` skipped;
  every other ``.dcm``/``.ima``/extension-less file must be a readable single-frame DICOM image);
- groups images into series by ``SeriesInstanceUID`` and, within a series, into slices by ``SliceLocation``
  (or ``ImagePositionPatient`` projected on the slice normal from ``ImageOrientationPatient`` when
  SliceLocation is absent), rounded to 0.01 mm;
- orders each slice's frames by ``TriggerTime``; when no frame of the slice has one, by ``InstanceNumber``
  (a slice where only some frames have a TriggerTime is refused); frame 0 is the first frame in that order
  (the ECG-triggered cine starts at the R wave: end-diastole);
- refuses a slice whose frames differ in size or PixelSpacing, and a series whose slices differ in frame count;
- writes one scan per slice of every series with at least 2 frames per slice; series with one frame per slice
  (localizers, LGE, ...) are not cines: they are skipped and reported (stdout and ``dataset.json``).

Naming: slices of a series are numbered 1.. in acquisition order (smallest InstanceNumber of the slice; by
location when InstanceNumber is missing), and ``scan_id = <SeriesInstanceUID>_<slice number>``, e.g.
``1.2.840.113619.2.5.1762583153.215519.978957063.78_3``. The mask of that scan is
``SRC/masks/<scan_id>.png`` (or ``.nii.gz``/``.nii``, array axis 0 = DICOM rows); ``dataset.json`` lists every
scan with its series description and slice location to help name them. Masks are optional: scans without one
get an empty ``label`` cell (predict-only). A mask that names no scan is an error.

subject_id = PatientID (characters other than letters, digits, ``. _ -`` replaced by ``_``), or, when
PatientID is empty, the first folder below ``SRC`` holding the file. spacing = PixelSpacing (row, column) in
mm, empty when absent. Pixel values are the stored values (no RescaleSlope/Intercept), kept as integers.
Enhanced (multi-frame) DICOM is not supported.
"""
from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path

import numpy as np

from ssnet.data.importers.output import DatasetWriter, check_id, check_out
from ssnet.data.importers.readers import (
    DicomImage, check_label, group_dicom_slices, iter_dicom_sources, natural_key, read_dicom, read_nifti, read_png,
    to_cine_dtype,
)
from ssnet.errors import input_error

MASK_SUFFIXES = (".png", ".nii.gz", ".nii")


def _subject(im: DicomImage, src: Path) -> str:
    pid = re.sub(r"[^A-Za-z0-9._-]", "_", im.patient_id).strip("._-")
    if pid:
        return pid
    rel = Path(im.name).relative_to(src).parts
    if len(rel) < 2:
        raise input_error(im.name, "DICOM header lacks PatientID (0010,0020) and the file lies directly in SRC; "
                                   "put each patient's files in a folder of their own")
    return check_id(rel[0], "patient folder name", src / rel[0])


def find_masks(mask_dir: Path) -> dict[str, Path]:
    """``SRC/masks/<scan_id>.<png|nii.gz|nii>`` by scan id; two masks for one scan are refused."""
    if not mask_dir.is_dir():
        return {}
    found: dict[str, Path] = {}
    for p in sorted(mask_dir.iterdir(), key=lambda p: natural_key(p.name)):
        if p.name.startswith("."):
            continue
        suffix = next((s for s in MASK_SUFFIXES if p.name.lower().endswith(s)), None)
        if not p.is_file() or suffix is None:
            raise input_error(p, "unexpected entry in masks/ (expected <scan_id>.png, .nii.gz or .nii)")
        key = p.name[: -len(suffix)]
        if key in found:
            raise input_error(p, f"second mask for scan {key!r} (also {found[key].name}); keep one")
        found[key] = p
    return found


def read_mask(path: Path, shape: tuple[int, int], cine_name: str) -> np.ndarray:
    """Read a PNG or NIfTI mask and check it against the cine's size and the classes 0..3."""
    if path.name.lower().endswith(".png"):
        arr = read_png(path, "mask")
    else:
        arr, _ = read_nifti(path)
    return check_label(arr, path, shape, cine_name)


def import_dicom(src: Path, out: Path, force: bool = False) -> dict:
    """Import a DICOM folder (module docstring) into ``out``; returns dataset.json's content."""
    src, out = Path(src), Path(out)
    if not src.is_dir():
        raise input_error(src, "source folder not found")
    check_out(out, force, src)  # refuse an existing dataset before reading thousands of files
    mask_dir = src / "masks"
    masks = find_masks(mask_dir)
    images = [read_dicom(data, name, base, require_trigger=False)
              for name, base, data in iter_dicom_sources(src, exclude=mask_dir)]
    if not images:
        raise input_error(src, "no DICOM files (*.dcm, *.ima or files without extension) found")
    for im in images:
        if not im.series_uid:
            raise input_error(im.name, "DICOM header lacks SeriesInstanceUID (0020,000E); cannot group the series")
        check_id(im.series_uid, "SeriesInstanceUID", im.name)
    slices = group_dicom_slices(images, src, by_series=True)
    by_series: dict[str, list] = defaultdict(list)
    for s in slices:
        by_series[s.series_uid].append(s)
    plan, skipped = [], []
    for uid, series in by_series.items():
        first = series[0].frames[0]
        if len(series[0].frames) < 2:
            skipped.append({"series": uid, "description": first.series_description, "slices": len(series),
                            "first_file": first.name,
                            "reason": "one frame per slice: not a cine (localizer, LGE, ...)"})
            continue
        subjects = {_subject(im, src) for s in series for im in s.frames}
        if len(subjects) > 1:
            raise input_error(first.name, f"series {uid} mixes patients {', '.join(sorted(subjects))}")
        subject = subjects.pop()
        plan += [(f"{uid}_{s.index}", subject, s) for s in series]
    if not plan:
        reasons = "; ".join(f"series {k['series']}: {k['reason']}" for k in skipped[:2])
        raise input_error(src, f"no cine series found ({len(skipped)} series skipped: {reasons})")
    scan_ids = {p[0] for p in plan}
    orphan = next((k for k in masks if k not in scan_ids), None)
    if orphan is not None:
        raise input_error(masks[orphan], f"mask names no scan: {orphan!r} is not <SeriesInstanceUID>_<slice number> "
                                         f"of any cine series (scan ids are listed in dataset.json after an import "
                                         f"without masks)")
    with DatasetWriter(out, force, src) as writer:
        per_scan = {}
        for scan_id, subject, s in plan:
            check_id(scan_id, "scan id", s.frames[0].name)
            cine = to_cine_dtype(np.stack([im.pixels for im in s.frames], axis=-1), s.frames[0].name)
            label = None
            if scan_id in masks:
                label = read_mask(masks[scan_id], cine.shape[:2], Path(s.frames[0].name).name)
            writer.add(scan_id, subject, cine, label, s.frames[0].spacing)
            per_scan[scan_id] = {
                "series_uid": s.series_uid, "series_description": s.frames[0].series_description,
                "patient_id": s.frames[0].patient_id, "slice": s.index, "slice_location_mm": s.location,
                "frames": cine.shape[-1], "ordered_by": s.ordered_by, "first_file": s.frames[0].name,
                "trigger_time_ms": [im.trigger_time for im in s.frames] if s.ordered_by == "TriggerTime" else None,
                "label": masks[scan_id].name if scan_id in masks else None,
            }
            del cine
        provenance = {
            "source": "cine DICOM folder", "importer": "ssnet import dicom", "src": str(src),
            "n_images": len(images), "n_series": len(by_series), "scans": per_scan, "skipped": skipped,
            "scan_id": "<SeriesInstanceUID>_<slice number>, slices numbered 1.. in acquisition order",
            "frame_0": "the first frame by TriggerTime (InstanceNumber when a slice has no TriggerTime): "
                       "end-diastole for an ECG-triggered cine",
            "labels_from": "SRC/masks/<scan_id>.png|.nii.gz|.nii; scans without a mask have no label",
            "cine": "DICOM stored values (no rescale), (H, W, T)", "spacing_from": "DICOM PixelSpacing",
        }
        writer.commit(provenance)
    return provenance
