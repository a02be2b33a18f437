"""Statistics protocol: Wilcoxon cases, Holm vector, degenerate CI, win/tie/loss, summary, ranking."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from ssnet.errors import SsnetError
from ssnet.evaluation.stats import (
    SUMMARY_COLUMNS,
    bootstrap_ci,
    holm,
    paired_stats,
    ranking_stability,
    rounded_differences,
    summarize,
    win_tie_loss,
    wilcoxon_p,
)


def test_wilcoxon_reference_vectors():
    assert math.isclose(wilcoxon_p(np.full(5, 0.1)), 0.0625)
    assert math.isclose(wilcoxon_p([0.1, 0.2, 0.3, 0.4, 0.5]), 0.0625)
    assert math.isclose(wilcoxon_p(np.arange(1, 7) / 10), 0.03125)
    assert wilcoxon_p(np.zeros(7)) == 1.0
    assert math.isnan(wilcoxon_p([]))


def test_wilcoxon_zeros_dropped_and_rounding():
    # float noise becomes exact zeros after rounding to 10 decimals, and zeros are dropped ('wilcox')
    a = np.array([0.3, 0.7, 0.5, 0.9, 0.2, 0.6, 0.4])
    b = a - np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.0, 0.0]) + 1e-13
    d = rounded_differences(a, b)
    assert np.count_nonzero(d) == 5
    assert math.isclose(wilcoxon_p(d), 0.0625)


def test_holm_reference_vector():
    np.testing.assert_allclose(holm([0.01, 0.04, 0.03, 0.005]), [0.03, 0.06, 0.06, 0.02])
    out = holm([0.01, np.nan, 0.02])
    assert math.isnan(out[1]) and np.allclose(out[[0, 2]], [0.02, 0.02])
    np.testing.assert_allclose(holm([0.9, 0.8]), [1.0, 1.0])  # capped at 1, monotone


def test_degenerate_ci_does_not_crash():
    lo, hi, deg = bootstrap_ci(np.full(8, 0.25))
    assert deg and math.isnan(lo) and math.isnan(hi)
    lo, hi, deg = bootstrap_ci([0.1])
    assert deg and math.isnan(lo) and math.isnan(hi)
    lo, hi, deg = bootstrap_ci(np.linspace(0, 1, 12), n_resamples=2000, seed=3)
    assert not deg and lo < 0.5 < hi
    assert bootstrap_ci(np.linspace(0, 1, 12), n_resamples=2000, seed=3) == (lo, hi, False)  # fixed rng


def test_win_tie_loss_direction():
    d = np.array([0.2, -0.1, 0.0, 1e-11, -0.3])
    assert win_tie_loss(d, higher_better=True) == (1, 2, 2)
    assert win_tie_loss(d, higher_better=False) == (2, 2, 1)


def make_per_case(values: dict[tuple[str, int], list[float]], metric: str = "dice", protocol: str = "paper",
                  n_gt: list[int] | None = None, n_pred: dict[str, list[int]] | None = None,
                  status: dict[str, list[str]] | None = None) -> pd.DataFrame:
    """Tiny per-case frame for class 3: {(method, seed): per-scan values}."""
    rows = []
    for (method, seed), vals in values.items():
        for i, v in enumerate(vals):
            ng = n_gt[i] if n_gt else 10
            npred = n_pred[method][i] if n_pred else 10
            st = status[method][i] if status else ("both" if ng and npred else "empty")
            rows.append({"method": method, "seed": seed, "protocol": protocol, "split": "test", "scan_id": f"s{i:02d}",
                         "patient_id": f"p{i // 2}", "class_id": 3, "metric": metric, "value": v, "raw_value": v,
                         "empty_status": st, "n_gt": ng, "n_pred": npred, "split_hash": "abc123abc123"})
    return pd.DataFrame(rows)


def test_paired_stats_columns_holm_and_direction():
    rng = np.random.default_rng(0)
    base = rng.random(8)
    vals = {("ours", 0): list(base + 0.1), ("ours", 1): list(base + 0.1), ("b1", 0): list(base), ("b2", 0): list(base + 0.05)}
    dice = make_per_case(vals, "dice")
    jac = make_per_case(vals, "jaccard")
    hsd = make_per_case({k: list(10 - np.asarray(v) * 5) for k, v in vals.items()}, "hsd")
    per_case = pd.concat([dice, jac, hsd], ignore_index=True)
    st = paired_stats(per_case, "ours", protocol="paper", n_resamples=500)
    assert len(st) == 6 and set(st["metric"]) == {"dice", "jaccard", "hsd"}
    for col in ["method_a", "method_b", "protocol", "metric", "n_pairs", "n_nonzero", "mean_diff", "ci_low", "ci_high",
                "wins", "ties", "losses", "p_raw", "p_holm", "family", "flags", "split_hash"]:
        assert col in st.columns
    row = st[(st.metric == "hsd") & (st.method_b == "b1")].iloc[0]
    assert row.wins == 8 and row.losses == 0 and row.mean_diff < 0  # lower HSD is a win
    row = st[(st.metric == "dice") & (st.method_b == "b1")].iloc[0]
    assert row.wins == 8 and math.isclose(row.mean_diff, 0.1) and math.isclose(row.p_raw, 2 / 2**8)
    assert row["flags"] == "degenerate"  # every difference equals 0.1
    np.testing.assert_allclose(st["p_holm"], holm(st["p_raw"]))
    assert (st["family"] == "paper:class3:dice,jaccard,hsd").all()


def test_paired_stats_hsd_pairs_only_defined_scans_and_small_n_flag():
    vals = {("ours", 0): [2.0, np.nan, 3.0, 4.0, np.nan, 1.0], ("base", 0): [3.0, 5.0, np.nan, 6.0, np.nan, 2.0]}
    per_case = make_per_case(vals, "hsd")
    st = paired_stats(per_case, "ours", metrics=["hsd"], n_resamples=200)
    row = st.iloc[0]
    assert row.n_pairs == 3 and row.n_nonzero == 3 and "small_n" in row["flags"]
    assert row.wins == 3 and math.isclose(row.mean_diff, -4 / 3)


def test_paired_stats_seed_mean_and_errors():
    per_case = make_per_case({("ours", 0): [0.2, 0.4], ("ours", 1): [0.4, 0.6], ("b", 0): [0.3, 0.5]})
    st = paired_stats(per_case, "ours", metrics=["dice"], n_resamples=0)
    assert st.iloc[0].ties == 2 and st.iloc[0].p_raw == 1.0 and "all_zero" in st.iloc[0]["flags"]
    with pytest.raises(SsnetError, match="reference method"):
        paired_stats(per_case, "nope", metrics=["dice"])
    other = per_case.copy()
    other.loc[other.method == "b", "split_hash"] = "ffffffffffff"
    with pytest.raises(SsnetError, match="different splits"):
        paired_stats(other, "ours", metrics=["dice"])


def test_summarize_seeds_and_paper_hsd():
    dice = make_per_case({("m", 0): [1.0, 0.5, 0.0, 0.5], ("m", 1): [1.0, 0.7, 0.2, 0.5]}, "dice", n_gt=[0, 5, 5, 5])
    hsd = make_per_case({("m", 0): [np.nan, 2.0, np.nan, 4.0], ("m", 1): [np.nan, np.nan, np.nan, np.nan]}, "hsd",
                        n_gt=[0, 5, 5, 5])
    s = summarize(pd.concat([dice, hsd], ignore_index=True))
    assert list(s.columns) == SUMMARY_COLUMNS
    d = s[s.metric == "dice"].iloc[0]
    assert math.isclose(d["mean"], (0.5 + 0.6) / 2) and math.isclose(d["sd_seeds"], np.std([0.5, 0.6], ddof=1))
    assert d.n_seeds == 2 and d.n_scans == 4 and d.n_pos == 3
    assert math.isclose(d.mean_pos, np.mean([1.0 / 3, 1.4 / 3]))
    h = s[s.metric == "hsd"].iloc[0]
    # seed 0: mean of defined (3.0, n_hsd 2); seed 1: none defined → 1.0 (authors' convention)
    assert math.isclose(h["mean"], 2.0) and h.n_used == 1.0


def test_summarize_strict_detection_rows():
    st = {"m": ["both", "miss", "fp", "empty"]}
    per_case = make_per_case({("m", 0): [0.8, 0.0, 0.0, 1.0]}, "dsc", "strict", n_gt=[5, 5, 0, 0], status=st)
    s = summarize(per_case)
    row = s[s.metric == "dsc"].iloc[0]
    assert (row.n_both, row.n_miss, row.n_fp, row.n_empty) == (1, 1, 1, 1)
    assert math.isclose(row["mean"], 0.45) and math.isclose(row.mean_pos, 0.4)
    det = s.set_index("metric")
    assert det.loc["det_sensitivity", "mean"] == 0.5 and det.loc["det_specificity", "mean"] == 0.5


def test_ranking_stability():
    rng = np.random.default_rng(0)
    base = rng.random(30)
    per_case = make_per_case({("a", 0): list(base + 0.3), ("b", 0): list(base + 0.1), ("c", 0): list(base + rng.normal(0, 0.3, 30))})
    summ, freq = ranking_stability(per_case, metric="dice", n_boot=200, seed=1)
    assert summ["full_ranking"][0] == "a" and summ["n_boot"] == 200
    assert -1 <= summ["kendall_tau_low"] <= summ["kendall_tau_median"] <= summ["kendall_tau_high"] <= 1
    np.testing.assert_allclose(freq.sum(axis=1), 1.0)
    assert freq.loc["a", "rank_1"] > 0.9 and freq.loc["a", "rank_1"] >= freq.loc["b", "rank_1"]
    again, _ = ranking_stability(per_case, metric="dice", n_boot=200, seed=1)
    assert again == summ


def test_missing_scan_is_an_error_not_silently_dropped():
    per_case = make_per_case({("ours", 0): [0.2, 0.4, 0.5], ("b", 0): [0.3, 0.5, 0.1]})
    per_case = per_case[~((per_case.method == "b") & (per_case.scan_id == "s01"))]
    with pytest.raises(SsnetError, match="method 'b' has no paper dice value for scan 's01'"):
        paired_stats(per_case, "ours", metrics=["dice"], n_resamples=0)
    with pytest.raises(SsnetError, match="same scans"):
        ranking_stability(per_case, metric="dice", n_boot=10)
