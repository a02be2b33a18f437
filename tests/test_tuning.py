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
