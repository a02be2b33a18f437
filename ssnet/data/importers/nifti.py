"""``ssnet import nifti SRC --out DIR``: a flat folder of cine and label NIfTI files.

Source layout::

    SRC/<scan>_cine.nii.gz      cine, (H, W, T); also accepted: (H, W, 1, T), (H, W, T, 1); .nii works too
    SRC/<scan>_label.nii.gz     label, (H, W) (or (H, W, 1)); 0 background, 1 LV myocardium, 2 infarct, 3 MVO
    SRC/subjects.csv            optional: scan_id,subject_id

- ``--pattern`` (default ``{scan}_cine.nii.gz``) names the cine files; ``{scan}`` is required, ``{subject}``
  optional, and the label file name is the pattern with ``cine`` replaced by ``label`` (or ``--label-pattern``).
  ``.nii.gz`` patterns also match ``.nii`` files and vice versa.
- scan_id = ``{scan}``, or ``<subject>_<scan>`` when the pattern holds ``{subject}``.
- subject_id: ``{subject}`` from the pattern, else ``subjects.csv`` (every scan must have a row), else the
  scan id before its first ``_`` (the whole scan id when it has none).
- Frame 0 must be end-diastole (the label's frame). Spacing = the cine's first two NIfTI zooms.
- Every cine needs its label and vice versa; the label must match the cine's H x W and hold only 0..3.
- Output: ``DIR/cines/<scan_id>.nii.gz`` (H, W, T), ``DIR/labels/<scan_id>.nii.gz`` (H, W) uint8,
  ``DIR/manifest.csv``, ``DIR/dataset.json``.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from ssnet.data.importers.output import DatasetWriter, check_id
from ssnet.data.importers.readers import check_label, natural_key, read_nifti, to_cine_dtype
from ssnet.errors import SsnetError, input_error

DEFAULT_PATTERN = "{scan}_cine.nii.gz"


def compile_pattern(pattern: str) -> re.Pattern:
    """Turn ``{subject}_{scan}_cine.nii.gz`` into a full-match regex (``.nii``/``.nii.gz`` interchangeable)."""
    if "{scan}" not in pattern:
        raise SsnetError(f"--pattern {pattern!r} must contain {{scan}}")
    if "/" in pattern:
        raise SsnetError(f"--pattern {pattern!r} must name files in SRC itself (no '/')")
    base = re.sub(r"\.nii(\.gz)?$", "", pattern)
    parts = re.split(r"(\{scan\}|\{subject\})", base)
    rx = ""
    for part in parts:
        if part == "{scan}":
            rx += r"(?P<scan>.+?)"
        elif part == "{subject}":
            rx += r"(?P<subject>.+?)"
        else:
            if "{" in part or "}" in part:
                raise SsnetError(f"--pattern {pattern!r}: only {{scan}} and {{subject}} are allowed")
            rx += re.escape(part)
    return re.compile(rx + r"\.nii(?:\.gz)?", re.IGNORECASE)


def _squeeze_cine(arr: np.ndarray, path: Path) -> np.ndarray:
    if arr.ndim == 4 and 1 in arr.shape[2:]:
        arr = arr[:, :, 0, :] if arr.shape[2] == 1 else arr[..., 0]
    if arr.ndim != 3:
        raise input_error(path, f"cine must have shape (H, W, T), got {tuple(arr.shape)}")
    if arr.shape[-1] < 2:
        raise input_error(path, f"cine has {arr.shape[-1]} frame; expected (H, W, T) with T >= 2")
    return arr


def _read_subjects(path: Path) -> dict[str, str] | None:
    if not path.is_file():
        return None
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
    except Exception as exc:
        raise input_error(path, f"malformed CSV ({type(exc).__name__}: {exc})") from exc
    df.columns = [c.strip() for c in df.columns]
    if "scan_id" not in df.columns or "subject_id" not in df.columns:
        raise input_error(path, f"expected columns scan_id,subject_id; found {','.join(df.columns)}")
    out: dict[str, str] = {}
    for i, r in enumerate(df.itertuples(index=False), 2):
        if r.scan_id.strip() in out:
            raise input_error(path, f"line {i}: duplicate scan_id {r.scan_id.strip()!r}")
        if not r.subject_id.strip():
            raise input_error(path, f"line {i}: empty subject_id")
        out[r.scan_id.strip()] = r.subject_id.strip()
    return out


def import_nifti(src: Path, out: Path, pattern: str = DEFAULT_PATTERN, label_pattern: str | None = None,
                 force: bool = False) -> dict:
    """Import a flat NIfTI folder (layout in the module docstring) into ``out``; returns dataset.json's content."""
    src, out = Path(src), Path(out)
    if not src.is_dir():
        raise input_error(src, "source folder not found")
    if label_pattern is None:
        if pattern.count("cine") != 1:
            raise SsnetError(f"--pattern {pattern!r} must contain 'cine' once (or give --label-pattern)")
        label_pattern = pattern.replace("cine", "label")
    cine_rx, label_rx = compile_pattern(pattern), compile_pattern(label_pattern)
    files = sorted((p for p in src.iterdir() if p.is_file() and not p.name.startswith(".")),
                   key=lambda p: natural_key(p.name))
    cines: dict[tuple[str, str | None], Path] = {}
    labels: dict[tuple[str, str | None], Path] = {}
    for p in files:
        for rx, table in ((cine_rx, cines), (label_rx, labels)):
            m = rx.fullmatch(p.name)
            if m:
                key = (m.group("scan"), m.groupdict().get("subject"))
                if key in table:
                    raise input_error(p, f"same scan as {table[key].name} (.nii and .nii.gz both present?)")
                table[key] = p
                break
    if not cines and not labels:
        raise input_error(src, f"no files match --pattern {pattern!r}")
    for key, p in labels.items():
        if key not in cines:
            raise input_error(p, f"label without a cine (expected {pattern.format(scan=key[0], subject=key[1])})")
    subjects = _read_subjects(src / "subjects.csv")
    plan = []
    for key, cine_path in cines.items():
        scan, subject = key
        if key not in labels:
            raise input_error(cine_path, f"cine without a label (expected "
                                         f"{label_pattern.format(scan=scan, subject=subject)} in {src})")
        scan_id = scan if subject is None else f"{subject}_{scan}"
        check_id(scan_id, "scan id", cine_path)
        if subject is None:
            if subjects is not None:
                if scan_id not in subjects:
                    raise input_error(src / "subjects.csv", f"no row for scan {scan_id!r}")
                subject = subjects[scan_id]
            else:
                subject = scan_id.split("_", 1)[0]
        plan.append((scan_id, subject, cine_path, labels[key]))
    ids = [p[0] for p in plan]
    dup = next((i for i in ids if ids.count(i) > 1), None)
    if dup is not None:
        raise input_error(src, f"two files give scan id {dup!r}")
    with DatasetWriter(out, force, src) as writer:
        per_scan = {}
        for scan_id, subject, cine_path, label_path in plan:
            arr, zooms = read_nifti(cine_path)
            cine = to_cine_dtype(_squeeze_cine(arr, cine_path), cine_path)
            del arr
            larr, _ = read_nifti(label_path)
            label = check_label(larr, label_path, cine.shape[:2], cine_path.name)
            spacing = tuple(float(z) for z in zooms[:2]) if len(zooms) >= 2 and min(zooms[:2]) > 0 else None
            writer.add(scan_id, subject, cine, label, spacing)
            per_scan[scan_id] = {"cine": cine_path.name, "label": label_path.name, "shape": list(cine.shape),
                                 "dtype": str(cine.dtype), "label_classes": sorted(int(v) for v in np.unique(label))}
        provenance = {"source": "flat NIfTI folder", "importer": "ssnet import nifti", "src": str(src),
                      "pattern": pattern, "label_pattern": label_pattern,
                      "subjects_from": "pattern" if "{subject}" in pattern else
                      ("subjects.csv" if subjects is not None else "scan id prefix before the first '_'"),
                      "spacing_from": "cine NIfTI zooms", "scans": per_scan,
                      "frame_0": "as given: frame 0 of each cine is taken as end-diastole"}
        writer.commit(provenance)
    return provenance
