"""Do a dataset's myocardium labels sit on the image's myocardium? (a check of an importer's contour geometry)

    python benchmarks/label_alignment.py data/sunnybrook [--max-shift 6] [--out alignment.csv]

For every labelled scan, the label's myocardium ring (class 1) and the cavity it encloses are shifted by every
(dy, dx) within ``--max-shift`` pixels over the labelled frame (frame 0, ED in the contract), and the shift
that maximises the contrast "mean image in the cavity − mean image in the ring" (cine bSSFP: bright blood,
dark muscle) is recorded. An importer whose contours sit on the anatomy gives shifts scattered around (0, 0);
a shift of the same sign on most slices of every patient says the masks are displaced. Per-scan rows
(best shift, contrast gain over no shift) and a per-subject summary are printed; ``--out`` writes the rows.
It is a heuristic (papillary muscles and partial volume move the optimum by a pixel), not a registration.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import ndimage

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ssnet.data.contract import load_scan, scans  # noqa: E402
from ssnet.io import atomic_write_csv  # noqa: E402


def best_shift(image: np.ndarray, ring: np.ndarray, max_shift: int) -> tuple[int, int, float, float]:
    """(dy, dx, contrast at that shift, contrast at no shift) of the cavity-minus-ring contrast."""
    img = (image - image.mean()) / (image.std() + 1e-8)
    cavity = ndimage.binary_fill_holes(ring) & ~ring
    if not cavity.any():
        return 0, 0, float("nan"), float("nan")

    def contrast(dy: int, dx: int) -> float:
        return float(img[np.roll(cavity, (dy, dx), (0, 1))].mean() - img[np.roll(ring, (dy, dx), (0, 1))].mean())

    shifts = [(dy, dx) for dy in range(-max_shift, max_shift + 1) for dx in range(-max_shift, max_shift + 1)]
    dy, dx = max(shifts, key=lambda s: (contrast(*s), -abs(s[0]) - abs(s[1])))
    return dy, dx, contrast(dy, dx), contrast(0, 0)


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("data", type=Path, help="dataset folder in the contract (manifest.csv)")
    p.add_argument("--max-shift", type=int, default=6)
    p.add_argument("--out", type=Path, default=None)
    a = p.parse_args(argv)
    rows = []
    for scan in scans(a.data):
        cine, label = load_scan(scan)
        if label is None or not (label == 1).any():
            continue
        dy, dx, best, zero = best_shift(cine[0].astype(float), label == 1, a.max_shift)
        rows.append({"scan_id": scan.scan_id, "subject_id": scan.subject_id, "dy": dy, "dx": dx,
                     "contrast_best": round(best, 4), "contrast_unshifted": round(zero, 4)})
    df = pd.DataFrame(rows)
    if df.empty:
        print(f"{a.data}: no labelled myocardium", file=sys.stderr)
        return 1
    inner = df[(df.dy.abs() < a.max_shift) & (df.dx.abs() < a.max_shift)]  # shifts at the search edge are failures
    summary = inner.groupby("subject_id").agg(slices=("dy", "size"), dy_median=("dy", "median"), dx_median=("dx", "median"),
                                               dy_mean=("dy", "mean"), dx_mean=("dx", "mean"))
    print(df.to_string(index=False))
    print(f"\nper subject (slices whose best shift is inside ±{a.max_shift - 1} px):")
    print(summary.round(2).to_string())
    print(f"all: dy mean {inner.dy.mean():+.2f}, dx mean {inner.dx.mean():+.2f} px over {len(inner)} of {len(df)} slices")
    if a.out:
        atomic_write_csv(df, a.out, overwrite=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
