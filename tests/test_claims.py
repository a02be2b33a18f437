"""The paper's claims as paired tests (ssnet/evaluation/claims.py)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ssnet.evaluation.claims import claims


def _per_case(n: int = 30, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    quality = {"ssnet": 0.7, "unet": 0.5, "vivim": 0.3}
    for i in range(n):
        positive = i % 3 == 0
        for method, q in quality.items():
            for s in (0, 1):
                mvo = float(np.clip(q + rng.normal(0, 0.05), 0, 1)) if positive else 1.0
                for class_id, value, n_gt in ((3, mvo, 10 if positive else 0), (2, q - 0.1, 20)):
                    rows.append({"method": method, "seed": s, "scan_id": f"s{i:02d}", "protocol": "paper", "metric": "dice",
                                 "class_id": class_id, "value": value, "n_gt": n_gt})
    return pd.DataFrame(rows)


def test_claims_families_endpoints_and_holm() -> None:
    pc = _per_case()
    table = claims(pc, "ssnet", {"ssnet": "video", "vivim": "video", "unet": "image"}, [("unet", "vivim")])
    assert set(table["endpoint"]) == {"mvo_dice", "mvo_pos_dice", "infarct_dice"}
    ours = table[(table.family == "ours_vs_each") & (table.endpoint == "mvo_pos_dice")].set_index("method_b")
    assert set(ours.index) == {"unet", "vivim"} and (ours["n_pairs"] == 10).all()  # MVO-positive scans only
    assert ours.loc["unet", "mean_diff"] == pytest.approx(0.2, abs=0.05) and (ours["p_holm"] >= ours["p_raw"]).all()
    assert ours.loc["unet", "ci_low"] > 0
    allscans = table[(table.family == "ours_vs_each") & (table.endpoint == "mvo_dice")]
    assert (allscans["n_pairs"] == 30).all() and (allscans["n_nonzero"] == 10).all()  # negatives tie at 1
    best = table[table.family == "best_video_vs_best_image"]
    assert set(zip(best.method_a, best.method_b)) == {("ssnet", "unet")}
    pair = table[table.family == "pairs"]
    assert len(pair) == 3 and (pair["mean_diff"] > 0).all()
