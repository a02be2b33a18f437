"""Training engine end to end at the smoke profile: run folders, predictions, resume, determinism."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ssnet.cli import main as cli
from ssnet.engine.config import compose

SMOKE = ["model=unet", "profile=smoke", "data.frames=3", "data.size=32", "train.batch_size=4"]


def _train(data: Path, runs: Path, *extra: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """``ssnet train`` in a subprocess (needed where the process is killed)."""
    cmd = [sys.executable, "-m", "ssnet.cli", "train", *SMOKE, f"data.dir={data}", f"run_root={runs}", *extra]
    return subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **(env or {})}, timeout=300)


def _train_here(capsys, data: Path, runs: Path, *extra: str) -> tuple[int, str, str]:
    """``ssnet train`` in this process: (exit code, stdout, stderr)."""
    capsys.readouterr()
    code = cli(["train", *SMOKE, f"data.dir={data}", f"run_root={runs}", *extra])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_compose_applies_profile_and_hints() -> None:
    cfg = compose(["model=unet", "profile=quick"])
    assert cfg.data.size == 64 and cfg.train.max_steps == 300 and cfg.profile.model_hints.backbone == "resnet18"
    assert cfg.train.batch_size == 4 and cfg.train.lr == pytest.approx(1e-3)  # chosen on val (results/quick/tuning.csv)
    assert cfg.data.phantom_difficulty == "easy" and cfg.data.dir == "data/phantom-easy"
    assert cfg.model.key == "unet" and cfg.train.betas == [0.5, 0.99]
    paper = compose(["model=unet", "profile=paper"])
    assert paper.data.size == 224 and paper.data.frames == 10 and paper.train.max_steps == 3200
    assert paper.train.batch_size == 8 and paper.train.lr == pytest.approx(1e-4)


def test_train_writes_run_folder_and_reruns_into_a_new_one(tiny_split_dataset: Path, tmp_path: Path, capsys) -> None:
    runs = tmp_path / "runs"
    code, out, err = _train_here(capsys, tiny_split_dataset, runs)
    assert code == 0, err[-2000:]
    run_dir = Path(out.strip().splitlines()[-1])
    assert run_dir.parent == runs
    info = json.loads((run_dir / "run.json").read_text())
    assert info["status"] == "done" and info["steps"] == 2 and len(info["split_hash"]) == 12
    assert (run_dir / ".hydra" / "config.yaml").exists() and (run_dir / ".hydra" / "overrides.yaml").exists()
    assert (run_dir / "checkpoints" / "best.ckpt").exists()
    preds = sorted(p.name for p in (run_dir / "predictions").iterdir())
    assert preds == ["P05_sl0.nii.gz", "P05_sl1.nii.gz"]
    # scoring reads the files: ssnet score on the same predictions gives the same per-case table
    rescored = tmp_path / "rescored.csv"
    assert cli(["score", "--data", str(tiny_split_dataset), "--pred", str(run_dir / "predictions"), "--method", "unet",
                "--seed", "0", "--out", str(rescored)]) == 0
    import pandas as pd

    ours, again = pd.read_csv(run_dir / "per_case.csv"), pd.read_csv(rescored)
    key = ["protocol", "scan_id", "class_id", "metric"]
    merged = ours.merge(again, on=key, suffixes=("", "_re"))
    assert len(merged) == len(ours) > 0
    assert ((merged.value - merged.value_re).abs().fillna(0) < 1e-12).all()
    # same command again: a finished run is never reused or overwritten
    code, out, err = _train_here(capsys, tiny_split_dataset, runs)
    assert code == 0, err[-2000:]
    run_dir2 = Path(out.strip().splitlines()[-1])
    assert run_dir2 == runs / f"{run_dir.name}-2"
    # determinism on CPU: byte-identical per_case.csv
    assert (run_dir / "per_case.csv").read_bytes() == (run_dir2 / "per_case.csv").read_bytes()
    # ssnet compare works on files made by ssnet train: identical runs tie on every scan
    capsys.readouterr()
    assert cli(["compare", str(run_dir / "per_case.csv"), str(run_dir2 / "per_case.csv"), "--format", "json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["paired"] and result["ties"] == result["n_pairs"] == 2 and result["p_raw"] == 1.0


def test_killed_run_resumes_to_the_same_result(tiny_split_dataset: Path, tmp_path: Path, capsys) -> None:
    extra = ["train.max_steps=4", "train.val_every=2", "data.augment=true"]
    code, out, err = _train_here(capsys, tiny_split_dataset, tmp_path / "ref", *extra)
    assert code == 0, err[-2000:]
    ref_dir = Path(out.strip().splitlines()[-1])
    killed = _train(tiny_split_dataset, tmp_path / "runs", *extra, env={"SSNET_FAULT_KILL_AT_STEP": "3"})
    assert killed.returncode == -9
    run_dir = next((tmp_path / "runs").iterdir())
    assert (run_dir / "checkpoints" / "last.ckpt").exists() and not (run_dir / "per_case.csv").exists()
    resumed = _train(tiny_split_dataset, tmp_path / "runs", *extra)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resuming" in resumed.stderr
    assert Path(resumed.stdout.strip().splitlines()[-1]) == run_dir
    assert json.loads((run_dir / "run.json").read_text())["steps"] == 4
    assert (run_dir / "per_case.csv").read_bytes() == (ref_dir / "per_case.csv").read_bytes()


def test_nan_loss_stops_with_step_and_config(tiny_split_dataset: Path, tmp_path: Path, capsys) -> None:
    code, _, err = _train_here(capsys, tiny_split_dataset, tmp_path / "runs", "data.norm_std=0", "train.max_steps=3")
    assert code == 1
    last = err.strip().splitlines()[-1]
    assert "loss became nan at step 0" in last and "config.yaml" in last and "Traceback" not in err


@pytest.mark.parametrize(
    ("override", "message"),
    [("model=nope", "bad config override"), ("data.nokey=1", "bad config override"),
     ("+model.options.bogus=1", "unknown option(s) bogus"), ("model.options.bogus=1", "bad config override")],
)
def test_bad_config_is_one_clear_line(tiny_split_dataset: Path, tmp_path: Path, override: str, message: str, capsys) -> None:
    code, _, err = _train_here(capsys, tiny_split_dataset, tmp_path / "runs", override)
    assert code == 1
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert message in err


def test_time_shift_adds_neighbouring_clips_with_the_same_label(tiny_split_dataset: Path) -> None:
    import numpy as np
    import torch

    from ssnet.data.contract import load_scan, scans_in_split
    from ssnet.data.dataset import CineDataset, ClipConfig, preprocess

    cfg = ClipConfig(frames=3, size=32)
    plain = CineDataset(tiny_split_dataset, "train", cfg)
    shifted = CineDataset(tiny_split_dataset, "train", cfg, time_shifts=(-1, 0, 1))
    assert len(shifted) == 3 * len(plain) and shifted.frames.shape[1:] == plain.frames.shape[1:]
    assert (shifted.labels[1::3] == plain.labels).all() and (shifted.labels[0::3] == plain.labels).all()
    assert torch.equal(shifted.frames[1::3], plain.frames)  # shift 0 is the plain clip
    assert [s.scan_id for s in shifted.scans[:3]] == [plain.scans[0].scan_id] * 3
    both = CineDataset(tiny_split_dataset, ("train", "val"), cfg)  # train.fit_parts=[train,val]
    assert [s.scan_id for s in both.scans] == [s.scan_id for s in plain.scans] + ["P04_sl0", "P04_sl1"]
    scan = scans_in_split(tiny_split_dataset, "train")[0]
    cine, label = load_scan(scan)  # 6 frames; 3 selected: 0, 2, 4 → shift -1: 5, 1, 3 (cyclic)
    by_hand, _ = preprocess(np.roll(cine, 1, axis=0)[[0, 2, 4]], label, cfg, scan)
    assert torch.equal(shifted.frames[0], by_hand) and not torch.equal(shifted.frames[0], plain.frames[0])


def test_refit_on_train_and_val_keeps_the_final_weights(tiny_split_dataset: Path, tmp_path: Path, capsys) -> None:
    import torch

    extra = ["train.fit_parts=[train,val]", "train.checkpoint=last", "data.augment_time_shift=1"]
    code, out, err = _train_here(capsys, tiny_split_dataset, tmp_path / "runs", *extra)
    assert code == 0, err[-2000:]
    run_dir = Path(out.strip().splitlines()[-1])
    info = json.loads((run_dir / "run.json").read_text())
    assert info["best_checkpoint"] == "checkpoints/final.ckpt"
    final = torch.load(run_dir / info["best_checkpoint"], map_location="cpu", weights_only=False)
    assert final["global_step"] == info["steps"] == 2
    assert sorted(p.name for p in (run_dir / "predictions").iterdir()) == ["P05_sl0.nii.gz", "P05_sl1.nii.gz"]
    # the validation loss cannot choose weights trained on the validation split
    code, _, err = _train_here(capsys, tiny_split_dataset, tmp_path / "runs", "train.fit_parts=[train,val]")
    assert code == 1 and "train.checkpoint=last" in err and len(err.strip().splitlines()) == 1
    code, _, err = _train_here(capsys, tiny_split_dataset, tmp_path / "runs", "train.fit_parts=[test]", "train.checkpoint=last")
    assert code == 1 and "train.fit_parts" in err


def test_train_loss_dice_ce_adds_cross_entropy_only_for_models_without_their_own_loss() -> None:
    """``train.loss=dice_ce`` = Dice + pixel-mean cross-entropy for the engine's default loss; refused where a model
    defines its own loss (SSNet's Dice + L_u), and an unknown name is one clear error."""
    import torch
    import torch.nn.functional as F

    from ssnet.engine.module import SegmentationModule
    from ssnet.errors import SsnetError
    from ssnet.models.base import SegOutput
    from ssnet.models.losses import multiclass_soft_dice_loss

    logits = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    target = torch.randint(0, 4, (2, 8, 8), generator=torch.Generator().manual_seed(1))
    out = SegOutput(logits=logits)
    dice = multiclass_soft_dice_loss(logits, target)
    default = SegmentationModule(torch.nn.Identity(), compose(["model=unet", "profile=smoke"]))
    assert torch.equal(default.compute_loss(out, target), dice)
    both = SegmentationModule(torch.nn.Identity(), compose(["model=unet", "profile=smoke", "train.loss=dice_ce"]))
    assert torch.allclose(both.compute_loss(out, target), dice + F.cross_entropy(logits, target))

    class OwnLoss(torch.nn.Module):
        def loss(self, out: SegOutput, target: torch.Tensor) -> torch.Tensor:
            return out.logits.sum()

    with pytest.raises(SsnetError, match="defines its own loss"):
        SegmentationModule(OwnLoss(), compose(["model=ssnet", "profile=smoke", "train.loss=dice_ce"]))
    with pytest.raises(SsnetError, match="train.loss='focal': choose one of default, dice_ce"):
        SegmentationModule(torch.nn.Identity(), compose(["model=unet", "profile=smoke", "train.loss=focal"]))
