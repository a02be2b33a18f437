"""``ssnet import SOURCE SRC --out DIR``: convert real cine data into the dataset contract.

Sources (one module each; their docstrings document the expected layout)::

    ssnet import sunnybrook SRC --out DIR [--patients SCD0000101,...]   Sunnybrook DICOM tarballs + LV contours
    ssnet import tiff       SRC --out DIR                               SRC/<subject>/<scan>/cine.tif + label.png
    ssnet import nifti      SRC --out DIR [--pattern '{scan}_cine.nii.gz'] flat <scan>_cine / <scan>_label NIfTIs

Every importer writes ``DIR/cines/<scan_id>.nii.gz`` (H, W, T; frame 0 = end-diastole),
``DIR/labels/<scan_id>.nii.gz`` (H, W; 0..3), ``DIR/dataset.json`` (provenance) and, last,
``DIR/manifest.csv``. It refuses an ``--out`` that already holds a manifest unless ``--force``.
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
    tf = sub.add_parser("tiff", help="SRC/<subject>/<scan>/{cine.tif | frames/*.png} + label.png [+ SRC/spacing.csv]",
                        description="Import a TIFF/PNG folder tree (see ssnet/data/importers/tiff.py for the layout).")
    common(tf)
    nf = sub.add_parser("nifti", help="flat folder of <scan>_cine.nii.gz + <scan>_label.nii.gz [+ subjects.csv]",
                        description="Import a flat folder of cine/label NIfTI pairs.")
    common(nf)
    nf.add_argument("--pattern", default="{scan}_cine.nii.gz",
                    help="cine file name pattern with {scan} and optionally {subject} (default {scan}_cine.nii.gz)")
    nf.add_argument("--label-pattern", help="label file name pattern (default: --pattern with cine -> label)")
    return p


def main(argv: list[str]) -> int:
    """Parse ``argv`` and run one importer; user errors raise :class:`SsnetError` (one line)."""
    args = _parser().parse_args(argv)
    t0 = time.perf_counter()
    if args.source == "sunnybrook":
        from ssnet.data.importers.sunnybrook import import_sunnybrook

        patients = [p.strip() for p in args.patients.split(",") if p.strip()] if args.patients else None
        if args.patients is not None and not patients:
            raise SsnetError("--patients is empty")
        info = import_sunnybrook(args.src, args.out, patients, force=args.force)
    elif args.source == "tiff":
        from ssnet.data.importers.tiff import import_tiff

        info = import_tiff(args.src, args.out, force=args.force)
    else:
        from ssnet.data.importers.nifti import import_nifti

        info = import_nifti(args.src, args.out, args.pattern, args.label_pattern, force=args.force)
    print(f"imported {info['n_scans']} scans of {info['n_subjects']} subjects from {args.src} into {args.out} "
          f"({time.perf_counter() - t0:.1f} s)")
    return 0


__all__ = ["main"]
