"""Golden-file tests of the table writer (Table 1/2/3 × CSV, Markdown, LaTeX × paper/strict).

Regenerate the golden files after an intended change with ``SSNET_UPDATE_GOLDEN=1 pytest tests/test_tables.py``
and review the diff.
"""
from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ssnet.cli import main as cli_main
from ssnet.errors import SsnetError
from ssnet.evaluation import tables
from ssnet.evaluation.metrics import evaluate_scan
from ssnet.evaluation.score import PER_CASE_COLUMNS
from ssnet.evaluation.tables import CHECK, CROSS, TableRow, format_p, no_mvo_scores, write_table

GOLDEN = Path(__file__).parent / "golden"
PAPER_DIR = Path(tables.__file__).parent / "paper_tables"
SIZE = 24
# 8 scans of 4 patients: 5 MVO-positive, 3 negative
GT_MVO = [(4, 6, 9, 12), None, (8, 4, 14, 10), (10, 10, 16, 16), None, (3, 3, 9, 8), None, (12, 8, 18, 15)]


def _gt(i: int) -> np.ndarray:
    lab = np.zeros((SIZE, SIZE), np.int64)
    lab[2:22, 2:22] = 1
    lab[18:22, 2:22] = 2  # infarct strip (class 2)
    if GT_MVO[i] is not None:
        r0, c0, r1, c1 = GT_MVO[i]
        lab[r0:r1, c0:c1] = 3
    return lab


def _pred(i: int, quality: int, seed: int) -> np.ndarray:
    """Deterministic prediction: MVO shifted by (quality + seed) % 4 rows; misses/false positives by rule."""
    lab = np.zeros((SIZE, SIZE), np.int64)
    lab[2:22, 2:22] = 1
    lab[18 + (quality + i) % 2 : 22, 2 + seed : 22] = 2
    shift = (quality + seed + i) % 4
    if GT_MVO[i] is not None and (i + quality + seed) % 5 != 0:
        r0, c0, r1, c1 = GT_MVO[i]
        lab[r0 + shift : min(r1 + shift, 22), c0:c1] = 3
    elif GT_MVO[i] is None and (i + quality) % 3 == 0 and quality < 3:
        lab[15:18, 15:18] = 3  # false positive
    return lab


def make_per_case(method: str, quality: int, seeds: int) -> pd.DataFrame:
    rows = []
    for seed in range(seeds):
        for i in range(len(GT_MVO)):
            for r in evaluate_scan(_pred(i, quality, seed), _gt(i), classes=(2, 3), spacing=(1.25, 1.25), tau=1.0):
                rows.append({**r, "method": method, "seed": seed, "split": "test", "scan_id": f"scan{i:02d}",
                             "patient_id": f"P{i // 2}", "unit": "mm", "spacing_row": 1.25, "spacing_col": 1.25,
                             "checkpoint": "", "config_hash": "", "split_hash": "0a1b2c3d4e5f", "tau": 1.0,
                             "grid_rows": SIZE, "grid_cols": SIZE})
    return pd.DataFrame(rows)[PER_CASE_COLUMNS]


@pytest.fixture(scope="module")
def per_case_t1() -> pd.DataFrame:
    return pd.concat([make_per_case("unet", 0, 1), make_per_case("vivim", 1, 2), make_per_case("ssnet", 3, 3)],
                     ignore_index=True)


def _check_golden(written: dict[str, Path]) -> None:
    update = os.environ.get("SSNET_UPDATE_GOLDEN") == "1"
    for path in written.values():
        golden = GOLDEN / path.name
        text = path.read_text(encoding="utf-8")
        if update:
            GOLDEN.mkdir(exist_ok=True)
            golden.write_text(text, encoding="utf-8")
        assert golden.is_file(), f"missing golden file {golden} (run with SSNET_UPDATE_GOLDEN=1)"
        assert text == golden.read_text(encoding="utf-8"), f"{path.name} differs from {golden}"


def test_table1_golden(tmp_path, per_case_t1):
    rows = [TableRow("unet", "UNet", {"Input": "Image"}), TableRow("vivim", "Vivim", {"Input": "Video"}),
            TableRow("ssnet", "SSNet (ours)", {"Input": "Video", "Params (M)": "279.1", "GFLOPs": "95.2", "s/step": "0.186",
                                                "Peak mem (MB)": "18637", "ms/clip": "41"})]
    written = write_table("table1", per_case_t1, rows, "ssnet", tmp_path, "table1", with_paper=True, paper_dir=PAPER_DIR)
    assert set(written) == {"csv", "md", "tex", "strict_csv", "strict_md", "strict_tex"}
    _check_golden(written)
    md = written["md"].read_text()
    assert "paper protocol" in md and "no-MVO" in md and "UNet (paper†)" in md and "private cohort" in md
    assert "strict protocol" in written["strict_md"].read_text()
    csv = pd.read_csv(written["csv"], dtype=str, keep_default_na=False)
    assert csv["Protocol"].eq("paper").all() and len(csv) == 3 + 1 + 9
    no_mvo = csv[csv["Method"] == "no-MVO"].iloc[0]
    assert no_mvo["Dice ↑"] == "0.3750" and no_mvo["Precision ↑"] == "1.0000" and no_mvo["n_hsd"] == "0"
    # several seeds → mean ± SD; one seed → plain
    assert "±" in csv.loc[csv.Method == "SSNet (ours)", "Dice ↑"].iloc[0]
    assert "±" not in csv.loc[csv.Method == "UNet", "Dice ↑"].iloc[0]


