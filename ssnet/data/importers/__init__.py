"""``ssnet import SOURCE SRC --out DIR``: convert real cine data into the dataset contract.

Sources (one module each; their docstrings document the expected layout)::

    ssnet import sunnybrook SRC --out DIR [--patients SCD0000101,...]   Sunnybrook DICOM tarballs + LV contours
    ssnet import tiff       SRC --out DIR                               SRC/<subject>/<scan>/cine.tif + label.png
    ssnet import nifti      SRC --out DIR [--pattern '{scan}_cine.nii.gz'] flat <scan>_cine / <scan>_label NIfTIs
    ssnet import authors    SRC --out DIR                               {train_val,test}/Cine/*.nii.tiff + masks/*.nii.png
    ssnet import acdc       SRC --out DIR [--keep-empty]                ACDC patientNNN/ folders (4-D NIfTI + ED gt)
    ssnet import dicom      SRC --out DIR                               cine DICOM of any vendor [+ SRC/masks/]

Every importer writes ``DIR/cines/<scan_id>.nii.gz`` (H, W, T; frame 0 = end-diastole),
``DIR/labels/<scan_id>.nii.gz`` (H, W; 0..3; none for a scan without a label: ``dicom`` without a mask),
``DIR/dataset.json`` (provenance, and every source slice not imported with the reason), ``DIR/split.csv``
(``authors``; ``acdc`` with training/ and testing/) and, last, ``DIR/manifest.csv``. It refuses an ``--out``
that already holds a manifest unless ``--force``; a ``--force`` import that writes no split removes the old
``split.csv`` (it described the replaced scans). The summary line says how many scans were written, how many
have no label, and how many source slices or series were not imported and why.
Any unreadable or inconsistent input stops the import with one line ``<file>: <problem>`` and leaves
``--out`` as it was: scans are staged in a hidden folder and moved into place only once all inputs
have been read (see :mod:`ssnet.data.importers.output`).
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from ssnet.errors import SsnetError


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ssnet import", description="Convert real cine data into the dataset contract.")
    sub = p.add_subparsers(dest="source", metavar="SOURCE", required=True)

    def common(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("src", type=Path, help="source folder")
        sp.add_argument("--out", type=Path, required=True, help="dataset folder to write")
        sp.add_argument("--force", action="store_true", help="overwrite a folder that already holds manifest.csv")

    sb = sub.add_parser("sunnybrook", help="Sunnybrook Cardiac Data: dicoms/*.tar.gz, contours/, link.csv",
                        description="Import Sunnybrook DICOM cines with expert LV contours (myocardium label only).")
    common(sb)
    sb.add_argument("--patients", help="comma-separated patient ids (default: every patient under SRC/dicoms)")
    sb.add_argument("--contour-origin", type=float, default=1.0,
                    help="coordinate of the top-left pixel's centre in the contour files: 1 (default, 1-based, "
                         "measured on the shared patients) or 0 (0-based, the importer before 2026-12-06)")
    tf = sub.add_parser("tiff", help="SRC/<subject>/<scan>/{cine.tif | frames/*.png} + label.png [+ SRC/spacing.csv]",
                        description="Import a TIFF/PNG folder tree (see ssnet/data/importers/tiff.py for the layout).")
    common(tf)
    nf = sub.add_parser("nifti", help="flat folder of <scan>_cine.nii.gz + <scan>_label.nii.gz [+ subjects.csv]",
                        description="Import a flat folder of cine/label NIfTI pairs.")
    common(nf)
    nf.add_argument("--pattern", default="{scan}_cine.nii.gz",
                    help="cine file name pattern with {scan} and optionally {subject} (default {scan}_cine.nii.gz)")
    nf.add_argument("--label-pattern", help="label file name pattern (default: --pattern with cine -> label)")
    au = sub.add_parser("authors", help="SRC/{train_val,test}/Cine/<patient>_<slice>_0000.nii.tiff + masks/*.nii.png",
                        description="Import the paper authors' layout (see ssnet/data/importers/authors.py); "
                                    "writes split.csv (test/ = test, train_val/ 7:1 into train:val by patients).")
    common(au)
    ac = sub.add_parser("acdc", help="ACDC: SRC/[training|testing/]patientNNN/{patientNNN_4d.nii.gz, *_gt, Info.cfg}",
                        description="Import ACDC: one scan per slice, ED first, myocardium (ACDC 2) -> 1, "
                                    "pathology group as the manifest column 'group'.")
    common(ac)
    ac.add_argument("--keep-empty", action="store_true",
                    help="also import slices whose ED label has no myocardium (default: skip and report them)")
    dc = sub.add_parser("dicom", help="cine DICOM of any vendor under SRC [+ SRC/masks/<scan_id>.png|.nii.gz]",
                        description="Import cine DICOM (series by SeriesInstanceUID, slices by location, frames by "
                                    "TriggerTime); masks optional (see ssnet/data/importers/dicom.py).")
    common(dc)
    return p


def _not_imported(info: dict) -> list[dict]:
    """Every source slice or series an importer read but did not write, with its reason."""
    skipped = list(info.get("skipped", []))
    for patient in info.get("patients", {}).values():  # sunnybrook: per patient
        skipped += patient.get("skipped_slices", [])
    return skipped


def report(info: dict) -> str:
    """``N scans of M subjects (K without label); J not imported: reason (count), ...``."""
    text = f"{info['n_scans']} scans of {info['n_subjects']} subjects"
    if info.get("n_unlabeled"):
        text += f" ({info['n_unlabeled']} without a label: they can be predicted, not scored)"
    skipped = _not_imported(info)
    if skipped:
        reasons: dict[str, int] = {}
        for k in skipped:
            reasons[k["reason"]] = reasons.get(k["reason"], 0) + 1
        text += f"; {len(skipped)} not imported: " + "; ".join(f"{r} ({n})" for r, n in reasons.items())
        text += " (listed in dataset.json)"
    for where, why in info.get("ignored", {}).items():
        text += f"; ignored {where}: {why}"
    return text


def main(argv: list[str]) -> int:
    """Parse ``argv`` and run one importer; user errors raise :class:`SsnetError` (one line)."""
    args = _parser().parse_args(argv)
    t0 = time.perf_counter()
    if args.source == "sunnybrook":
        from ssnet.data.importers.sunnybrook import import_sunnybrook

        patients = [p.strip() for p in args.patients.split(",") if p.strip()] if args.patients else None
        if args.patients is not None and not patients:
            raise SsnetError("--patients is empty")
        info = import_sunnybrook(args.src, args.out, patients, force=args.force, contour_origin=args.contour_origin)
    elif args.source == "authors":
        from ssnet.data.importers.authors import import_authors

        info = import_authors(args.src, args.out, force=args.force)
    elif args.source == "acdc":
        from ssnet.data.importers.acdc import import_acdc

        info = import_acdc(args.src, args.out, force=args.force, keep_empty=args.keep_empty)
    elif args.source == "dicom":
        from ssnet.data.importers.dicom import import_dicom

        info = import_dicom(args.src, args.out, force=args.force)
    elif args.source == "tiff":
        from ssnet.data.importers.tiff import import_tiff

        info = import_tiff(args.src, args.out, force=args.force)
    else:
        from ssnet.data.importers.nifti import import_nifti

        info = import_nifti(args.src, args.out, args.pattern, args.label_pattern, force=args.force)
    print(f"imported {report(info)} from {args.src} into {args.out} ({time.perf_counter() - t0:.1f} s)")
    return 0


__all__ = ["main", "report"]
