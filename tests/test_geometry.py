"""Geometry: mm resampling, crop and their exact inverse; native-grid predictions, scoring and ``ssnet predict``."""
from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from ssnet.cli import main as cli
from ssnet.data.contract import write_manifest
from ssnet.data.dataset import ClipConfig, frame_indices, outside_fov_counts, preprocess
from ssnet.data.spatial import geometry_for
from ssnet.errors import SsnetError
from ssnet.evaluation.score import score_predictions
from ssnet.io import save_nifti

# (native shape, native spacing, spacing_mm, model size): identity, upsampling (anisotropic), padding
NON_SHRINKING = [
    ((48, 40), (1.5, 1.5), None, 32),
    ((48, 40), (1.5, 1.2), 1.0, 32),
    ((30, 20), (1.0, 1.0), None, 32),
    ((41, 57), (1.4, 1.4), 0.9, 48),
]


@pytest.mark.parametrize("shape,spacing,spacing_mm,size", NON_SHRINKING)
def test_round_trip_is_exact_inside_the_field_of_view(shape, spacing, spacing_mm, size) -> None:
    geo = geometry_for(shape, size, "crop", spacing, spacing_mm)
    label = np.random.default_rng(0).integers(0, 4, shape)
    back = geo.label_inverse(geo.label_forward(label))
    fov = geo.fov_mask()
    assert back.shape == label.shape and fov.any()
    np.testing.assert_array_equal(back[fov], label[fov])  # exact wherever the model sees the pixel
    assert (back[~fov] == 0).all()  # outside the field of view: background (the ground truth there is missed)


def test_shrinking_resampling_inverse_reproduces_the_model_output() -> None:
    """Spacing coarser than native: the native map returned resamples back to exactly the model's output."""
    geo = geometry_for((256, 216), 64, "crop", (1.37, 1.37), 1.607143)
    assert geo.resampled_shape == (218, 184) and geo.scale[0] > 1
    z = np.random.default_rng(1).integers(0, 4, (64, 64))
    np.testing.assert_array_equal(geo.label_forward(geo.label_inverse(z)), z)
    fov = geo.field_of_view_mm()
    assert fov is not None and abs(fov[0] - 64 * 1.607) < 0.5  # ~103 mm whatever the scanner


def test_predictions_map_back_as_probabilities() -> None:
    """Without resampling: exactly label_inverse(argmax). With it: arg-max of the linearly un-resampled
    probabilities, so a disc predicted at 2 mm returns to 1 mm with a smoother edge than nearest labels."""
    rng = np.random.default_rng(0)
    plain = geometry_for((70, 50), 64, "crop", (1.0, 1.0), None)
    probs = rng.dirichlet(np.ones(4), size=(64, 64)).transpose(2, 0, 1).astype(np.float32)
    assert np.array_equal(plain.probabilities_inverse(probs), plain.label_inverse(probs.argmax(0).astype(np.uint8)))

    coarse = geometry_for((128, 128), 64, "crop", (1.0, 1.0), 2.0)
    yy, xx = np.mgrid[:64, :64] + 0.5
    disc = 1.0 / (1.0 + np.exp(-(12.0 - np.hypot(yy - 32, xx - 32)) * 3.0))  # soft disc, radius 12 px = 24 mm
    p2 = np.stack([1 - disc, disc, np.zeros_like(disc), np.zeros_like(disc)]).astype(np.float32)
    truth = np.hypot(*(np.mgrid[:128, :128] + 0.5 - 64.0)) < 24.0
    smooth = coarse.probabilities_inverse(p2) == 1
    nearest = coarse.label_inverse(p2.argmax(0).astype(np.uint8)) == 1
    assert smooth.shape == truth.shape and (smooth ^ truth).sum() < (nearest ^ truth).sum()
    outside = np.zeros((4, 64, 64), np.float32)
    outside[1] = 1.0  # everything foreground inside the field of view; outside it stays background
    far = geometry_for((200, 200), 64, "crop", (1.0, 1.0), 2.0).probabilities_inverse(outside)
    assert far[0, 0] == 0 and far[100, 100] == 1