def test_table2_golden(tmp_path):
    flags = [(1, 0, 0, 0), (1, 1, 0, 0), (1, 1, 1, 1)]
    per_case = pd.concat([make_per_case(f"abl{i}", q, 1) for i, q in enumerate((0, 1, 3))], ignore_index=True)
    rows = [TableRow(f"abl{i}", f"A{i}", {n: CHECK if f else CROSS for n, f in zip(tables.ABLATION_COLS, fl)})
            for i, fl in enumerate(flags)]
    written = write_table("table2", per_case, rows, "abl2", tmp_path, "table2", with_paper=True, paper_dir=PAPER_DIR)
    _check_golden(written)
    tex = written["tex"].read_text()
    assert r"\checkmark{}" in tex and r"$\times$" in tex and r"\textbf{" in tex


def test_table3_golden(tmp_path):
    per_case = pd.concat([make_per_case(f"t{f}", q, 2) for f, q in ((5, 1), (10, 3), (15, 2))], ignore_index=True)
    rows = [TableRow(f"t{f}", "SSNet", {"Frames": str(f)}) for f in (5, 10, 15)]
    written = write_table("table3", per_case, rows, "t10", tmp_path, "table3")
    _check_golden(written)


def test_best_in_bold_direction(tmp_path, per_case_t1):
    table = tables.build_table("table1", per_case_t1, [TableRow(m, m) for m in ("unet", "vivim", "ssnet")], None, "paper")
    col = {h: j for j, h in enumerate(table.header)}
    dice = [float(r[col["Dice ↑"]].text.split()[0]) for r in table.rows[:3]]
    hsd = [float(r[col["HSD ↓"]].text.split()[0]) for r in table.rows[:3]]
    assert [r[col["Dice ↑"]].bold for r in table.rows[:3]] == [d == max(dice) for d in dice]
    assert [r[col["HSD ↓"]].bold for r in table.rows[:3]] == [h == min(hsd) for h in hsd]
    assert not any(c.bold for c in table.rows[3])  # the no-MVO reference row is never bold
    assert not any(h.startswith("p ") for h in table.header)  # no p columns without ours


def test_no_mvo_scores(per_case_t1):
    ref = no_mvo_scores(per_case_t1)
    assert ref["dice"] == ref["jaccard"] == ref["recall"] == 3 / 8 and ref["precision"] == 1.0
    assert ref["hsd"] == 1.0 and ref["n_hsd"] == 0
    diag = math.hypot(SIZE * 1.25, SIZE * 1.25)
    assert math.isclose(ref["hd95"], 5 / 8 * diag) and ref["det_sensitivity"] == 0 and ref["det_specificity"] == 1


def test_format_p():
    assert format_p(0.0004) == "< 0.001" and format_p(0.006) == "0.00600" and format_p(0.0625) == "0.0625"
    assert format_p(1.0) == "1.00" and format_p(0.12345) == "0.123" and format_p(float("nan")) == "n/a"


def test_paper_tables_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("SSNET_PAPER_TABLES", str(tmp_path))
    assert tables.paper_tables_dir() == tmp_path
    with pytest.raises(SsnetError, match="paper table not found"):
        tables.read_paper_table("table1")
    monkeypatch.delenv("SSNET_PAPER_TABLES")
    for kind in tables.KINDS:  # the shipped copy equals the shared reference when both exist
        shipped = tables.read_paper_table(kind, PAPER_DIR)
        assert shipped.equals(tables.read_paper_table(kind))


def test_tables_errors(tmp_path, per_case_t1):
    with pytest.raises(SsnetError, match="no per-case rows"):
        write_table("table1", per_case_t1, [TableRow("nope", "Nope")], None, tmp_path, "t")
    with pytest.raises(SsnetError, match="unknown table kind"):
        write_table("table9", per_case_t1, [TableRow("unet", "UNet")], None, tmp_path, "t")
    bad = per_case_t1.copy()
    bad.loc[bad.method == "unet", "split_hash"] = "ffffffffffff"
    with pytest.raises(SsnetError, match="different splits"):
        write_table("table1", bad, [TableRow("unet", "UNet"), TableRow("ssnet", "S")], None, tmp_path, "t")


def test_tables_cli(tmp_path, per_case_t1, capsys):
    files = []
    for m in ("unet", "ssnet"):
        p = tmp_path / f"{m}.csv"
        per_case_t1[per_case_t1.method == m].to_csv(p, index=False)
        files.append(str(p))
    out = tmp_path / "out"
    assert cli_main(["tables", "--kind", "table1", "--per-case", *files, "--out", str(out), "--with-paper"]) == 0
    md = (out / "table1.md").read_text()
    assert "p Dice (Holm)" in md and "best baseline" in md and (out / "table1_strict.tex").is_file()
    # twice the same file → overlap error
    assert cli_main(["tables", "--kind", "table1", "--per-case", files[0], files[0], "--out", str(out)]) == 1
    assert "overlap" in capsys.readouterr().err


def test_snake_case_column_keys_are_display_names(tmp_path, per_case_t1):
    rows = [TableRow("unet", "UNet", {"input": "Image", "params_m": "31.0", "ms_per_clip": "5.0"}),
            TableRow("ssnet", "SSNet", {"input": "Video", "params_m": "279.1", "ms_per_clip": "41.0"})]
    table = tables.build_table("table1", per_case_t1, rows, "ssnet", "paper", with_paper=True, paper_dir=PAPER_DIR)
    assert table.header[:2] == ["Method", "Input"] and table.header[-2:] == ["Params (M)", "ms/clip"]
    assert table.rows[1][1].text == "Video" and table.rows[1][-2].text == "279.1"
    assert table.rows[-1][1].text == "Video"  # the paper rows fill the same Input column
