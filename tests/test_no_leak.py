"""No ground truth reaches a model at test time (baselines reference, "No ground-truth seed at test time").

For every registered model: two ``ssnet train`` runs with the same seed on two copies of the tiny
dataset that differ only in the *test* split's labels must write identical predictions. A memory
model seeded with the test mask, or any path that reads the test label before predicting, fails.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ssnet import registry
from ssnet.engine.config import compose
from ssnet.engine.train import train
from ssnet.io import load_nifti, save_nifti

SMOKE = ["profile=smoke", "data.frames=4", "data.size=64", "train.max_steps=1", "train.val_every=1", "train.batch_size=2"]


def _scramble_test_labels(data: Path) -> int:
    """Replace every test label by a different label map (rolled classes plus a block of MVO)."""
    split = pd.read_csv(data / "split.csv")
    manifest = pd.read_csv(data / "manifest.csv").set_index("scan_id")
    changed = 0
    for scan_id in split.loc[split["split"] == "test", "scan_id"]:
        path = data / manifest.loc[scan_id, "label"]
        label, spacing = load_nifti(path)
        new = ((label.astype(np.int64) + 1) % 4).astype(np.uint8)
        new[: label.shape[0] // 3, : label.shape[1] // 3] = 3
        assert not np.array_equal(new, label)
        path.unlink()
        save_nifti(path, new, spacing)
        changed += 1
    return changed


def _predictions(run_dir: Path) -> dict[str, np.ndarray]:
    return {p.name: load_nifti(p)[0] for p in sorted((run_dir / "predictions").glob("*.nii.gz"))}


@pytest.mark.parametrize("name", registry.names())
def test_predictions_do_not_depend_on_test_labels(name: str, tiny_split_dataset: Path, tmp_path: Path) -> None:
    if not (Path(__file__).resolve().parents[1] / "configs" / "model" / f"{name}.yaml").exists():
        pytest.skip(f"{name} has no model config")
    entry = registry.get(name)
    frames = max(4, entry.min_frames)
    other = tmp_path / "other"
    shutil.copytree(tiny_split_dataset, other)
    assert _scramble_test_labels(other) > 0
    runs = []
    for data in (tiny_split_dataset, other):
        overrides = [f"model={name}", *SMOKE, f"data.frames={frames}", f"data.dir={data}", f"run_root={tmp_path / 'runs'}",
                     f"run_name={name}-{data.name}", "seed=0"]
        runs.append(train(compose(overrides), overrides))
    first, second = (_predictions(r) for r in runs)
    assert first.keys() == second.keys() and len(first) > 0
    for key in first:
        np.testing.assert_array_equal(first[key], second[key], err_msg=f"{name}: prediction {key} depends on the test labels")
