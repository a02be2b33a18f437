"""Validation-split evidence for the quick profile's budget (issue 10): one grid, the same for every method.

    python benchmarks/tune_quick.py --grid train.lr=3e-4,1e-3 --grid train.batch_size=4 \
        --methods ssnet,unet --out results/quick/tuning.csv [--data DIR] [hydra overrides ...]

Each combination of ``--grid`` values is trained for every method with the quick profile (runs under
``runs/tune``; finished runs of the same config and split are reused), then predicted and scored on the **validation** split only
(``ssnet.engine.tuning.val_per_case``). One CSV row per (setting, method): the paper-protocol MVO Dice, the
MVO-positive Dice, the scans with MVO predicted, the infarct Dice, the no-MVO floor and the training time.
The test split is predicted by each run (as every run does) but never read here, unless ``--report-test``
asks for it: only for a cohort that was not used to choose anything (the second-phantom check).
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ssnet.engine.runs import read_run  # noqa: E402
from ssnet.engine.tuning import parse_grid, train_or_reuse, val_per_case  # noqa: E402
from ssnet.errors import input_error  # noqa: E402
from ssnet.evaluation.score import read_per_case  # noqa: E402
from ssnet.io import atomic_write_csv  # noqa: E402

MYO, INFARCT, MVO = 1, 2, 3


def summarise(df: pd.DataFrame) -> dict[str, float]:
    """Validation summary (paper protocol): MVO Dice, MVO+ Dice, scans with MVO predicted, infarct Dice, floor."""
    paper = df[(df.protocol == "paper") & (df.metric == "dice")]
    mvo, inf = paper[paper.class_id == MVO], paper[paper.class_id == INFARCT]
    pos = mvo[mvo.n_gt > 0]
    return {"val_mvo_dice": round(float(mvo.value.mean()), 4),
            "val_mvo_pos_dice": round(float(pos.value.mean()), 4) if len(pos) else math.nan,
            "val_scans_mvo_pred": int((mvo.n_pred > 0).sum()), "val_scans": int(mvo.scan_id.nunique()),
            "val_no_mvo_floor": round(float((mvo.n_gt == 0).mean()), 4),
            "val_infarct_dice": round(float(inf.value.mean()), 4),
            "val_no_infarct_floor": round(float((inf.groupby("scan_id").n_gt.max() == 0).mean()), 4),
            "val_myo_dice": round(float(paper[paper.class_id == MYO].value.mean()), 4)}


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--grid", action="append", default=None, metavar="KEY=V1,V2", help="repeatable; every combination is run")
    p.add_argument("--methods", default="ssnet,unet")
    p.add_argument("--profile", default="quick")
    p.add_argument("--data", type=Path, default=REPO / "data" / "phantom-easy")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--run-root", type=Path, default=REPO / "runs" / "tune")
    p.add_argument("--out", type=Path, required=True, help="CSV of validation results (rows appended per run)")
    p.add_argument("--append", action="store_true", help="add rows to an existing --out instead of refusing")
    p.add_argument("--report-test", action="store_true",
                   help="also summarise each run's test per_case.csv (test_* columns): only on a cohort not used for tuning")
    p.add_argument("overrides", nargs="*", help="extra Hydra overrides for every run")
    a = p.parse_args(argv)
    if a.out.exists() and not a.append:
        raise SystemExit(str(input_error(a.out, "already exists; pass --append to add rows")))
    rows = pd.read_csv(a.out).to_dict("records") if a.out.exists() else []
    for combo in parse_grid(a.grid):
        for method in [m.strip() for m in a.methods.split(",") if m.strip()]:
            start = time.perf_counter()
            run_dir = train_or_reuse([f"model={method}", f"profile={a.profile}", f"data.dir={a.data.resolve()}",
                                      f"run_root={a.run_root.resolve()}", f"seed={a.seed}", *a.overrides, *combo])
            info = read_run(run_dir)
            row = {"setting": " ".join(combo + a.overrides) or "profile", "method": method, "seed": a.seed,
                   "data": a.data.name, **summarise(val_per_case(run_dir, a.data)),
                   **({k.replace("val_", "test_", 1): v for k, v in summarise(read_per_case(run_dir / "per_case.csv")).items()}
                      if a.report_test else {}),
                   "steps": info.get("steps"), "train_s_per_step": info.get("train_seconds_per_step"),
                   "train_seconds": info.get("train_seconds"), "wall_seconds": round(time.perf_counter() - start, 1),
                   "git_commit": info.get("git_commit"), "run": run_dir.name}
            rows.append(row)
            print(" ".join(f"{k}={v}" for k, v in row.items()), flush=True)
            atomic_write_csv(pd.DataFrame(rows), a.out, overwrite=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
