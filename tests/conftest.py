"""Shared fixtures: a tiny dataset in the contract, made in a few milliseconds."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def make_tiny_dataset(
    root: Path, subjects: int = 6, slices: int = 2, size: int = 48, frames: int = 6, seed: int = 0
) -> Path:
    """Write a tiny contract dataset: rings whose 'MVO' sector does not move (a toy, not the phantom)."""
    from ssnet.data.contract import write_manifest
    from ssnet.io import save_nifti

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size] - (size - 1) / 2
    r, theta = np.hypot(yy, xx), np.arctan2(yy, xx)
    rows = []
    for s in range(subjects):
        for k in range(slices):
            sid, scan_id = f"P{s:02d}", f"P{s:02d}_sl{k}"
            has_mvo = s % 2 == 0 and k == 0
            lesion = np.abs(theta - 0.5) < 0.6
            cine = np.zeros((size, size, frames), np.float32)
            for t in range(frames):
                squeeze = 1 - 0.25 * np.sin(np.pi * t / frames)
                inner = size * 0.18 * np.where(lesion & has_mvo, 1.0, squeeze)
                outer = size * 0.30 * np.where(lesion & has_mvo, 1.0, 0.95 + 0.05 * squeeze)
                cine[..., t] = np.where(r < inner, 200, np.where(r < outer, 80, 20)) + rng.normal(0, 5, (size, size))
            inner0, outer0 = size * 0.18, size * 0.30
            label = np.where((r >= inner0) & (r < outer0), 1, 0).astype(np.uint8)
            if has_mvo:
                label[(label == 1) & lesion] = 2
                label[(label == 2) & (r < (inner0 + outer0) / 2)] = 3
            save_nifti(root / "cines" / f"{scan_id}.nii.gz", cine.astype(np.int16), (1.5, 1.5))
            save_nifti(root / "labels" / f"{scan_id}.nii.gz", label, (1.5, 1.5))
            rows.append({"scan_id": scan_id, "subject_id": sid, "cine": f"cines/{scan_id}.nii.gz",
                         "label": f"labels/{scan_id}.nii.gz", "spacing_row": 1.5, "spacing_col": 1.5})
    write_manifest(root, rows)
    return root


@pytest.fixture
def tiny_dataset(tmp_path: Path) -> Path:
    """A fresh tiny dataset (6 subjects × 2 slices, 48², 6 frames) without split.csv."""
    return make_tiny_dataset(tmp_path / "data")


@pytest.fixture
def tiny_split_dataset(tiny_dataset: Path) -> Path:
    """The tiny dataset with a 4/1/1-subject split."""
    import pandas as pd

    from ssnet.data.contract import read_manifest

    m = read_manifest(tiny_dataset)
    part = {"P00": "train", "P01": "train", "P02": "train", "P03": "train", "P04": "val", "P05": "test"}
    pd.DataFrame({"scan_id": m.scan_id, "subject_id": m.subject_id, "split": m.subject_id.map(part)}).to_csv(
        tiny_dataset / "split.csv", index=False
    )
    return tiny_dataset


def load_benchmark(name: str):
    """Import ``benchmarks/<name>.py`` as a module (the benchmarks folder is not a package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, Path(__file__).resolve().parents[1] / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
