"""``score_predictions`` / ``ssnet score`` on tiny NIfTI datasets, and ``ssnet compare``."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ssnet.cli import main as cli_main
from ssnet.data.contract import split_hash, write_manifest
from ssnet.errors import SsnetError
from ssnet.evaluation import compare, score
from ssnet.evaluation.score import PER_CASE_COLUMNS, score_predictions
from ssnet.evaluation.stats import summarize
from ssnet.io import atomic_write_csv, save_nifti


def _gt(kind: str, size: int = 32) -> np.ndarray:
    lab = np.zeros((size, size), np.int16)
    lab[6:26, 6:26] = 1
    lab[8:20, 8:20] = 2
    if kind == "pos":
        lab[10:18, 10:18] = 3
    return lab


def make_dataset(root: Path, size: int = 32, spacing: tuple[float, float] | None = (2.0, 1.0)) -> Path:
    """4 scans, 3 subjects: test = a1 (MVO+), a2 (MVO−), b1 (MVO+); train = c1."""
    data = root / "data"
    (data / "labels").mkdir(parents=True)
    rows, split = [], []
    for sid, subj, kind, part in [("a1", "A", "pos", "test"), ("a2", "A", "neg", "test"), ("b1", "B", "pos", "test"),
                                  ("c1", "C", "pos", "train")]:
        save_nifti(data / "labels" / f"{sid}.nii.gz", _gt(kind, size), spacing)
        rows.append({"scan_id": sid, "subject_id": subj, "cine": f"cine/{sid}.nii.gz", "label": f"labels/{sid}.nii.gz",
                     "spacing_row": "" if spacing is None else spacing[0],
                     "spacing_col": "" if spacing is None else spacing[1]})
        split.append({"scan_id": sid, "subject_id": subj, "split": part})
    write_manifest(data, rows)
    atomic_write_csv(pd.DataFrame(split), data / "split.csv")
    return data


def write_preds(pred_dir: Path, preds: dict[str, np.ndarray], ext: str = ".nii.gz") -> Path:
    pred_dir.mkdir(parents=True, exist_ok=True)
    for sid, arr in preds.items():
        if ext == ".npy":
            np.save(pred_dir / f"{sid}.npy", arr)
        else:
            save_nifti(pred_dir / f"{sid}{ext}", arr)
    return pred_dir


def shifted_preds(size: int = 32) -> dict[str, np.ndarray]:
    a1 = _gt("neg", size)
    a1[12:20, 10:18] = 3  # MVO shifted by 2 rows (the shift2 fixture)
    return {"a1": a1, "a2": _gt("neg", size), "b1": _gt("neg", size)}  # b1: MVO missed


def _value(df: pd.DataFrame, scan: str, protocol: str, metric: str, class_id: int = 3) -> pd.Series:
    r = df[(df.scan_id == scan) & (df.protocol == protocol) & (df.metric == metric) & (df.class_id == class_id)]
    assert len(r) == 1
    return r.iloc[0]


def test_score_values_columns_and_provenance(tmp_path):
    data = make_dataset(tmp_path)
    pred = write_preds(tmp_path / "pred", shifted_preds())
    df = score_predictions(data, pred, method="unet", seed=2, checkpoint="ck.pt", config_hash="cfg1")
    assert list(df.columns) == PER_CASE_COLUMNS
    assert len(df) == 3 * 3 * (5 + 9)
    assert (df.split_hash == split_hash(data)).all() and (df.split == "test").all()
    assert set(df.patient_id) == {"A", "B"} and (df.unit == "mm").all()
    assert (df.method == "unet").all() and (df.seed == 2).all() and (df.config_hash == "cfg1").all()
    a1 = lambda p, m: _value(df, "a1", p, m)  # noqa: E731
    assert a1("paper", "dice").value == 0.75 and a1("paper", "hsd").value == 2.0
    assert a1("strict", "hd95").value == 4.0 and math.isclose(a1("strict", "nsd").value, 0.5)  # spacing (2, 1)
    miss = _value(df, "b1", "strict", "hd95")
    assert miss.empty_status == "miss" and math.isnan(miss.raw_value)
    assert math.isclose(miss.value, math.hypot(32 * 2.0, 32 * 1.0))
    neg = _value(df, "a2", "paper", "dice")
    assert neg.empty_status == "empty" and neg.value == 1.0 and math.isnan(_value(df, "a2", "paper", "hsd").value)
    assert _value(df, "b1", "paper", "precision").value == 1.0  # authors' convention on an empty prediction
    # class 1 identical → perfect
    assert _value(df, "a1", "strict", "dsc", 1).value == 1.0


def test_score_protocol_subset_npy_and_unknown_spacing(tmp_path):
    data = make_dataset(tmp_path, spacing=None)
    pred = write_preds(tmp_path / "pred", shifted_preds(), ext=".npy")
    df = score_predictions(data, pred, protocol="strict", classes=(3,), tau=2.0)
    assert set(df.protocol) == {"strict"} and (df.unit == "px").all() and df.spacing_row.isna().all()
    assert _value(df, "a1", "strict", "hd95").value == 2.0 and (df.tau == 2.0).all()


def test_score_resize_grid(tmp_path):
    data = make_dataset(tmp_path, size=64, spacing=(1.0, 1.0))
    preds = {sid: _gt(k, 64)[::2, ::2].copy() for sid, k in [("a1", "pos"), ("a2", "neg"), ("b1", "pos")]}
    pred = write_preds(tmp_path / "pred", preds)
    df = score_predictions(data, pred, spatial="resize", classes=(3,))
    r = _value(df, "a1", "strict", "dsc")
    assert r.value == 1.0 and r.spacing_row == 2.0 and r.grid_rows == 32
    crop = score_predictions(data, pred, spatial="crop", classes=(3,))
    assert _value(crop, "a1", "strict", "dsc").value < 1.0 and _value(crop, "a1", "strict", "dsc").spacing_row == 1.0


@pytest.mark.parametrize("problem,match", [
    ("missing", "missing prediction for scan 'b1'"),
    ("extra", "c1"),
    ("shape", "shape"),
    ("values", "outside 0..3"),
    ("float", "integer"),
    ("duplicate", "two prediction files"),
])  # fmt: skip
def test_score_errors_name_the_scan(tmp_path, problem, match):
    data = make_dataset(tmp_path)
    preds = shifted_preds()
    if problem == "missing":
        del preds["b1"]
    elif problem == "extra":
        preds["c1"] = _gt("pos")
    elif problem == "shape":
        preds["a2"] = np.zeros((32, 30), np.int16)
    elif problem == "values":
        preds["a2"] = preds["a2"].copy()
        preds["a2"][0, 0] = 4
    elif problem == "float":
        preds["a2"] = preds["a2"].astype(np.float32) + 0.5
    pred = write_preds(tmp_path / "pred", preds)
    if problem == "duplicate":
        np.save(pred / "a1.npy", preds["a1"])
    with pytest.raises(SsnetError, match=match):
        score_predictions(data, pred)


def test_score_cli_and_overwrite(tmp_path, capsys):
    data = make_dataset(tmp_path)
    pred = write_preds(tmp_path / "pred", shifted_preds())
    out = tmp_path / "per_case.csv"
    args = ["score", "--data", str(data), "--pred", str(pred), "--method", "m", "--out", str(out)]
    assert cli_main(args) == 0
    df = score.read_per_case(out)
    assert len(df) == 3 * 3 * 14 and df.split_hash.iloc[0] == split_hash(data)
    assert cli_main(args) == 1  # refuses to overwrite
    assert "already exists" in capsys.readouterr().err
    assert cli_main(args + ["--force"]) == 0


# --------------------------------------------------------------------------- compare


def _per_case_file(tmp_path: Path, name: str, method: str, preds: dict[str, np.ndarray], data: Path, seed: int = 0) -> Path:
    pred = write_preds(tmp_path / f"pred_{name}", preds)
    df = score_predictions(data, pred, method=method, seed=seed, classes=(3,))
    path = tmp_path / f"{name}.csv"
    atomic_write_csv(df, path)
    return path


def test_compare_per_case_json_and_text(tmp_path, capsys):
    data = make_dataset(tmp_path)
    perfect = {sid: _gt(k) for sid, k in [("a1", "pos"), ("a2", "neg"), ("b1", "pos")]}
    a = _per_case_file(tmp_path, "a", "good", perfect, data)
    b = _per_case_file(tmp_path, "b", "bad", shifted_preds(), data)
    assert cli_main(["compare", str(a), str(b), "--format", "json"]) == 0
    out = capsys.readouterr().out.strip()
    res = json.loads(out)  # exactly one JSON object
    assert res["paired"] is True and res["n_pairs"] == 3 and res["mean_a"] == 1.0
    assert math.isclose(res["mean_b"], (0.75 + 1.0 + 0.0) / 3)
    assert (res["wins"], res["ties"], res["losses"]) == (2, 1, 0) and math.isclose(res["p_raw"], 0.5)
    assert "small_n" in res["flags"]
    hsd = compare.compare_files(a, b, metric="hsd", n_resamples=100)
    assert hsd["n_pairs"] == 1 and hsd["wins"] == 1  # HSD paired on scans where both have a value
    assert cli_main(["compare", str(a), str(b), "--metric", "hd95", "--protocol", "strict"]) == 0
    text = capsys.readouterr().out
    assert "Wilcoxon p" in text and "hd95 ↓" in text


def test_compare_different_splits_and_protocols(tmp_path, capsys):
    data = make_dataset(tmp_path)
    a = _per_case_file(tmp_path, "a", "good", shifted_preds(), data)
    df = pd.read_csv(b := tmp_path / "a.csv")
    other = tmp_path / "other.csv"
    df.assign(split_hash="0123456789ab", method="x").to_csv(other, index=False)
    with pytest.raises(SsnetError, match="different splits"):
        compare.compare_files(a, other)
    res = compare.compare_files(a, other, allow_different_splits=True, n_resamples=0)
    assert res["warnings"][0].startswith("WARNING") and res["paired"]
    assert cli_main(["compare", str(a), str(other), "--allow-different-splits"]) == 0
    assert "WARNING" in capsys.readouterr().err
    paper_only = tmp_path / "paper_only.csv"
    df[df.protocol == "paper"].to_csv(paper_only, index=False)
    with pytest.raises(SsnetError, match="no strict-protocol rows"):
        compare.compare_files(b, paper_only, protocol="strict", metric="dsc")


def test_compare_summaries_without_paired_stats(tmp_path):
    data = make_dataset(tmp_path)
    perfect = {sid: _gt(k) for sid, k in [("a1", "pos"), ("a2", "neg"), ("b1", "pos")]}
    a = _per_case_file(tmp_path, "a", "good", perfect, data)
    b = _per_case_file(tmp_path, "b", "bad", shifted_preds(), data)
    sa, sb = tmp_path / "sa.csv", tmp_path / "sb.csv"
    atomic_write_csv(summarize(score.read_per_case(a)), sa)
    atomic_write_csv(summarize(score.read_per_case(b)), sb)
    res = compare.compare_files(sa, sb)
    assert res["paired"] is False and "no paired statistics" in res["note"]
    assert math.isclose(res["mean_diff"], 1.0 - (0.75 + 1.0) / 3)
    assert "no paired statistics" in compare.render(res, "text")
    mixed = compare.compare_files(a, sb)
    assert mixed["paired"] is False and mixed["mean_a"] == 1.0


def test_compare_multi_method_file_needs_a_choice(tmp_path):
    data = make_dataset(tmp_path)
    perfect = {sid: _gt(k) for sid, k in [("a1", "pos"), ("a2", "neg"), ("b1", "pos")]}
    a = _per_case_file(tmp_path, "a", "good", perfect, data)
    b = _per_case_file(tmp_path, "b", "bad", shifted_preds(), data)
    both = tmp_path / "both.csv"
    pd.concat([pd.read_csv(a), pd.read_csv(b)]).to_csv(both, index=False)
    with pytest.raises(SsnetError, match="several methods"):
        compare.compare_files(both, b)
    res = compare.compare_files(both, b, method_a="good", n_resamples=0)
    assert res["a"]["method"] == "good" and res["mean_a"] == 1.0


def test_score_cli_summary(tmp_path):
    data = make_dataset(tmp_path)
    pred = write_preds(tmp_path / "pred", shifted_preds())
    out, summ = tmp_path / "per_case.csv", tmp_path / "summary.csv"
    assert cli_main(["score", "--data", str(data), "--pred", str(pred), "--out", str(out), "--summary", str(summ),
                     "--protocol", "paper", "--classes", "3"]) == 0
    s = pd.read_csv(summ)
    hsd = s[(s.metric == "hsd") & (s.class_id == 3)].iloc[0]
    assert hsd["mean"] == 2.0 and hsd["n_used"] == 1 and (s.split_hash.astype(str) == split_hash(data)).all()
    dice = s[(s.metric == "dice") & (s.class_id == 3)].iloc[0]
    assert math.isclose(dice["mean"], (0.75 + 1 + 0) / 3) and dice["n_empty"] == 1 and dice["n_miss"] == 1
