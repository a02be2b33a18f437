"""Choosing settings on the validation split (ssnet/engine/tuning.py, benchmarks/tune_quick.py)."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from conftest import load_benchmark  # tests/ is on sys.path (pytest rootdir import)


def _tune_quick():
    return load_benchmark("tune_quick")


def test_summary_reads_mvo_positive_dice_and_the_floor() -> None:
    rows = []
    for scan, n_gt, n_pred, mvo in [("a", 10, 8, 0.5), ("b", 0, 0, 1.0), ("c", 0, 3, 0.0), ("d", 5, 0, 0.0)]:
        rows.append({"protocol": "paper", "metric": "dice", "class_id": 3, "scan_id": scan, "value": mvo, "n_gt": n_gt, "n_pred": n_pred})
        rows.append({"protocol": "paper", "metric": "dice", "class_id": 2, "scan_id": scan, "value": 0.4, "n_gt": 9, "n_pred": 9})
        rows.append({"protocol": "paper", "metric": "dice", "class_id": 1, "scan_id": scan, "value": 0.8, "n_gt": 9, "n_pred": 9})
        rows.append({"protocol": "strict", "metric": "dsc", "class_id": 3, "scan_id": scan, "value": 0.9, "n_gt": n_gt, "n_pred": n_pred})
    s = _tune_quick().summarise(pd.DataFrame(rows))
    assert s["val_mvo_dice"] == pytest.approx(0.375) and s["val_mvo_pos_dice"] == pytest.approx(0.25)
    assert s["val_scans_mvo_pred"] == 2 and s["val_scans"] == 4 and s["val_no_mvo_floor"] == pytest.approx(0.5)
    assert s["val_infarct_dice"] == pytest.approx(0.4) and s["val_myo_dice"] == pytest.approx(0.8)
    assert s["val_no_infarct_floor"] == 0.0  # every scan has infarct (n_gt 9)


def test_tune_quick_scores_the_validation_split_and_refuses_to_overwrite(tiny_split_dataset: Path, tmp_path: Path) -> None:
    tq = _tune_quick()
    out = tmp_path / "tuning.csv"
    args = ["--profile", "smoke", "--methods", "unet", "--data", str(tiny_split_dataset), "--run-root", str(tmp_path / "runs"),
            "--grid", "train.lr=1e-3,1e-4", "--out", str(out), "data.size=48", "data.frames=4", "data.spacing_mm=null"]
    assert tq.main(args) == 0
    table = pd.read_csv(out)
    assert [s.split()[0] for s in table["setting"]] == ["train.lr=1e-3", "train.lr=1e-4"] and set(table["method"]) == {"unet"}
    n_val = (pd.read_csv(tiny_split_dataset / "split.csv")["split"] == "val").sum()
    assert (table["val_scans"] == n_val).all() and "test_mvo_dice" not in table
    for run in table["run"]:  # validation predictions sit beside the run's test predictions
        assert len(list((tmp_path / "runs" / run / "val_predictions").glob("*.nii.gz"))) == n_val
    with pytest.raises(SystemExit, match="--append"):
        tq.main(args)
    assert tq.main(args + ["--append", "--report-test"]) == 0  # finished runs are reused, rows added
    table = pd.read_csv(out)
    assert len(table) == 4 and table["test_mvo_dice"].notna().sum() == 2


def test_refiner_diagnosis_observes_without_touching_the_gradients() -> None:
    import torch

    from ssnet import registry

    diag = load_benchmark("diagnose_refiner")
    torch.manual_seed(0)
    model = registry.build("ssnet", frames=3, num_classes=4, backbone="resnet18", img_size=32)
    target = torch.zeros(2, 32, 32, dtype=torch.long)
    target[:, 8:24, 8:24], target[:, 12:20, 12:20], target[:, 14:18, 14:18] = 1, 2, 3
    out = model(torch.randn(2, 3, 1, 32, 32))
    loss = model.loss(out, target)
    row = diag.refiner_stats(out, target, loss)
    assert all(p.grad is None for p in model.parameters())  # observing leaves the parameters' gradients alone
    assert row["mvo_px"] == 2 * 16 and {"E0_at_mvo", "E3_at_mvo", "U_at_mvo", "grad_coarse_mvo", "E_abs"} <= set(row)
    assert all(0 <= row[f"p{c}_at_{c}"] <= 1 for c in range(4))
    loss.backward()  # the graph is still there for the real step
    assert model.head.weight.grad is not None


def test_refiner_diagnosis_records_a_training_run(tiny_split_dataset: Path, tmp_path: Path) -> None:
    diag = load_benchmark("diagnose_refiner")
    out = tmp_path / "steps.csv"
    assert diag.main(["--out", str(out), "--every", "1", "model=unet", "profile=smoke", f"data.dir={tiny_split_dataset}",
                      f"run_root={tmp_path / 'runs'}", "train.max_steps=2", "data.size=48", "data.frames=4",
                      "data.spacing_mm=null"]) == 0
    steps = pd.read_csv(out)
    assert list(steps["step"]) == [0, 1] and "E_abs" not in steps  # UNet has no refinement: M columns only


def test_a_run_trained_on_another_split_is_not_reused(tiny_split_dataset: Path, tmp_path: Path, capsys) -> None:
    """After the split changes (e.g. ``ssnet split --force``), a finished run of the old split is retrained."""
    import json
    import shutil

    from ssnet.engine.tuning import train_or_reuse

    data = tmp_path / "copy"
    shutil.copytree(tiny_split_dataset, data)
    overrides = ["model=unet", "profile=smoke", f"data.dir={data}", f"run_root={tmp_path / 'runs'}", "data.size=48",
                 "data.frames=4", "data.spacing_mm=null"]
    first = train_or_reuse(overrides)
    assert train_or_reuse(overrides) == first  # same split: reused
    split = pd.read_csv(data / "split.csv")
    split.loc[split["subject_id"] == "P03", "split"] = "val"
    split.to_csv(data / "split.csv", index=False)
    capsys.readouterr()
    second = train_or_reuse(overrides)
    assert second != first and second.name == f"{first.name}-2"
    assert "trained on another split" in capsys.readouterr().err
    hashes = [json.loads((d / "run.json").read_text())["split_hash"] for d in (first, second)]
    assert hashes[0] != hashes[1]
    assert train_or_reuse(overrides) == second  # the new split's run is found under its -2 name
