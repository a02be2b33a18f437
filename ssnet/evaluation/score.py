"""Score a folder of predicted label maps against a dataset split: the long-format ``per_case.csv``.

``ssnet score --data DIR --pred PRED_DIR [--split test] [--protocol paper|strict|both]
[--method NAME --seed N --tau 1.0] --out per_case.csv [--force]``

Predictions are scored on the label's native grid (same shape as the label, native spacing):
``ssnet train`` and ``ssnet predict`` write them there. A prediction of another shape is an error
naming the scan, unless ``--legacy-grid crop|resize`` asks for the old comparison of square-grid
predictions with the label mapped onto that grid (old run folders only).
"""
from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ssnet.data.contract import NUM_CLASSES, SPLITS, load_label, scans_in_split, split_hash
from ssnet.data.spatial import SPATIAL_MODES, grid_spacing, to_grid
from ssnet.errors import SsnetError, input_error
from ssnet.evaluation.metrics import evaluate_scan
from ssnet.io import atomic_write_csv, load_label_map

PER_CASE_COLUMNS: list[str] = [
    "method", "seed", "protocol", "split", "scan_id", "patient_id", "class_id", "metric",
    "value", "raw_value", "empty_status", "n_gt", "n_pred", "unit", "spacing_row", "spacing_col",
    "checkpoint", "config_hash", "split_hash", "tau", "grid_rows", "grid_cols",
]  # fmt: skip
PRED_SUFFIXES: tuple[str, ...] = (".nii.gz", ".nii", ".npy", ".npz")


def _protocols(protocol: str) -> tuple[str, ...]:
    if protocol == "both":
        return ("paper", "strict")
    if protocol in ("paper", "strict"):
        return (protocol,)
    raise SsnetError(f"unknown protocol {protocol!r}; available: paper, strict, both")


def _scan_id_of(name: str) -> str | None:
    low = name.lower()
    for suffix in PRED_SUFFIXES:
        if low.endswith(suffix):
            return name[: -len(suffix)]
    return None


def find_predictions(pred_dir: str | Path, scan_ids: Sequence[str]) -> dict[str, Path]:
    """Map each scan id to its prediction file in ``pred_dir``.

    Files with another extension and sub-folders are ignored. Raises SsnetError on a missing
    prediction, a prediction for a scan outside ``scan_ids`` (extra) or two files for one scan.
    """
    pred_dir = Path(pred_dir)
    if not pred_dir.is_dir():
        raise input_error(pred_dir, "prediction folder not found")
    found: dict[str, Path] = {}
    for path in sorted(pred_dir.iterdir()):
        sid = _scan_id_of(path.name) if path.is_file() and not path.name.startswith(".") else None
        if sid is None:
            continue
        if sid in found:
            raise input_error(path, f"two prediction files for scan {sid!r} ({found[sid].name} and {path.name})")
        found[sid] = path
    wanted = set(scan_ids)
    extra = sorted(set(found) - wanted)
    if extra:
        raise input_error(
            found[extra[0]], f"prediction for scan {extra[0]!r}, which is not in the evaluated split part"
            + (f" ({len(extra)} extra files)" if len(extra) > 1 else "")
        )
    missing = [s for s in scan_ids if s not in found]
    if missing:
        more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
        raise input_error(pred_dir, f"missing prediction for scan {missing[0]!r}{more} (expected {missing[0]}.nii.gz)")
    return found


def _check_prediction(pred: np.ndarray, path: Path, scan_id: str) -> np.ndarray:
    if not np.issubdtype(pred.dtype, np.number) and pred.dtype != bool:
        raise input_error(path, f"prediction for scan {scan_id!r} has non-numeric dtype {pred.dtype}")
    if np.issubdtype(pred.dtype, np.floating):
        if not np.isfinite(pred).all() or (pred != np.round(pred)).any():
            raise input_error(path, f"prediction for scan {scan_id!r} must hold integer labels (found non-integer, NaN or Inf)")
    values = np.unique(pred)
    bad = values[(values < 0) | (values >= NUM_CLASSES)]
    if len(bad):
        raise input_error(path, f"prediction for scan {scan_id!r} has values outside 0..{NUM_CLASSES - 1}: {bad.tolist()[:5]}")
    return pred.astype(np.int64)


