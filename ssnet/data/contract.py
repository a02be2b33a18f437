"""The dataset contract: the one interchange format every importer writes and every loader reads.

Layout of a dataset folder ``DIR``::

    DIR/manifest.csv   scan_id, subject_id, cine, label, spacing_row, spacing_col
    DIR/split.csv      scan_id, subject_id, split   (optional; split in train/val/test)
    DIR/dataset.json   provenance (optional)

``cine`` is a NIfTI of shape (H, W, T); ``label`` a NIfTI of shape (H, W) with
0 background, 1 LV myocardium, 2 infarct, 3 MVO (nested; each pixel holds its innermost class).
Paths are relative to ``DIR``; spacing is in mm and may be empty.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ssnet.errors import input_error
from ssnet.io import atomic_write_csv, load_nifti

MANIFEST_COLUMNS = ["scan_id", "subject_id", "cine", "label", "spacing_row", "spacing_col"]
SPLIT_COLUMNS = ["scan_id", "subject_id", "split"]
SPLITS = ("train", "val", "test")
NUM_CLASSES = 4
CLASS_NAMES = {0: "background", 1: "myocardium", 2: "infarct", 3: "mvo"}


@dataclass(frozen=True)
class Scan:
    """One row of the manifest, with absolute paths."""

    scan_id: str
    subject_id: str
    cine: Path
    label: Path | None  # None: an empty label cell (a dataset to predict on, not to train or score)
    spacing: tuple[float, float] | None


def _read_csv(path: Path, columns: list[str], what: str) -> pd.DataFrame:
    if not path.is_file():
        raise input_error(path, f"{what} not found")
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
    except Exception as exc:
        raise input_error(path, f"malformed CSV ({type(exc).__name__}: {exc})") from exc
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise input_error(path, f"missing column(s) {', '.join(missing)}; expected {', '.join(columns)}")
    df = df[columns + [c for c in df.columns if c not in columns]].copy()
    for col in ("scan_id", "subject_id"):
        empty = df[col].str.strip() == ""
        if empty.any():
            raise input_error(path, f"empty {col} on line {int(np.flatnonzero(empty)[0]) + 2}")
    dup = df["scan_id"][df["scan_id"].duplicated()]
    if len(dup):
        raise input_error(path, f"duplicate scan_id {dup.iloc[0]!r}")
    return df


def read_manifest(data_dir: str | Path) -> pd.DataFrame:
    """Read and validate ``DIR/manifest.csv`` (columns, ids, spacing format). Raises SsnetError."""
    path = Path(data_dir) / "manifest.csv"
    df = _read_csv(path, MANIFEST_COLUMNS, "manifest")
    if df.empty:
        raise input_error(path, "empty dataset: the manifest lists no scans")
    for col in ("spacing_row", "spacing_col"):
        values = pd.to_numeric(df[col].replace("", np.nan), errors="coerce")
        bad = df[col].ne("") & (values.isna() | (values <= 0))
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise input_error(path, f"{col} of scan {df['scan_id'].iloc[i]!r} is not a positive number: {df[col].iloc[i]!r}")
        df[col] = values
    return df


def scans(data_dir: str | Path, manifest: pd.DataFrame | None = None) -> list[Scan]:
    """The manifest as :class:`Scan` records with absolute paths."""
    data_dir = Path(data_dir)
    manifest = read_manifest(data_dir) if manifest is None else manifest
    out = []
    for r in manifest.itertuples(index=False):
        spacing = None if pd.isna(r.spacing_row) or pd.isna(r.spacing_col) else (float(r.spacing_row), float(r.spacing_col))
        label = data_dir / r.label if str(r.label).strip() else None
        out.append(Scan(str(r.scan_id), str(r.subject_id), data_dir / r.cine, label, spacing))
    return out


def write_manifest(data_dir: str | Path, rows: list[dict]) -> None:
    """Write ``DIR/manifest.csv`` atomically from dicts with the manifest columns."""
    df = pd.DataFrame(rows, columns=MANIFEST_COLUMNS)
    atomic_write_csv(df, Path(data_dir) / "manifest.csv")


def read_split(data_dir: str | Path, manifest: pd.DataFrame | None = None) -> pd.DataFrame:
    """Read and validate ``DIR/split.csv`` against the manifest. Raises SsnetError.

    Refuses unknown split names, scans not in the manifest, and subjects crossing parts.
    """
    data_dir = Path(data_dir)
    path = data_dir / "split.csv"
    df = _read_csv(path, SPLIT_COLUMNS, "split file")
    bad = ~df["split"].isin(SPLITS)
    if bad.any():
        raise input_error(path, f"unknown split {df['split'][bad].iloc[0]!r} (expected one of {', '.join(SPLITS)})")
    crossing = df.groupby("subject_id")["split"].nunique()
    crossing = crossing[crossing > 1]
    if len(crossing):
        subj = crossing.index[0]
        parts = ", ".join(sorted(df.loc[df["subject_id"] == subj, "split"].unique()))
        raise input_error(path, f"subject {subj!r} appears in more than one split ({parts}); splits must be subject-wise")
    manifest = read_manifest(data_dir) if manifest is None else manifest
    unknown = ~df["scan_id"].isin(manifest["scan_id"])
    if unknown.any():
        raise input_error(path, f"scan {df['scan_id'][unknown].iloc[0]!r} is not in manifest.csv")
    subj = manifest.set_index("scan_id")["subject_id"]
    wrong = df["subject_id"].ne(df["scan_id"].map(subj))
    if wrong.any():
        raise input_error(path, f"scan {df['scan_id'][wrong].iloc[0]!r} has a subject_id different from manifest.csv")
    return df


def split_hash(data_dir: str | Path) -> str:
    """Content hash (12 hex digits) of the split: sorted (scan_id, subject_id, split) rows."""
    df = read_split(data_dir)
    rows = sorted(zip(df["scan_id"], df["subject_id"], df["split"]))
    return hashlib.sha256("\n".join(",".join(r) for r in rows).encode()).hexdigest()[:12]


def scans_in_split(data_dir: str | Path, part: str) -> list[Scan]:
    """The scans of one split part (``train``, ``val`` or ``test``), in split-file order."""
    if part not in SPLITS:
        raise input_error(Path(data_dir) / "split.csv", f"unknown split part {part!r}; available: {', '.join(SPLITS)}")
    data_dir = Path(data_dir)
    manifest = read_manifest(data_dir)
    split = read_split(data_dir, manifest)
    wanted = set(split.loc[split["split"] == part, "scan_id"])
    chosen = [s for s in scans(data_dir, manifest) if s.scan_id in wanted]
    if not chosen:
        raise input_error(data_dir / "split.csv", f"the {part!r} split is empty")
    return chosen


def load_cine(scan: Scan) -> np.ndarray:
    """Load a cine as float32 ``(T, H, W)``; rejects wrong dimensionality and NaN/Inf."""
    arr, _ = load_nifti(scan.cine)
    if arr.ndim == 4 and arr.shape[2] == 1:  # (H, W, 1, T) from some converters
        arr = arr[:, :, 0, :]
    if arr.ndim != 3:
        raise input_error(scan.cine, f"cine must have shape (H, W, T), got {tuple(arr.shape)}")
    if not np.issubdtype(arr.dtype, np.number):
        raise input_error(scan.cine, f"cine has non-numeric dtype {arr.dtype}")
    arr = np.ascontiguousarray(np.moveaxis(arr, -1, 0), dtype=np.float32)
    if not np.isfinite(arr).all():
        raise input_error(scan.cine, "cine contains NaN or Inf values")
    return arr


def load_label(scan: Scan) -> np.ndarray:
    """Load a label map as int64 ``(H, W)`` with values in 0..3."""
    if scan.label is None:
        raise input_error(scan.cine, f"scan {scan.scan_id!r} has no label (empty label cell in manifest.csv)")
    arr, _ = load_nifti(scan.label)
    arr = np.squeeze(arr) if arr.ndim > 2 else arr
    if arr.ndim != 2:
        raise input_error(scan.label, f"label must have shape (H, W), got {tuple(arr.shape)}")
    if not np.issubdtype(arr.dtype, np.number):
        raise input_error(scan.label, f"label has non-numeric dtype {arr.dtype}")
    if np.issubdtype(arr.dtype, np.floating):
        if not np.isfinite(arr).all() or (arr != np.round(arr)).any():
            raise input_error(scan.label, "label must hold integers (found non-integer, NaN or Inf values)")
    values = np.unique(arr)
    bad = values[(values < 0) | (values >= NUM_CLASSES)]
    if len(bad):
        raise input_error(scan.label, f"label values must be in 0..{NUM_CLASSES - 1}, found {bad.tolist()[:5]}")
    return arr.astype(np.int64)


def load_scan(scan: Scan) -> tuple[np.ndarray, np.ndarray | None]:
    """Load ``(cine (T, H, W) float32, label (H, W) int64 or None)`` and check that their sizes agree."""
    cine = load_cine(scan)
    if scan.label is None:
        return cine, None
    label = load_label(scan)
    if cine.shape[1:] != label.shape:
        raise input_error(scan.label, f"label size {label.shape} does not match cine size {cine.shape[1:]} ({scan.cine.name})")
    return cine, label


def check_dataset(data_dir: str | Path) -> list[str]:
    """Validate a dataset folder; return every problem found (empty list when it is valid)."""
    from ssnet.errors import SsnetError

    data_dir = Path(data_dir)
    problems: list[str] = []
    if not data_dir.is_dir():
        return [f"{data_dir}: not a folder"]
    try:
        manifest = read_manifest(data_dir)
    except SsnetError as exc:
        return [str(exc)]
    for scan in scans(data_dir, manifest):
        try:
            load_scan(scan)
        except SsnetError as exc:
            problems.append(str(exc))
    if (data_dir / "split.csv").exists():
        try:
            read_split(data_dir, manifest)
        except SsnetError as exc:
            problems.append(str(exc))
    return problems
