"""Benchmark: score N synthetic 224² 4-class scans with both protocols; time MONAI on the same masks.

    python benchmarks/bench_metrics.py [--n 1000] [--size 224] [--skip-monai]

Ours = :func:`ssnet.evaluation.metrics.evaluate_scan` (paper + strict, classes 1–3, spacing 1.4 mm,
i.e. the paper HSD needs its own pixel-unit transform). MONAI = ``HausdorffDistanceMetric(percentile=95)``
plus ``DiceMetric`` on the same one-hot masks (classes 1–3), in chunks. Not a test.
"""
from __future__ import annotations

import argparse
import time
import warnings

import numpy as np


def synthetic_scans(n: int, size: int = 224, seed: int = 0) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """``n`` (pred, gt) label-map pairs: myocardial ring, infarct wedge, MVO core (absent in ~40 %)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size].astype(np.float32)
    preds, gts = [], []
    for i in range(n):
        cy, cx = size / 2 + rng.normal(0, 8, 2)
        r_in, r_out = rng.uniform(18, 26), rng.uniform(32, 42)
        ang0 = rng.uniform(-np.pi, np.pi)

        def label(dy: float, dx: float, grow: float, mvo: bool) -> np.ndarray:
            r = np.hypot(yy - cy - dy, xx - cx - dx)
            ang = np.angle(np.exp(1j * (np.arctan2(yy - cy - dy, xx - cx - dx) - ang0)))
            lab = np.zeros((size, size), np.uint8)
            ring = (r >= r_in - grow) & (r <= r_out + grow)
            lab[ring] = 1
            lab[ring & (np.abs(ang) < 0.9 + 0.05 * grow)] = 2
            if mvo:
                lab[ring & (np.abs(ang) < 0.3 + 0.05 * grow) & (r > r_in + 3) & (r < r_out - 3)] = 3
            return lab

        has_mvo = rng.random() < 0.6
        gts.append(label(0, 0, 0, has_mvo))
        pred_mvo = has_mvo if rng.random() < 0.85 else not has_mvo  # some misses / false positives
        preds.append(label(*rng.normal(0, 2, 2), rng.normal(0, 1.5), pred_mvo))
    return preds, gts


def bench_ours(preds: list[np.ndarray], gts: list[np.ndarray], spacing: tuple[float, float]) -> tuple[float, int]:
    from ssnet.evaluation.metrics import evaluate_scan

    t0 = time.perf_counter()
    n_rows = 0
    for p, g in zip(preds, gts):
        n_rows += len(evaluate_scan(p, g, classes=(1, 2, 3), spacing=spacing, tau=1.0))
    return time.perf_counter() - t0, n_rows


def bench_monai(preds: list[np.ndarray], gts: list[np.ndarray], spacing: tuple[float, float], chunk: int = 50) -> float:
    import torch
    from monai.metrics import DiceMetric, HausdorffDistanceMetric

    torch.set_num_threads(2)
    hd = HausdorffDistanceMetric(include_background=False, percentile=95)
    dice = DiceMetric(include_background=False)
    eye = np.eye(4, dtype=np.float32)
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for s in range(0, len(preds), chunk):
            p = torch.from_numpy(np.moveaxis(eye[np.stack(preds[s : s + chunk])], -1, 1).copy())
            g = torch.from_numpy(np.moveaxis(eye[np.stack(gts[s : s + chunk])], -1, 1).copy())
            hd(p, g, spacing=list(spacing))
            dice(p, g)
        hd.aggregate()
        dice.aggregate()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--skip-monai", action="store_true")
    a = ap.parse_args()
    spacing = (1.4, 1.4)
    preds, gts = synthetic_scans(a.n, a.size)
    ours, n_rows = bench_ours(preds, gts, spacing)
    print(f"ours  (paper+strict, 3 classes, {a.n} scans {a.size}²): {ours:.2f} s  ({n_rows} metric values)")
    if not a.skip_monai:
        monai_s = bench_monai(preds, gts, spacing)
        print(f"MONAI (HausdorffDistanceMetric p95 + DiceMetric, 3 classes):   {monai_s:.2f} s")
        print(f"ratio MONAI / ours: {monai_s / ours:.1f}x")


if __name__ == "__main__":
    main()