def score_predictions(
    data_dir: str | Path,
    pred_dir: str | Path,
    *,
    split: str = "test",
    protocol: str = "both",
    method: str = "",
    seed: int = 0,
    spatial: str | None = None,
    checkpoint: str = "",
    config_hash: str = "",
    tau: float = 1.0,
    classes: Sequence[int] = (1, 2, 3),
) -> pd.DataFrame:
    """Score every scan of one split part; return the long-format per-case frame.

    Every prediction must have its label's (native) shape and is compared there with the native
    spacing. Only with ``spatial`` (legacy) is a square prediction of another shape compared with
    the label brought onto its grid by ``to_grid(label, size, spatial)``.

    Args:
        data_dir: dataset folder (manifest.csv, split.csv).
        pred_dir: folder of ``<scan_id>.nii.gz`` (or ``.nii``, ``.npy``, ``.npz``) label maps.
        split: split part (train/val/test).
        protocol: ``paper``, ``strict`` or ``both``.
        method, seed, checkpoint, config_hash: provenance copied into every row.
        spatial: None (native grid only), or legacy ``crop``/``resize`` square-grid predictions.
        tau: NSD tolerance in the distance unit (mm, or px when spacing is unknown).
        classes: classes to score (3 = MVO).

    Returns:
        DataFrame with :data:`PER_CASE_COLUMNS`, one row per (scan, class, protocol, metric).

    Raises:
        SsnetError: missing/extra/wrong-shaped predictions or values outside 0..3.
    """
    protocols = _protocols(protocol)
    if spatial is not None and spatial not in SPATIAL_MODES:
        raise SsnetError(f"unknown spatial mode {spatial!r}; available: {', '.join(SPATIAL_MODES)}")
    if not (tau > 0):
        raise SsnetError(f"tau must be a positive distance, got {tau}")
    bad_classes = [c for c in classes if not 0 <= int(c) < NUM_CLASSES]
    if bad_classes:
        raise SsnetError(f"classes must be in 0..{NUM_CLASSES - 1}, got {bad_classes}")
    if split not in SPLITS:
        raise SsnetError(f"unknown split {split!r}; available: {', '.join(SPLITS)}")
    data_dir = Path(data_dir)
    chosen = scans_in_split(data_dir, split)
    shash = split_hash(data_dir)
    preds = find_predictions(pred_dir, [s.scan_id for s in chosen])

    frames: list[pd.DataFrame] = []
    for scan in chosen:
        path = preds[scan.scan_id]
        pred = _check_prediction(load_label_map(path), path, scan.scan_id)
        if scan.label is None:
            raise input_error(data_dir / "manifest.csv", f"scan {scan.scan_id!r} has no label to score against")
        label = load_label(scan)
        if pred.shape == label.shape:
            gt, spacing = label, scan.spacing
        elif spatial is not None and pred.shape[0] == pred.shape[1]:
            size = int(pred.shape[0])
            gt = to_grid(label, size=size, mode=spatial)
            spacing = grid_spacing(scan.spacing, label.shape, size, mode=spatial)
        else:
            raise input_error(
                path, f"prediction for scan {scan.scan_id!r} has shape {tuple(pred.shape)}; expected the label's native "
                f"shape {tuple(label.shape)} (predictions are scored on the native grid)"
            )
        rows = evaluate_scan(pred, gt, classes=classes, spacing=spacing, tau=tau, protocols=protocols)
        df = pd.DataFrame(rows)
        df["scan_id"] = scan.scan_id
        df["patient_id"] = scan.subject_id
        df["unit"] = "px" if spacing is None else "mm"
        df["spacing_row"] = np.nan if spacing is None else float(spacing[0])
        df["spacing_col"] = np.nan if spacing is None else float(spacing[1])
        df["grid_rows"], df["grid_cols"] = int(gt.shape[0]), int(gt.shape[1])
        frames.append(df)
    out = pd.concat(frames, ignore_index=True)
    out["method"] = method
    out["seed"] = int(seed)
    out["split"] = split
    out["checkpoint"] = checkpoint
    out["config_hash"] = config_hash
    out["split_hash"] = shash
    out["tau"] = float(tau)
    return out[PER_CASE_COLUMNS]


