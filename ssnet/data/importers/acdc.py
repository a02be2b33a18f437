"""``ssnet import acdc SRC --out DIR``: the ACDC challenge layout (one scan per short-axis slice).

Source layout (``SRC`` holds the patient folders, or ``training/`` and/or ``testing/`` holding them, or is
one patient folder)::

    SRC/patientNNN/patientNNN_4d.nii.gz           cine, (H, W, S, T)
    SRC/patientNNN/patientNNN_frameXX_gt.nii.gz   labels of frame XX (1-based), (H, W, S): 0 background,
                                                  1 RV cavity, 2 LV myocardium, 3 LV cavity
    SRC/patientNNN/Info.cfg                       "ED: 1", "ES: 12", "Group: DCM", "NbFrame: 30", ...

What the importer does, per patient:

- reads ``Info.cfg`` (``ED`` required, 1-based; ``NbFrame``, when given, must equal T of the 4-D cine;
  ``Group``, ``ES``, ``Height``, ``Weight`` are kept as metadata);
- reads the 4-D cine and the ED ground truth ``patientNNN_frame{ED:02d}_gt.nii.gz`` (``.nii`` too), which must
  have the cine's H x W x S and the cine's in-plane spacing; the ES ground truth and the 3-D single-frame files
  are not used;
- writes one scan per slice k (1-based along the S axis): cine (H, W, T) rolled so that ED is frame 0, and
  label (H, W) = ACDC class 2 (LV myocardium) -> 1; RV cavity (1) and LV cavity (3) -> 0. ACDC has no infarct
  or MVO labels: classes 2 and 3 never occur (``dataset.json`` says so);
- skips, and reports, slices whose ED label has no myocardium (above the base or below the apex) unless
  ``--keep-empty``.

scan_id = ``patientNNN_slKK``; subject_id = ``patientNNN``; spacing = the 4-D NIfTI's first two zooms (mm).
The pathology group (NOR, MINF, DCM, HCM, RV) is the extra manifest column ``group``. When the patients lie in
``training/`` and/or ``testing/``, ``split.csv`` is written: ``testing/`` = test, ``training/`` patients dealt 7:1
into train:val (seed 0, :func:`ssnet.data.split.assign_subjects`; all ACDC scans are MVO-negative, so the
stratification is moot); a flat ``SRC/patientNNN`` layout gets no split (run ``ssnet split``).
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from ssnet.data.importers.output import DatasetWriter, check_id, split_train_val_test
from ssnet.data.importers.readers import natural_key, read_nifti, to_cine_dtype
from ssnet.errors import input_error

CITATION = ("Bernard O, Lalande A, Zotti C, et al. Deep Learning Techniques for Automatic MRI Cardiac "
            "Multi-structures Segmentation and Diagnosis: Is the Problem Solved? IEEE TMI 37(11), 2018.")
_PATIENT = re.compile(r"^patient\d+$", re.IGNORECASE)
ACDC_MYOCARDIUM = 2


def find_patients(src: Path) -> list[tuple[Path, bool | None]]:
    """Patient folders with their part: True = ``testing/``, False = ``training/``, None = flat layout."""
    if _PATIENT.match(src.name) and (src / "Info.cfg").is_file():
        return [(src, None)]  # SRC is one patient folder
    found: list[tuple[Path, bool | None]] = []
    flat = [p for p in src.iterdir() if p.is_dir() and _PATIENT.match(p.name)]
    found += [(p, None) for p in flat]
    for part, is_test in (("training", False), ("testing", True)):
        if (src / part).is_dir():
            found += [(p, is_test) for p in (src / part).iterdir() if p.is_dir() and _PATIENT.match(p.name)]
    if flat and len(found) > len(flat):
        raise input_error(src, "patient folders both directly in SRC and in training/ or testing/; use one layout")
    if not found:
        raise input_error(src, "no patient folders (expected SRC/patientNNN/ or SRC/training/patientNNN/)")
    names = [p.name for p, _ in found]
    dup = next((n for n in names if names.count(n) > 1), None)
    if dup is not None:
        raise input_error(src, f"patient {dup} is present twice (training/ and testing/)")
    return sorted(found, key=lambda t: natural_key(t[0].name))


def read_info(path: Path) -> dict[str, str]:
    """Parse ``Info.cfg`` (``Key: value`` lines); ``ED`` must be a positive integer."""
    if not path.is_file():
        raise input_error(path, "file not found (Info.cfg gives the ED frame)")
    try:
        text = path.read_text(encoding="utf-8", errors="strict")
    except (OSError, UnicodeDecodeError) as exc:
        raise input_error(path, f"cannot read ({type(exc).__name__}: {exc})") from exc
    info: dict[str, str] = {}
    for i, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        if ":" not in line:
            raise input_error(path, f"line {i}: expected 'Key: value', got {line.strip()[:40]!r}")
        key, value = line.split(":", 1)
        info[key.strip()] = value.strip()
    for key in ("ED", "ES", "NbFrame"):
        if key in info and (not re.fullmatch(r"\d+", info[key]) or int(info[key]) == 0):
            raise input_error(path, f"{key} must be a positive integer, got {info[key]!r}")
    if "ED" not in info:
        raise input_error(path, "no 'ED:' line (the 1-based end-diastolic frame)")
    return info


def _one(folder: Path, stem: str) -> Path:
    for suffix in (".nii.gz", ".nii"):
        if (folder / f"{stem}{suffix}").is_file():
            return folder / f"{stem}{suffix}"
    raise input_error(folder / f"{stem}.nii.gz", "file not found")


def import_patient(folder: Path, keep_empty: bool = False) -> tuple[list[dict], dict]:
    """Read one patient folder; returns ``(scans, subject metadata)``."""
    pid = check_id(folder.name, "patient id", folder)
    info = read_info(folder / "Info.cfg")
    cine_path = _one(folder, f"{folder.name}_4d")
    arr, zooms = read_nifti(cine_path)
    if arr.ndim != 4:
        raise input_error(cine_path, f"4-D cine must have shape (H, W, S, T), got {tuple(arr.shape)}")
    h, w, n_slices, t = arr.shape
    if t < 2:
        raise input_error(cine_path, f"cine has {t} frame; expected (H, W, S, T) with T >= 2")
    if "NbFrame" in info and int(info["NbFrame"]) != t:
        raise input_error(folder / "Info.cfg", f"NbFrame: {info['NbFrame']} but {cine_path.name} has {t} frames")
    ed = int(info["ED"])
    if not 1 <= ed <= t:
        raise input_error(folder / "Info.cfg", f"ED: {ed} is outside the cine's frames 1..{t}")
    gt_path = _one(folder, f"{folder.name}_frame{ed:02d}_gt")
    gt, gt_zooms = read_nifti(gt_path)
    if gt.ndim == 4 and gt.shape[3] == 1:
        gt = gt[..., 0]
    if gt.shape != (h, w, n_slices):
        raise input_error(gt_path, f"label size {'x'.join(map(str, gt.shape))} does not match the cine's "
                                   f"{h}x{w}x{n_slices} ({cine_path.name})")
    if np.issubdtype(gt.dtype, np.floating) and (not np.isfinite(gt).all() or (gt != np.round(gt)).any()):
        raise input_error(gt_path, "label must hold integer class values (found non-integer, NaN or Inf values)")
    values = np.unique(gt)
    bad = values[(values < 0) | (values > 3)]
    if len(bad):
        raise input_error(gt_path, f"ACDC label values must be 0..3 (0 background, 1 RV, 2 myocardium, 3 LV "
                                   f"cavity); found {', '.join(str(int(v)) for v in bad[:5])}")
    spacing = tuple(float(z) for z in zooms[:2]) if len(zooms) >= 2 and min(zooms[:2]) > 0 else None
    if spacing is not None and len(gt_zooms) >= 2 and not np.allclose(gt_zooms[:2], spacing, rtol=1e-3):
        raise input_error(gt_path, f"pixel spacing {tuple(round(float(z), 4) for z in gt_zooms[:2])} differs from "
                                   f"the cine's {spacing} ({cine_path.name})")
    scans, skipped = [], []
    for k in range(n_slices):
        label = (gt[:, :, k] == ACDC_MYOCARDIUM).astype(np.uint8)
        if not label.any() and not keep_empty:
            skipped.append({"scan_id": f"{pid}_sl{k + 1:02d}", "source": gt_path.name,
                            "reason": "no myocardium in the ED label (slice beyond base or apex)"})
            continue
        cine = to_cine_dtype(np.roll(arr[:, :, k, :], -(ed - 1), axis=-1), cine_path)
        scans.append({"scan_id": f"{pid}_sl{k + 1:02d}", "cine": cine, "label": label, "spacing": spacing,
                      "meta": {"slice": k + 1, "ed_frame_1based": ed, "frames": t,
                               "es_frame": (int(info["ES"]) - ed) % t if "ES" in info else None,
                               "myocardium_pixels": int(label.sum())}})
    subject = {"group": info.get("Group", ""),
               "info_cfg": info, "cine": cine_path.name, "ed_label": gt_path.name, "n_slices": n_slices,
               "skipped_slices": skipped}
    return scans, subject


def import_acdc(src: Path, out: Path, force: bool = False, keep_empty: bool = False, seed: int = 0) -> dict:
    """Import an ACDC folder (module docstring) into ``out``; returns dataset.json's content."""
    src, out = Path(src), Path(out)
    if not src.is_dir():
        raise input_error(src, "source folder not found")
    patients = find_patients(src)
    with DatasetWriter(out, force, src) as writer:
        subjects, per_scan, skipped, split_rows = {}, {}, [], []
        for folder, is_test in patients:
            scans, subject = import_patient(folder, keep_empty)
            subject["part"] = {None: None, False: "training", True: "testing"}[is_test]
            subjects[folder.name] = subject
            skipped += subject["skipped_slices"]
            for sc in scans:
                writer.add(sc["scan_id"], folder.name, sc["cine"], sc["label"], sc["spacing"], group=subject["group"])
                per_scan[sc["scan_id"]] = sc["meta"]
                split_rows.append((sc["scan_id"], folder.name, bool(is_test), False))
            del scans
        split = None
        if writer.rows and all(is_test is not None for _, is_test in patients):
            split = split_train_val_test(split_rows, src, seed=seed)
        provenance = {
            "source": "ACDC (Automated Cardiac Diagnosis Challenge, MICCAI 2017)", "importer": "ssnet import acdc",
            "src": str(src), "citation": CITATION, "subjects": subjects, "scans": per_scan, "skipped": skipped,
            "frame_0": "end-diastole: Info.cfg's ED frame; each slice's cine is rolled so that ED comes first",
            "labels": {"0": "background (ACDC 0 background, 1 RV cavity and 3 LV cavity)",
                       "1": "LV myocardium (ACDC 2), at ED"},
            "labels_absent": {"2": "infarct", "3": "mvo"},
            "note": "ACDC has no infarct or MVO labels: classes 2 and 3 never occur. The pathology group is the "
                    "manifest column 'group'.",
            "spacing_from": "4-D NIfTI zooms (in-plane)",
            "split": None if split is None else "testing/ = test; training/ patients dealt 7:1 into train:val, "
                                                f"seed {seed}",
        }
        writer.commit(provenance, split=split)
    return provenance
