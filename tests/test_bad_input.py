"""Every bad input of the README's reliability table: one clear line naming the file, exit 1, no traceback."""
from __future__ import annotations

import gzip
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ssnet.cli import main as cli
from ssnet.data.contract import scans
from ssnet.io import save_nifti


def _first(data: Path):
    return scans(data)[0]


def wrong_cine_shape(data: Path) -> str:
    s = _first(data)
    save_nifti(s.cine, np.zeros((48, 48), np.int16))
    return f"{s.cine}: cine must have shape (H, W, T)"


def wrong_label_shape(data: Path) -> str:
    s = _first(data)
    save_nifti(s.label, np.zeros((48, 48, 3), np.uint8))
    return f"{s.label}: label must have shape (H, W)"


def inf_in_frames(data: Path) -> str:
    s = _first(data)
    cine = np.zeros((48, 48, 6), np.float32)
    cine[3, 3, 2] = np.inf
    save_nifti(s.cine, cine)
    return f"{s.cine}: cine contains NaN or Inf"


def label_out_of_range(data: Path) -> str:
    s = _first(data)
    save_nifti(s.label, np.full((48, 48), 4, np.uint8))
    return f"{s.label}: label values must be in 0..3, found [4]"


def size_mismatch(data: Path) -> str:
    s = _first(data)
    save_nifti(s.label, np.zeros((40, 48), np.uint8))
    return f"{s.label}: label size (40, 48) does not match cine size (48, 48)"


def corrupt_nifti(data: Path) -> str:
    s = _first(data)
    s.cine.write_bytes(gzip.compress(b"this is not a nifti header" * 4))
    return f"{s.cine}: cannot read NIfTI"


def missing_file(data: Path) -> str:
    s = _first(data)
    s.label.unlink()
    return f"{s.label}: file not found"


def duplicate_ids(data: Path) -> str:
    m = pd.read_csv(data / "manifest.csv")
    m.loc[1, "scan_id"] = m.loc[0, "scan_id"]
    m.to_csv(data / "manifest.csv", index=False)
    return f"{data / 'manifest.csv'}: duplicate scan_id 'P00_sl0'"


def malformed_manifest(data: Path) -> str:
    m = pd.read_csv(data / "manifest.csv").drop(columns=["label"])
    m.to_csv(data / "manifest.csv", index=False)
    return f"{data / 'manifest.csv'}: missing column(s) label"


def empty_manifest(data: Path) -> str:
    pd.read_csv(data / "manifest.csv").iloc[:0].to_csv(data / "manifest.csv", index=False)
    return f"{data / 'manifest.csv'}: empty dataset"


def malformed_split(data: Path) -> str:
    (data / "split.csv").write_text("scan_id,subject\nP00_sl0,P00\n")
    return f"{data / 'split.csv'}: missing column(s) subject_id, split"


def unknown_split_name(data: Path) -> str:
    sp = pd.read_csv(data / "split.csv")
    sp.loc[0, "split"] = "training"
    sp.to_csv(data / "split.csv", index=False)
    return f"{data / 'split.csv'}: unknown split 'training'"


def subject_in_two_splits(data: Path) -> str:
    sp = pd.read_csv(data / "split.csv")
    sp.loc[sp.scan_id == "P00_sl1", "split"] = "val"
    sp.to_csv(data / "split.csv", index=False)
    return f"{data / 'split.csv'}: subject 'P00' appears in more than one split"


CASES: list[Callable[[Path], str]] = [
    wrong_cine_shape, wrong_label_shape, inf_in_frames, label_out_of_range, size_mismatch, corrupt_nifti,
    missing_file, duplicate_ids, malformed_manifest, empty_manifest, malformed_split, unknown_split_name,
    subject_in_two_splits,
]


@pytest.mark.parametrize("breaker", CASES, ids=[c.__name__ for c in CASES])
def test_check_names_the_file_and_problem(tiny_split_dataset: Path, breaker, capsys) -> None:
    expected = breaker(tiny_split_dataset)
    capsys.readouterr()
    assert cli(["check", str(tiny_split_dataset)]) == 1
    out = capsys.readouterr()
    assert expected in out.out, out.out
    assert "Traceback" not in out.out + out.err


@pytest.mark.parametrize(
    "breaker", [wrong_cine_shape, inf_in_frames, size_mismatch, corrupt_nifti, missing_file, subject_in_two_splits,
                empty_manifest, malformed_split],
    ids=lambda c: c.__name__,
)
def test_training_loader_stops_with_one_line(tiny_split_dataset: Path, tmp_path: Path, breaker, capsys) -> None:
    # the broken scan P00_sl0 is in the training split
    expected = breaker(tiny_split_dataset)
    capsys.readouterr()
    code = cli(["train", "model=unet", "profile=smoke", f"data.dir={tiny_split_dataset}", f"run_root={tmp_path / 'r'}"])
    err = capsys.readouterr().err
    assert code == 1
    assert len(err.strip().splitlines()) == 1 and expected in err, err
    assert not (tmp_path / "r").exists() or not any((tmp_path / "r").rglob("per_case.csv"))


def test_empty_split_part(tiny_split_dataset: Path, tmp_path: Path, capsys) -> None:
    sp = pd.read_csv(tiny_split_dataset / "split.csv")
    sp.loc[sp.split == "val", "split"] = "train"
    sp.to_csv(tiny_split_dataset / "split.csv", index=False)
    code = cli(["train", "model=unet", "profile=smoke", f"data.dir={tiny_split_dataset}", f"run_root={tmp_path / 'r'}"])
    err = capsys.readouterr().err
    assert code == 1 and f"{tiny_split_dataset / 'split.csv'}: the 'val' split is empty" in err


def test_missing_dataset(tmp_path: Path, capsys) -> None:
    code = cli(["train", "model=unet", "profile=smoke", f"data.dir={tmp_path / 'nowhere'}"])
    err = capsys.readouterr().err
    assert code == 1 and "manifest.csv: dataset not found" in err


def test_unknown_verb_and_debug_traceback(tiny_split_dataset: Path, capsys) -> None:
    assert cli(["frobnicate"]) == 2
    missing_file(tiny_split_dataset)
    with pytest.raises(Exception, match="file not found"):
        cli(["split", str(tiny_split_dataset), "--force", "--debug"])