def read_per_case(path: str | Path) -> pd.DataFrame:
    """Read a per_case.csv written by :func:`score_predictions`; checks the required columns."""
    path = Path(path)
    if not path.is_file():
        raise input_error(path, "file not found")
    try:
        df = pd.read_csv(path, dtype={"scan_id": str, "patient_id": str, "method": str, "split_hash": str,
                                      "checkpoint": str, "config_hash": str}, keep_default_na=True)
    except Exception as exc:
        raise input_error(path, f"malformed CSV ({type(exc).__name__}: {exc})") from exc
    required = ["method", "seed", "protocol", "scan_id", "class_id", "metric", "value", "empty_status", "n_gt"]
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise input_error(path, f"not a per-case CSV: missing column(s) {', '.join(missing)}")
    for col in ("method", "checkpoint", "config_hash", "split_hash"):
        if col in df.columns:
            df[col] = df[col].fillna("")
    return df


def main(argv: list[str]) -> int:
    """``ssnet score``: write per_case.csv for one folder of predictions."""
    p = argparse.ArgumentParser(prog="ssnet score", description="Score predicted label maps against a dataset split.")
    p.add_argument("--data", required=True, help="dataset folder (manifest.csv, split.csv)")
    p.add_argument("--pred", required=True, help="folder of <scan_id>.nii.gz (or .nii/.npy/.npz) predictions")
    p.add_argument("--split", default="test", choices=["train", "val", "test"])
    p.add_argument("--protocol", default="both", choices=["paper", "strict", "both"])
    p.add_argument("--method", default="")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--legacy-grid", dest="spatial", default=None, choices=list(SPATIAL_MODES),
                   help="legacy: score square-grid predictions against the label mapped by crop|resize (default: native grid only)")
    p.add_argument("--tau", type=float, default=1.0, help="NSD tolerance in the distance unit (default 1.0)")
    p.add_argument("--classes", type=int, nargs="+", default=[1, 2, 3])
    p.add_argument("--checkpoint", default="")
    p.add_argument("--config-hash", default="")
    p.add_argument("--out", required=True, help="output per_case.csv")
    p.add_argument("--summary", default=None, help="also write summary.csv (reference §7) to this path")
    p.add_argument("--force", action="store_true", help="overwrite an existing --out (and --summary)")
    a = p.parse_args(argv)
    out = Path(a.out)
    for target in (out, Path(a.summary) if a.summary else None):
        if target is not None and target.exists() and not a.force:
            raise input_error(target, "already exists; pass --force to overwrite it")
    df = score_predictions(
        a.data, a.pred, split=a.split, protocol=a.protocol, method=a.method, seed=a.seed, spatial=a.spatial,
        checkpoint=a.checkpoint, config_hash=a.config_hash, tau=a.tau, classes=tuple(a.classes),
    )  # fmt: skip
    atomic_write_csv(df, out, overwrite=True)
    if a.summary:
        from ssnet.evaluation.stats import summarize

        atomic_write_csv(summarize(df), a.summary, overwrite=True)
    mvo = df[(df["class_id"] == 3) & (df["metric"].isin(["dice", "dsc"]))]
    n_scans = df["scan_id"].nunique()
    msg = [f"scored {n_scans} scans ({a.split}, split {df['split_hash'].iloc[0]}, tau={a.tau})"]
    for proto, grp in mvo.groupby("protocol", sort=True):
        msg.append(f"  MVO {grp['metric'].iloc[0]} ({proto}): {grp['value'].mean():.4f}")
    print("\n".join(msg))
    print(out)
    return 0
