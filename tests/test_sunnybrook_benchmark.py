"""``ssnet reproduce sunnybrook`` end to end at smoke size on a tiny stand-in dataset (1 step per model)."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from ssnet.cli import main as cli
from ssnet.sunnybrook import choose_spacing, fold_split, make_fold
from test_geometry import make_nonsquare_dataset  # tests/ is on sys.path (pytest rootdir import)


def test_fold_split_rotates_the_test_patient() -> None:
    pats = ["C", "A", "B", "D"]
    assert fold_split(pats, 0) == {"A": "test", "B": "val", "C": "train", "D": "train"}
    assert fold_split(pats, 3) == {"A": "val", "B": "train", "C": "train", "D": "test"}
    with pytest.raises(Exception, match="at least 3 patients"):
        fold_split(["A", "B"], 0)


def test_spacing_is_chosen_on_train_and_val_only(tmp_path: Path) -> None:
    data = make_nonsquare_dataset(tmp_path / "data")
    fold = tmp_path / "fold"
    make_fold(data, fold, 0)
    spacing, missed = choose_spacing(fold, 16, candidates=(1.0, 1.5, 3.0))
    assert missed[spacing] == 0 and spacing == min(k for k, v in missed.items() if v == 0)


def test_sunnybrook_benchmark_smoke(tmp_path: Path, capsys) -> None:
    data = make_nonsquare_dataset(tmp_path / "data")
    out = tmp_path / "results"
    args = ["reproduce", "sunnybrook", "--profile", "smoke", "--data", str(data), "--out", str(out),
            "data.size=32", "train.max_steps=1", "train.val_every=1"]
    code = cli(args)
    assert code == 0, capsys.readouterr().err[-2000:]
    table = pd.read_csv(out / "sunnybrook.csv")
    assert list(table["method"]) == ["UNet (frames as channels)", "SSNet"] and (table["test_patient"] == "P0").all()
    assert table["dice_mean"].between(0, 1).all() and (table["fov_mm"] > 0).all() and table["val_dice"].between(0, 1).all()
    assert table["val_dice_patient"].between(0, 1).all()
    per_case = pd.read_csv(out / "sunnybrook_per_case.csv")
    assert set(per_case["class_id"]) == {1} and {"dsc", "hd95"} <= set(per_case["metric"])
    assert (out / "sunnybrook_ed.png").stat().st_size > 1000 and "HD95" in (out / "sunnybrook.md").read_text()
    # a second call reuses the finished runs and does not overwrite the earlier tables: it moves them aside
    first = (out / "sunnybrook.csv").read_bytes()
    assert cli(args) == 0
    assert "not overwritten" in capsys.readouterr().err
    (previous,) = (out / "previous").iterdir()
    assert (previous / "sunnybrook.csv").read_bytes() == first and (previous / "sunnybrook_ed.png").exists()
    assert (out / "sunnybrook.csv").exists() and (out / "sunnybrook_ed.png").exists()


def test_grid_parsing() -> None:
    from ssnet.engine.tuning import parse_grid

    assert parse_grid(None) == [[]]
    assert parse_grid(["train.lr=1e-4,1e-3", "seed=0"]) == [["train.lr=1e-4", "seed=0"], ["train.lr=1e-3", "seed=0"]]
    # commas inside brackets belong to a list value
    assert parse_grid(["data.augment_scale=null,[0.8,1.25]"]) == [["data.augment_scale=null"], ["data.augment_scale=[0.8,1.25]"]]
    with pytest.raises(Exception, match="KEY=V1"):
        parse_grid(["train.lr"])


def test_pooled_patient_dice_weights_slices_by_size() -> None:
    from ssnet.sunnybrook import pooled_dice

    # slice a: |P| = |G| = 100, overlap 90 (DSC 0.9); slice b: |G| = 10, |P| = 0 (DSC 0); slice c: both empty
    rows = pd.DataFrame({"value": [0.9, 0.0, 1.0], "n_gt": [100, 10, 0], "n_pred": [100, 0, 0]})
    assert pooled_dice(rows) == pytest.approx(2 * 90 / (200 + 10))
    assert pooled_dice(rows.iloc[2:]) == 1.0


def test_sunnybrook_refit_trains_the_chosen_setting_on_train_and_val(tmp_path: Path, capsys) -> None:
    import json

    data = make_nonsquare_dataset(tmp_path / "data")
    out = tmp_path / "results"
    code = cli(["reproduce", "sunnybrook", "--profile", "smoke", "--data", str(data), "--out", str(out), "--models", "unet",
                "--refit", "--grid", "train.lr=1e-4,1e-3", "data.size=32", "train.max_steps=1", "train.val_every=1"])
    assert code == 0, capsys.readouterr().err[-2000:]
    row = pd.read_csv(out / "sunnybrook.csv").iloc[0]
    assert "refit" in row["trained_on"] and row["chosen"] in ("train.lr=1e-4", "train.lr=1e-3")
    runs = sorted((out / "runs").iterdir())
    assert len(runs) == 3  # two grid cells + the refit of the chosen one
    refit = out / "runs" / row["run"]
    info = json.loads((refit / "run.json").read_text())
    assert info["best_checkpoint"] == "checkpoints/final.ckpt"
    overrides = (refit / ".hydra" / "overrides.yaml").read_text()
    assert "train.fit_parts=[train,val]" in overrides and row["chosen"] in overrides
    # the chosen cell is the one with the best validation-patient Dice pooled over its slices
    from ssnet.sunnybrook import val_dice

    cells = {r: val_dice(r, out / "folds" / "fold0") for r in runs if r != refit}
    best = max(cells, key=lambda r: cells[r][1])
    assert row["chosen"] in (best / ".hydra" / "overrides.yaml").read_text()
    assert row["val_dice_patient"] == pytest.approx(cells[best][1], abs=1e-4)
    grid = pd.read_csv(out / "sunnybrook_grid.csv")
    assert len(grid) == 2 and grid["chosen"].sum() == 1
    assert grid.loc[grid["chosen"], "run"].item() == best.name and grid["val_dice_patient"].max() == row["val_dice_patient"]


def test_markdown_gives_each_methods_mean_over_folds_only_with_several_folds() -> None:
    from ssnet.sunnybrook import markdown_table

    base = {"method": "UNet", "chosen": "profile", "val_dice_patient": 0.7, "trained_on": "2 patients (train)",
            "n_test_scans": 9, "dice": "x", "hd95_mm": "y", "fov_mm": 131.5, "myo_px_outside_fov": 0, "steps": 10,
            "train_minutes": 0.1}
    rows = pd.DataFrame([{**base, "fold": f, "test_patient": p, "dice_mean": d, "dice_patient": dp, "hd95_mm_mean": h}
                         for f, p, d, dp, h in ((0, "A", 0.5, 0.6, 8.0), (1, "B", 0.7, 0.8, 6.0))])
    text = markdown_table(rows, "quick", 0)
    assert "| UNet | 2 | A, B | 0.600 ± 0.100 | 0.700 ± 0.100 | 7.00 ± 1.00 |" in text
    assert "Mean over folds" not in markdown_table(rows[rows["fold"] == 0], "quick", 0)


def test_sunnybrook_seed_ensemble_with_tta(tmp_path: Path, capsys) -> None:
    """``--seeds 0,1 --tta flip``: the grid runs once, the chosen setting once per seed, and the test patient is
    predicted by the two-seed ensemble with flips; each seed's own Dice is reported beside the ensemble's."""
    from ssnet.engine.predict import predict_run
    from ssnet.evaluation.score import score_predictions
    from ssnet.sunnybrook import pooled_dice

    data = make_nonsquare_dataset(tmp_path / "data")
    out = tmp_path / "results"
    code = cli(["reproduce", "sunnybrook", "--profile", "smoke", "--data", str(data), "--out", str(out), "--models", "unet",
                "--seeds", "0,1", "--tta", "flip", "--grid", "train.lr=1e-4,1e-3", "data.size=32", "train.max_steps=2",
                "train.val_every=1"])
    assert code == 0, capsys.readouterr().err[-2000:]
    row = pd.read_csv(out / "sunnybrook.csv").iloc[0]
    assert row["seeds"] == "0,1" and row["tta"] == "flip" and "ensemble of seeds 0,1" in row["inference"]
    finals = [out / "runs" / name for name in row["run"].split()]
    assert len(finals) == 2 and len(list((out / "runs").iterdir())) == 3  # two grid cells (seed 0) + the chosen one at seed 1
    assert "seed=1" in (finals[1] / ".hydra" / "overrides.yaml").read_text()
    assert len(str(row["dice_patient_per_seed"]).split(" / ")) == 2
    grid = pd.read_csv(out / "sunnybrook_grid.csv")
    assert (grid["tta"] == "flip").all() and (finals[0] / "val_predictions_tta-flip" / ".done").exists()
    assert grid["val_dice_patient_no_tta"].between(0, 1).all() and (finals[0] / "val_predictions" / ".done").exists()
    # the reported Dice is the ensemble's: predicting the two runs again with flips reproduces it
    again = tmp_path / "again"
    predict_run(finals, out / "folds" / "fold0", again, split="test", tta="flip")
    dsc = score_predictions(out / "folds" / "fold0", again, split="test", protocol="strict", classes=(1,))
    assert pooled_dice(dsc[dsc.metric == "dsc"]) == pytest.approx(row["dice_patient"], abs=1e-4)
    assert "ensemble of seeds 0,1 + TTA flip" in (out / "sunnybrook.md").read_text()
    capsys.readouterr()
    assert cli(["reproduce", "sunnybrook", "--profile", "smoke", "--data", str(data), "--out", str(tmp_path / "r2"),
                "--seeds", "1,1"]) == 1
    assert "distinct seeds" in capsys.readouterr().err