def test_phantom_quick_geometry_is_not_resampled() -> None:
    """The quick profile's 1.607 mm equals the phantom's pixels: no resampling (unchanged behaviour)."""
    from ssnet.engine.config import compose

    cfg = compose(["model=unet", "profile=quick"])
    geo = geometry_for((224, 224), int(cfg.data.size), "crop", (1.607143, 1.607143), float(cfg.data.spacing_mm))
    assert not geo.resampled and geo.offset == (80, 80)
    assert round(geo.field_of_view_mm()[0]) == 103


def test_images_resample_linearly_and_spacing_is_required() -> None:
    ramp = np.tile(np.arange(40, dtype=np.float32), (40, 1))
    geo = geometry_for((40, 40), 40, "crop", (1.0, 1.0), 0.5)  # upsample 2x, crop the centre 40 px
    out = geo.image_forward(ramp)
    assert out.shape == (40, 40) and set(np.round(np.diff(out[5, 2:-2]), 4)) == {0.5}  # linear, not nearest
    with pytest.raises(SsnetError, match="spacing is unknown"):
        geometry_for((40, 40), 32, "crop", None, 1.5, where="x.nii.gz")


def test_frame_selection_for_any_source_length() -> None:
    assert frame_indices(20, 10).tolist() == list(range(0, 20, 2))  # Sunnybrook
    assert frame_indices(30, 10).tolist() == list(range(0, 30, 3))  # the paper
    idx = frame_indices(25, 10)  # ACDC-like
    assert len(set(idx)) == 10 and idx[0] == 0 and idx[-1] < 25 and (np.diff(idx) >= 2).all()
    clip, lab = preprocess(np.random.default_rng(0).random((20, 24, 30), dtype=np.float32), None, ClipConfig(frames=10, size=16))
    assert clip.shape == (10, 1, 16, 16) and lab is None


# ----------------------------------------------------------------------------- datasets on disk
def _ring(shape: tuple[int, int], centre: tuple[float, float], r_in: float, r_out: float) -> np.ndarray:
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    r = np.hypot(yy - centre[0], xx - centre[1])
    return ((r >= r_in) & (r < r_out)).astype(np.uint8)


def make_nonsquare_dataset(root: Path, labels: bool = True, subjects: int = 4, shape=(40, 52), spacing=(1.2, 1.5),
                           frames: int = 8) -> Path:
    """Rings (myocardium) that contract; native shape (40, 52), anisotropic spacing; split 2/1/1 subjects."""
    rng = np.random.default_rng(0)
    rows, split = [], []
    for s in range(subjects):
        sid = f"P{s}"
        scan_id = f"{sid}_sl0"
        centre = (shape[0] / 2 + s - 2, shape[1] / 2 + 2 * s - 3)
        cine = np.stack([_ring(shape, centre, 7 * (1 - 0.2 * np.sin(np.pi * t / frames)), 13) * 100.0 + 20
                         + rng.normal(0, 3, shape) for t in range(frames)], -1)
        save_nifti(root / "cines" / f"{scan_id}.nii.gz", cine.astype(np.int16), spacing)
        label_rel = ""
        if labels:
            save_nifti(root / "labels" / f"{scan_id}.nii.gz", _ring(shape, centre, 7, 13), spacing)
            label_rel = f"labels/{scan_id}.nii.gz"
        rows.append({"scan_id": scan_id, "subject_id": sid, "cine": f"cines/{scan_id}.nii.gz", "label": label_rel,
                     "spacing_row": spacing[0], "spacing_col": spacing[1]})
        split.append({"scan_id": scan_id, "subject_id": sid, "split": ["train", "train", "val", "test"][s % 4]})
    write_manifest(root, rows)
    pd.DataFrame(split).to_csv(root / "split.csv", index=False)
    return root


