"""``ssnet predict`` with test-time augmentation and ensembles: the inverse maps, the averaging, the guards."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ssnet.engine.predict import _apply, _undo, averaged_probabilities, tta_transforms
from ssnet.models.base import SegOutput


class FramesConv(torch.nn.Module):
    """(B, T, 1, H, W) → K logits by one conv over the frames-as-channels image (a tiny stand-in model)."""

    def __init__(self, frames: int, kernel: int, seed: int, classes: int = 3, uncertainty: bool = False) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.conv = torch.nn.Conv2d(frames, classes, kernel, padding=kernel // 2)
        self.uncertainty = uncertainty

    def forward(self, x: torch.Tensor):
        logits = self.conv(x.flatten(1, 2))
        if not self.uncertainty:
            return logits
        return SegOutput(logits, {"uncertainty": logits.softmax(1).amax(1, keepdim=True)})


@pytest.mark.parametrize("tta, n", [("none", 1), ("flip", 4), ("dihedral", 8)])
def test_every_transform_is_undone_and_distinct(tta: str, n: int) -> None:
    x = torch.arange(2 * 3 * 25, dtype=torch.float32).reshape(2, 3, 5, 5)
    views = [_apply(x, k, f) for k, f in tta_transforms(tta)]
    assert len(views) == n and len({tuple(v.flatten().tolist()) for v in views}) == n
    for (k, f), v in zip(tta_transforms(tta), views):
        assert torch.equal(_undo(v, k, f), x)
    with pytest.raises(Exception, match="--tta"):
        tta_transforms("rot45")


def test_tta_averages_the_mapped_back_views_and_leaves_a_pointwise_model_unchanged() -> None:
    frames = torch.rand(2, 4, 1, 12, 12)
    pointwise = FramesConv(4, kernel=1, seed=0).eval()
    with torch.no_grad():
        plain, _ = averaged_probabilities([pointwise], frames, "none")
        for tta in ("flip", "dihedral"):  # a 1×1 conv commutes with every flip and turn
            torch.testing.assert_close(averaged_probabilities([pointwise], frames, tta)[0], plain)
        spatial = FramesConv(4, kernel=3, seed=1).eval()
        flipped, _ = averaged_probabilities([spatial], frames, "flip")
        manual = torch.stack([_undo(spatial(_apply(frames, k, f)).softmax(1), k, f) for k, f in tta_transforms("flip")]).mean(0)
        torch.testing.assert_close(flipped, manual)
        assert not torch.allclose(flipped, averaged_probabilities([spatial], frames, "none")[0])
        torch.testing.assert_close(flipped.sum(1), torch.ones(2, 12, 12))


def test_ensemble_averages_softmax_probabilities_and_uncertainty() -> None:
    frames = torch.rand(3, 4, 1, 8, 8)
    a, b = FramesConv(4, 3, seed=2, uncertainty=True).eval(), FramesConv(4, 3, seed=3, uncertainty=True).eval()
    with torch.no_grad():
        probs, unc = averaged_probabilities([a, b], frames, "none")
        pa, pb = a(frames).logits.softmax(1), b(frames).logits.softmax(1)
        torch.testing.assert_close(probs, (pa + pb) / 2)
        torch.testing.assert_close(unc, (pa.amax(1, keepdim=True) + pb.amax(1, keepdim=True)) / 2)
        assert averaged_probabilities([FramesConv(4, 3, seed=2)], frames)[1] is None


def test_predict_cli_ensembles_runs_and_refuses_mixed_inputs(tmp_path: Path, capsys) -> None:
    import shutil

    import numpy as np
    from omegaconf import OmegaConf

    from ssnet.cli import main as cli
    from ssnet.io import load_label_map
    from test_geometry import make_nonsquare_dataset

    data = make_nonsquare_dataset(tmp_path / "data")
    base = ["train", "model=unet", "profile=smoke", f"data.dir={data}", "data.size=32", "train.max_steps=1",
            "train.val_every=1", f"run_root={tmp_path / 'runs'}"]
    assert cli(base + ["seed=0"]) == 0 and cli(base + ["seed=1"]) == 0
    run0, run1 = sorted((tmp_path / "runs").iterdir())
    assert cli(["predict", str(run0), str(run1), "--data", str(data), "--out", str(tmp_path / "ens"),
                "--tta", "flip", "--split", "test"]) == 0
    preds = sorted((tmp_path / "ens").glob("*.nii.gz"))
    assert preds and all(load_label_map(p).shape == load_label_map(run0 / "predictions" / p.name).shape for p in preds)
    assert all(np.isin(load_label_map(p), [0, 1, 2, 3]).all() for p in preds)
    # a run that sees other clips (another crop size) cannot join the ensemble; the error names its config
    odd = tmp_path / "odd"
    shutil.copytree(run1, odd)
    cfg = OmegaConf.load(odd / ".hydra" / "config.yaml")
    cfg.data.size = 48
    OmegaConf.save(cfg, odd / ".hydra" / "config.yaml")
    capsys.readouterr()
    assert cli(["predict", str(run0), str(odd), "--data", str(data), "--out", str(tmp_path / "bad")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "odd/.hydra/config.yaml" in err[0] and "same clips" in err[0]


def test_uncertainty_that_is_not_a_map_is_ignored() -> None:
    """AFB-URR's aux "uncertainty" is one value per frame (B, T−1), not a map: probabilities still average."""
    class PerFrameUncertainty(FramesConv):
        def forward(self, x: torch.Tensor):
            return SegOutput(self.conv(x.flatten(1, 2)), {"uncertainty": torch.rand(x.shape[0], x.shape[1] - 1)})

    frames = torch.rand(2, 4, 1, 8, 8)
    with torch.no_grad():
        probs, unc = averaged_probabilities([PerFrameUncertainty(4, 3, seed=4).eval()], frames, "flip")
    assert unc is None and probs.shape == (2, 3, 8, 8)
