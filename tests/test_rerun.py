"""A table written again over an earlier one: the earlier files are kept, the per-case values compared."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ssnet.evaluation import rerun


def _per_case(values: list[float], method: str = "unet", seed: int = 0) -> pd.DataFrame:
    return pd.DataFrame({"method": method, "seed": seed, "protocol": "paper", "scan_id": [f"s{i}" for i in range(len(values))],
                         "class_id": 3, "metric": "dice", "value": values})


def test_set_aside_moves_only_the_tables_files(tmp_path: Path) -> None:
    for name in ["table1.csv", "table1.md", "table1_per_case.csv.gz", "table1_claims.csv", "table2.csv", "table10.csv"]:
        (tmp_path / name).write_text(name)
    first = rerun.set_aside(tmp_path, "table1")
    assert sorted(p.name for p in first.iterdir()) == ["table1.csv", "table1.md", "table1_claims.csv", "table1_per_case.csv.gz"]
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_file()) == ["table10.csv", "table2.csv"]
    assert rerun.set_aside(tmp_path, "table1") is None  # nothing left to keep
    (tmp_path / "table1.csv").write_text("again")
    second = rerun.set_aside(tmp_path, "table1")  # the same second: a distinct folder, nothing replaced
    assert second != first and (first / "table1.csv").read_text() == "table1.csv"


def test_agreement_counts_differences_per_run() -> None:
    old = pd.concat([_per_case([0.5, np.nan, 1.0]), _per_case([0.2, 0.3, 0.4], method="ssnet"),
                     _per_case([0.1, 0.1, 0.1], seed=1)])
    new = pd.concat([_per_case([0.5, np.nan, 1.0]), _per_case([0.2, 0.35, 0.4], method="ssnet"),
                     _per_case([0.9, 0.9], seed=2)])  # seed 1 not rerun, seed 2 new
    table = rerun.agreement(new, old).set_index(["method", "seed"])
    assert list(table.index) == [("unet", 0), ("ssnet", 0)]  # only runs present in both
    assert table.loc[("unet", 0), "n_differ"] == 0 and table.loc[("unet", 0), "n"] == 3  # NaN = NaN agrees
    assert table.loc[("ssnet", 0), "n_differ"] == 1 and np.isclose(table.loc[("ssnet", 0), "max_abs_diff"], 0.05)
    lines = rerun.describe(rerun.agreement(new, old))
    assert lines[0] == "  unet seed 0: identical (3 per-case values)"
    assert lines[1].startswith("  ssnet seed 0: 1 of 3 per-case values differ (max |difference| 0.05")


def test_agreement_counts_a_missing_scan_as_a_difference() -> None:
    table = rerun.agreement(_per_case([0.5, 0.6]), _per_case([0.5, 0.6, 0.7]))
    assert table.loc[0, "n"] == 3 and table.loc[0, "n_differ"] == 1
