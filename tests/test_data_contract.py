"""Dataset contract, ``ssnet check``, the split and the training dataset."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from ssnet.cli import main as cli
from ssnet.data.contract import check_dataset, read_split, scans, split_hash
from ssnet.data.dataset import CineDataset, ClipConfig, frame_indices, preprocess
from ssnet.data.sampling import StepBatchSampler
from ssnet.data.spatial import crop_or_pad, grid_spacing, resize_nearest
from ssnet.data.split import assign_subjects, make_split, subject_table
from ssnet.errors import SsnetError
from ssnet.io import save_nifti


def test_check_accepts_valid_dataset(tiny_dataset: Path, capsys) -> None:
    assert check_dataset(tiny_dataset) == []
    assert cli(["check", str(tiny_dataset)]) == 0


def test_check_reports_every_problem_with_its_file(tiny_dataset: Path, capsys) -> None:
    first, second = scans(tiny_dataset)[:2]
    save_nifti(first.label, np.full((48, 48), 7, np.uint8))
    cine = np.zeros((48, 48, 6), np.float32)
    cine[0, 0, 0] = np.nan
    save_nifti(second.cine, cine)
    problems = check_dataset(tiny_dataset)
    assert len(problems) == 2
    assert any(str(first.label) in p and "0..3" in p for p in problems)
    assert any(str(second.cine) in p and "NaN" in p for p in problems)
    assert cli(["check", str(tiny_dataset)]) == 1


def test_frame_indices() -> None:
    assert frame_indices(30, 10).tolist() == list(range(0, 30, 3))
    assert frame_indices(30, 5).tolist() == [0, 6, 12, 18, 24]
    assert frame_indices(30, 15).tolist() == list(range(0, 30, 2))
    assert frame_indices(30, 30).tolist() == list(range(30))
    assert frame_indices(20, 10).tolist() == list(range(0, 20, 2))
    with pytest.raises(ValueError, match="only 6"):
        frame_indices(6, 10)


def test_crop_pad_and_resize_geometry() -> None:
    a = np.arange(36).reshape(6, 6)
    assert crop_or_pad(a, 4).tolist() == a[1:5, 1:5].tolist()
    padded = crop_or_pad(a, 8)
    assert padded.shape == (8, 8) and padded[1:7, 1:7].tolist() == a.tolist() and padded[0].sum() == 0
    big = resize_nearest(a, 12)
    assert big.shape == (12, 12) and big[0, 0] == 0 and big[-1, -1] == 35
    ref = torch.nn.functional.interpolate(torch.from_numpy(a[None, None].astype(np.float32)), size=(4, 4), mode="nearest-exact")
    assert resize_nearest(a, 4).tolist() == ref[0, 0].long().tolist()
    assert grid_spacing((1.0, 2.0), (256, 128), 224, "resize") == pytest.approx((256 / 224, 2 * 128 / 224))
    assert grid_spacing((1.0, 2.0), (256, 128), 224, "crop") == (1.0, 2.0)


def test_split_is_subject_wise_stratified_and_hashed(tiny_dataset: Path) -> None:
    split, digest = make_split(tiny_dataset, seed=0)
    assert set(split["split"]) == {"train", "val", "test"}
    assert split.groupby("subject_id")["split"].nunique().max() == 1
    subjects = subject_table(tiny_dataset)
    mvo = set(subjects.loc[subjects.has_mvo, "subject_id"])
    parts = split.drop_duplicates("subject_id").set_index("subject_id")["split"]
    assert {parts[s] for s in mvo} >= {"train"}  # MVO subjects are dealt to train first
    assert digest == split_hash(tiny_dataset) and len(digest) == 12
    again, digest2 = make_split(tiny_dataset, seed=0)  # identical split: accepted, same hash
    assert digest2 == digest
    with pytest.raises(SsnetError, match="different split already exists"):
        make_split(tiny_dataset, seed=5, ratios=(0.4, 0.3, 0.3))


def test_split_hits_target_scan_counts() -> None:
    rng = np.random.default_rng(1)
    subjects = pd.DataFrame({"subject_id": [f"S{i:03d}" for i in range(125)],
                             "n_scans": rng.integers(3, 8, 125), "has_mvo": rng.random(125) < 0.5})
    total = int(subjects.n_scans.sum())
    target = (round(total * 443 / 621), round(total * 63 / 621))
    target = (*target, total - sum(target))
    part_of = assign_subjects(subjects, seed=0, target_scans=target)
    counts = subjects.assign(part=subjects.subject_id.map(part_of)).groupby("part").n_scans.sum()
    assert (counts["train"], counts["val"], counts["test"]) == target


def test_loader_refuses_subjects_crossing_splits(tiny_split_dataset: Path) -> None:
    split = pd.read_csv(tiny_split_dataset / "split.csv")
    split.loc[split.scan_id == "P00_sl1", "split"] = "test"
    split.to_csv(tiny_split_dataset / "split.csv", index=False)
    with pytest.raises(SsnetError, match=r"split.csv: subject 'P00' appears in more than one split"):
        read_split(tiny_split_dataset)
    with pytest.raises(SsnetError, match="more than one split"):
        CineDataset(tiny_split_dataset, "train")


def test_dataset_shapes_normalisation_and_augmentation(tiny_split_dataset: Path) -> None:
    cfg = ClipConfig(frames=3, size=32, spatial="crop")
    ds = CineDataset(tiny_split_dataset, "train", cfg, augment=True)
    assert len(ds) == 8 and ds.frames.shape == (8, 3, 1, 32, 32) and ds.labels.dtype == torch.int64
    item = ds[(0, 123)]
    again = ds[(0, 123)]
    assert torch.equal(item["frames"], again["frames"]) and torch.equal(item["label"], again["label"])
    assert item["frames"].shape == (3, 1, 32, 32) and item["label"].shape == (32, 32)
    raw = np.linspace(0, 1000, 6 * 8 * 8, dtype=np.float32).reshape(6, 8, 8)
    clip, _ = preprocess(raw, np.zeros((8, 8), np.int64), ClipConfig(frames=6, size=8))
    assert clip.min().item() == pytest.approx(-0.459 / 0.223, abs=1e-5)
    assert clip.max().item() == pytest.approx((1 - 0.459) / 0.223, abs=1e-5)


def test_percentile_intensity_is_robust_to_a_bright_pixel() -> None:
    from ssnet.data.dataset import scale_intensity

    rng = np.random.default_rng(0)
    clip = rng.uniform(0, 100, (4, 32, 32)).astype(np.float32)
    clip[0, 0, 0] = 5000.0  # one bright outlier (fat, a flow artefact)
    minmax = scale_intensity(clip, "minmax")
    robust = scale_intensity(clip, "percentile", (0.5, 99.5))
    assert minmax.min() == 0 and minmax.max() == 1 and robust.min() == 0 and robust.max() == 1
    # min-max squeezes the tissue into the bottom 2 %; the percentile scaling keeps its full range
    assert np.median(minmax) < 0.02 and 0.4 < np.median(robust) < 0.6
    assert np.array_equal(scale_intensity(np.full((2, 4, 4), 7.0), "percentile"), np.zeros((2, 4, 4)))
    with pytest.raises(ValueError, match="data.intensity"):
        scale_intensity(clip, "zscore")
    # the config key reaches preprocessing
    raw = clip.copy()
    out, _ = preprocess(raw, None, ClipConfig(frames=4, size=32, intensity="percentile"))
    assert out.max().item() == pytest.approx((1 - 0.459) / 0.223, abs=1e-5)
    assert out.median().item() > preprocess(raw, None, ClipConfig(frames=4, size=32))[0].median().item() + 1.0


def test_dataset_rejects_too_few_frames(tiny_split_dataset: Path) -> None:
    with pytest.raises(SsnetError, match=r"cines/.*10 frames requested but the cine has only 6"):
        CineDataset(tiny_split_dataset, "train", ClipConfig(frames=10, size=32))


def test_step_sampler_resume_is_exact() -> None:
    full = list(StepBatchSampler(10, 4, seed=3, total_steps=7))
    resumed = list(StepBatchSampler(10, 4, seed=3, total_steps=7, start_step=4))
    assert resumed == full[4:]
    assert all(len(b) == 4 for b in full)
    # every epoch visits distinct scans
    assert len({i for i, _ in full[0] + full[1]}) == 8