def test_ground_truth_outside_the_field_of_view_counts_as_missed(tmp_path: Path) -> None:
    """A perfect model sees only its field of view: a label reaching outside it scores lower."""
    shape, spacing, size = (48, 48), (1.0, 1.0), 24
    geo = geometry_for(shape, size, "crop", spacing, None)
    inside = _ring(shape, (24, 24), 4, 8)  # within the central 24 px
    outside = _ring(shape, (24, 24), 8, 16)  # reaches beyond it
    root = tmp_path / "d"
    rows = []
    for sid, lab in (("in", inside), ("out", outside)):
        save_nifti(root / f"{sid}_cine.nii.gz", np.repeat(lab[..., None], 3, -1).astype(np.int16), spacing)
        save_nifti(root / f"{sid}_label.nii.gz", lab, spacing)
        rows.append({"scan_id": sid, "subject_id": sid, "cine": f"{sid}_cine.nii.gz", "label": f"{sid}_label.nii.gz",
                     "spacing_row": 1.0, "spacing_col": 1.0})
    write_manifest(root, rows)
    pd.DataFrame({"scan_id": ["in", "out"], "subject_id": ["in", "out"], "split": ["test", "test"]}).to_csv(root / "split.csv", index=False)
    pred = tmp_path / "pred"
    for sid, lab in (("in", inside), ("out", outside)):
        save_nifti(pred / f"{sid}.nii.gz", geo.label_inverse(geo.label_forward(lab)).astype(np.uint8), spacing)
    df = score_predictions(root, pred, classes=(1,), protocol="strict")
    dsc = df[df.metric == "dsc"].set_index("scan_id")["value"]
    assert dsc["in"] == 1.0 and dsc["out"] < 0.9
    assert outside_fov_counts(inside, geo)[1] == 0 and outside_fov_counts(outside, geo)[1] > 0
    # the native grid only: a square prediction of another shape names the scan
    save_nifti(pred / "in.nii.gz", geo.label_forward(inside).astype(np.uint8), spacing)
    with pytest.raises(SsnetError, match="scan 'in' has shape"):
        score_predictions(root, pred, classes=(1,))


def _run(capsys, *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = cli(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_train_predicts_on_the_native_grid_and_predict_handles_label_free_data(tmp_path: Path, capsys) -> None:
    data = make_nonsquare_dataset(tmp_path / "data")
    code, out, err = _run(capsys, "train", "model=ssnet", "profile=smoke", "data.frames=4", "data.size=32",
                          "data.spacing_mm=1.5", "train.max_steps=1", "train.val_every=1", f"data.dir={data}",
                          f"run_root={tmp_path / 'runs'}")
    assert code == 0, err[-2000:]
    assert "outside the field of view" in err
    run_dir = Path(out.strip().splitlines()[-1])
    info = json.loads((run_dir / "run.json").read_text())
    assert set(info["test_gt_outside_fov_px"]) == {"myocardium", "infarct", "mvo"}
    assert info["field_of_view_mm"] == [48.0, 48.0]
    img = nib.load(run_dir / "predictions" / "P3_sl0.nii.gz")
    assert img.shape == (40, 52)  # the label's native shape, not the 32x32 model grid
    assert tuple(round(z, 3) for z in img.header.get_zooms()) == (1.2, 1.5)

    bare = make_nonsquare_dataset(tmp_path / "bare", labels=False)  # empty label cells
    out_dir = tmp_path / "pred"
    code, out, err = _run(capsys, "predict", str(run_dir), "--data", str(bare), "--out", str(out_dir), "--probabilities")
    assert code == 0, err[-2000:]
    names = sorted(p.name for p in out_dir.glob("*.nii.gz"))
    assert names == [f"P{s}_sl0.nii.gz" for s in range(4)]
    probs = nib.load(out_dir / "probabilities" / "P0_sl0_probs.nii.gz").get_fdata()
    assert probs.shape == (40, 52, 4) and np.allclose(probs.sum(-1), 1, atol=1e-4)
    assert nib.load(out_dir / "probabilities" / "P0_sl0_uncertainty.nii.gz").shape == (40, 52)
    # never silently overwritten
    code, _, err = _run(capsys, "predict", str(run_dir), "--data", str(bare), "--out", str(out_dir))
    assert code == 1 and "--force" in err
    # the same run on the labelled test split gives the training run's predictions, which score
    code, _, err = _run(capsys, "predict", str(run_dir), "--data", str(data), "--out", str(tmp_path / "p2"), "--split", "test")
    assert code == 0, err
    assert (tmp_path / "p2" / "P3_sl0.nii.gz").read_bytes() == (run_dir / "predictions" / "P3_sl0.nii.gz").read_bytes()
    code, _, err = _run(capsys, "score", "--data", str(data), "--pred", str(tmp_path / "p2"), "--out", str(tmp_path / "pc.csv"))
    assert code == 0, err
