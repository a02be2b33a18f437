"""Aggregation (summary.csv) and paired statistics (stats.csv) over long-format per-case frames.

Statistics protocol (reference §6): unit = scan, paired by ``scan_id``; a method's per-scan
score is the mean over its seeds; ``d = round(x_a - x_b, 10)``; two-sided Wilcoxon signed-rank
(``zero_method="wilcox"``, no continuity correction, ``method="auto"``; p = 1 when every d is 0);
Holm over the family (every baseline × primary metric); BCa bootstrap CI of the mean paired
difference; direction-aware wins/ties/losses; ranking stability by scan bootstrap.
"""
from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats as sps

from ssnet.errors import SsnetError
from ssnet.evaluation.metrics import EMPTY_STATUSES, higher_is_better, paper_aggregate

SUMMARY_COLUMNS: list[str] = [
    "method", "protocol", "class_id", "metric", "n_scans", "n_used", "mean", "sd_seeds", "n_seeds",
    "median", "q25", "q75", "n_both", "n_miss", "n_fp", "n_empty", "mean_pos", "n_pos", "split_hash",
]  # fmt: skip
STATS_COLUMNS: list[str] = [
    "method_a", "method_b", "protocol", "metric", "n_pairs", "n_nonzero", "mean_diff", "ci_low", "ci_high",
    "wins", "ties", "losses", "p_raw", "p_holm", "family", "flags", "class_id", "ci_low_cluster", "ci_high_cluster", "split_hash",
]  # fmt: skip
PRIMARY_METRICS: dict[str, tuple[str, ...]] = {"paper": ("dice", "jaccard", "hsd"), "strict": ("dsc", "iou", "hd95")}
TIE_TOL = 1e-10
SMALL_N = 5


# --------------------------------------------------------------------------- building blocks


def holm(p_values: Sequence[float]) -> np.ndarray:
    """Holm step-down adjusted p-values; NaN entries stay NaN and are not counted in the family.

    Sorted ascending, ``p̃(i) = max_{j≤i} min(1, (m − j + 1)·p(j))``.
    """
    p = np.asarray(p_values, dtype=float)
    out = np.full(p.shape, np.nan)
    ok = np.flatnonzero(~np.isnan(p))
    m = ok.size
    if m == 0:
        return out
    order = ok[np.argsort(p[ok], kind="stable")]
    adj = np.minimum(1.0, (m - np.arange(m)) * p[order])
    out[order] = np.maximum.accumulate(adj)
    return out


def rounded_differences(a: Sequence[float], b: Sequence[float]) -> np.ndarray:
    """Paired differences ``round(a − b, 10)``."""
    return np.round(np.asarray(a, dtype=float) - np.asarray(b, dtype=float), 10)


def wilcoxon_p(d: Sequence[float]) -> float:
    """Two-sided Wilcoxon signed-rank p-value of paired differences ``d`` (already rounded).

    ``zero_method="wilcox"``, ``correction=False``, ``method="auto"``; p = 1.0 without SciPy
    when every difference is 0; NaN when there are no pairs.
    """
    d = np.asarray(d, dtype=float)
    if d.size == 0:
        return math.nan
    if np.isnan(d).any():
        raise ValueError("paired differences contain NaN")
    if not np.any(d != 0):
        return 1.0
    res = sps.wilcoxon(d, zero_method="wilcox", correction=False, alternative="two-sided", method="auto")
    return float(res.pvalue)


def bootstrap_ci(d: Sequence[float], *, n_resamples: int = 10000, seed: int = 0) -> tuple[float, float, bool]:
    """95 % BCa bootstrap CI of the mean of ``d`` (resampling scans).

    Returns:
        ``(low, high, degenerate)``; degenerate data (fewer than 2 values, or all equal) gives
        ``(nan, nan, True)`` instead of an error.
    """
    d = np.asarray(d, dtype=float)
    if d.size < 2 or np.all(d == d[0]):
        return math.nan, math.nan, True
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = sps.bootstrap(
            (d,), np.mean, n_resamples=n_resamples, method="BCa", confidence_level=0.95,
            rng=np.random.default_rng(seed),
        )  # fmt: skip
    lo, hi = float(res.confidence_interval.low), float(res.confidence_interval.high)
    if math.isnan(lo) or math.isnan(hi):
        return math.nan, math.nan, True
    return lo, hi, False


def cluster_bootstrap_ci(
    d: Sequence[float], clusters: Sequence[str], *, n_resamples: int = 10000, seed: int = 0
) -> tuple[float, float]:
    """Percentile 95 % CI of the mean of ``d`` resampling whole patients (sensitivity analysis)."""
    d = np.asarray(d, dtype=float)
    codes, uniq = pd.factorize(pd.Series(list(clusters)))
    k = len(uniq)
    if d.size < 2 or k < 2 or np.all(d == d[0]):
        return math.nan, math.nan
    sums = np.bincount(codes, weights=d, minlength=k)
    counts = np.bincount(codes, minlength=k).astype(float)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, k, size=(n_resamples, k))
    means = sums[idx].sum(axis=1) / counts[idx].sum(axis=1)
    lo, hi = np.percentile(means, [2.5, 97.5])
    return float(lo), float(hi)


def win_tie_loss(d: Sequence[float], higher_better: bool) -> tuple[int, int, int]:
    """Per-scan wins/ties/losses of method a over b from ``d = a − b``; a tie is ``|d| ≤ 1e-10``."""
    d = np.asarray(d, dtype=float)
    tie = np.abs(d) <= TIE_TOL
    better = (d > 0) if higher_better else (d < 0)
    wins = int(np.count_nonzero(better & ~tie))
    ties = int(np.count_nonzero(tie))
    return wins, ties, int(d.size - wins - ties)


# --------------------------------------------------------------------------- per-scan scores


def check_single_split(per_case: pd.DataFrame) -> str:
    """The one split hash of a per-case frame; SsnetError when rows carry different hashes."""
    if "split_hash" not in per_case.columns:
        return ""
    hashes = sorted({str(h) for h in per_case["split_hash"].fillna("").astype(str)})
    if len(hashes) > 1:
        raise SsnetError(f"per-case rows come from different splits (split_hash {', '.join(hashes)}); "
                         "compare only results on one split")
    return hashes[0] if hashes else ""


def scan_scores(per_case: pd.DataFrame, *, protocol: str, metric: str, class_id: int = 3) -> pd.DataFrame:
    """Per-scan score (mean over seeds, NaN-ignoring for paper HSD) as a scan × method table."""
    sel = per_case[(per_case["protocol"] == protocol) & (per_case["metric"] == metric)
                   & (per_case["class_id"].astype(int) == int(class_id))]
    if sel.empty:
        raise SsnetError(f"no per-case rows for protocol={protocol!r}, metric={metric!r}, class {class_id}")
    dup = sel.duplicated(["method", "seed", "scan_id"])
    if dup.any():
        r = sel[dup].iloc[0]
        raise SsnetError(f"duplicate per-case rows for method {r['method']!r}, seed {r['seed']}, scan {r['scan_id']!r}")
    return sel.pivot_table(index="scan_id", columns="method", values="value", aggfunc="mean", dropna=False)


# --------------------------------------------------------------------------- summary


def summarize(per_case: pd.DataFrame) -> pd.DataFrame:
    """summary.csv: one row per (method, protocol, class_id, metric).

    ``mean`` is the mean of seed-level means (paper HSD per seed: mean over defined scans,
    1.0 if none); ``sd_seeds`` their SD (ddof 1; NaN with one seed); ``median``/``q25``/``q75``
    over per-scan seed-averaged values; ``n_used`` and the status counts are per-seed averages
    (integers with one seed; for paper HSD ``n_used`` is ``n_hsd``); ``mean_pos`` is the mean
    over scans with G≠∅ (``n_pos`` of them). The strict protocol adds rows ``det_sensitivity``
    and ``det_specificity`` (scan-level detection, from the statuses).
    """
    shash = check_single_split(per_case)
    out: list[dict] = []
    keys = ["method", "protocol", "class_id", "metric"]
    for (method, protocol, class_id, metric), grp in per_case.groupby(keys, sort=True):
        seeds = sorted(grp["seed"].unique())
        seed_means, used, counts = [], [], {s: [] for s in EMPTY_STATUSES}
        pos_means = []
        for _, g in grp.groupby("seed", sort=True):
            v = g["value"].to_numpy(float)
            if protocol == "paper":
                m, n = paper_aggregate(v, metric)
            else:
                m, n = float(np.mean(v)), int(np.count_nonzero(~np.isnan(v)))
            seed_means.append(m)
            used.append(n)
            for s in EMPTY_STATUSES:
                counts[s].append(int((g["empty_status"] == s).sum()))
            pv = v[g["n_gt"].to_numpy() > 0]
            pv = pv[~np.isnan(pv)]
            if pv.size:
                pos_means.append(float(pv.mean()))
        per_scan = grp.groupby("scan_id")["value"].mean().to_numpy(float)
        per_scan = per_scan[~np.isnan(per_scan)]
        q25, med, q75 = np.percentile(per_scan, [25, 50, 75]) if per_scan.size else (math.nan,) * 3
        n_pos = int(grp.loc[grp["n_gt"] > 0, "scan_id"].nunique())
        out.append({
            "method": method, "protocol": protocol, "class_id": int(class_id), "metric": metric,
            "n_scans": int(grp["scan_id"].nunique()), "n_used": float(np.mean(used)),
            "mean": float(np.mean(seed_means)),
            "sd_seeds": float(np.std(seed_means, ddof=1)) if len(seeds) > 1 else math.nan,
            "n_seeds": len(seeds), "median": float(med), "q25": float(q25), "q75": float(q75),
            **{f"n_{s}": float(np.mean(counts[s])) for s in EMPTY_STATUSES},
            "mean_pos": float(np.mean(pos_means)) if pos_means else math.nan, "n_pos": n_pos,
        })  # fmt: skip
    summary = pd.DataFrame(out, columns=SUMMARY_COLUMNS)
    det = _detection_rows(per_case)
    if len(det):
        summary = pd.concat([summary, det], ignore_index=True)
    summary["split_hash"] = shash
    return summary.reset_index(drop=True)


def _detection_rows(per_case: pd.DataFrame) -> pd.DataFrame:
    strict = per_case[per_case["protocol"] == "strict"]
    if strict.empty:
        return pd.DataFrame(columns=SUMMARY_COLUMNS)
    first_metric = strict["metric"].iloc[0]
    strict = strict[strict["metric"] == first_metric]
    rows = []
    for (method, class_id), grp in strict.groupby(["method", "class_id"], sort=True):
        sens, spec, n_pos, n_neg = [], [], [], []
        for _, g in grp.groupby("seed", sort=True):
            st = g["empty_status"]
            nb, nm, nf, ne = (int((st == s).sum()) for s in EMPTY_STATUSES)
            sens.append(nb / (nb + nm) if nb + nm else math.nan)
            spec.append(ne / (ne + nf) if ne + nf else math.nan)
            n_pos.append(nb + nm)
            n_neg.append(ne + nf)
        for metric, vals, used in (("det_sensitivity", sens, n_pos), ("det_specificity", spec, n_neg)):
            arr = np.asarray(vals, float)
            rows.append({
                "method": method, "protocol": "strict", "class_id": int(class_id), "metric": metric,
                "n_scans": int(grp["scan_id"].nunique()), "n_used": float(np.mean(used)),
                "mean": float(np.mean(arr)) if not np.isnan(arr).all() else math.nan,
                "sd_seeds": float(np.std(arr, ddof=1)) if arr.size > 1 else math.nan, "n_seeds": int(arr.size),
            })  # fmt: skip
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS)


# --------------------------------------------------------------------------- paired statistics


def _require_complete(table: pd.DataFrame, protocol: str, metric: str) -> None:
    """Every method must have a value on every scan, except paper HSD (undefined by design)."""
    if protocol == "paper" and metric == "hsd":
        return
    missing = table.isna()
    if missing.any().any():
        col = missing.any().idxmax()
        scan = missing[col].idxmax()
        raise SsnetError(f"method {col!r} has no {protocol} {metric} value for scan {scan!r} "
                         f"({int(missing[col].sum())} scans missing); methods must be scored on the same scans")


def paired_test(
    a: Sequence[float], b: Sequence[float], *, metric: str, clusters: Sequence[str] | None = None,
    n_resamples: int = 10000, seed: int = 0,
) -> dict:
    """Paired comparison of two aligned per-scan score vectors (NaN pairs are dropped).

    Returns:
        dict with ``n_pairs, n_nonzero, mean_diff, ci_low, ci_high, ci_low_cluster, ci_high_cluster,
        wins, ties, losses, p_raw, flags`` (``d = a − b``; wins are direction-aware).
    """
    a = np.asarray(a, dtype=float)
    b = np.asarray(b, dtype=float)
    ok = ~(np.isnan(a) | np.isnan(b))
    d = rounded_differences(a[ok], b[ok])
    flags = []
    n_nonzero = int(np.count_nonzero(d))
    if d.size == 0:
        flags.append("no_pairs")
    if n_nonzero <= SMALL_N:
        flags.append("small_n")
    if d.size and n_nonzero == 0:
        flags.append("all_zero")
    lo = hi = clo = chi = math.nan
    if n_resamples > 0:
        lo, hi, degenerate = bootstrap_ci(d, n_resamples=n_resamples, seed=seed)
        if degenerate:
            flags.append("degenerate")
    if clusters is not None and d.size and n_resamples > 0:
        cl = np.asarray(list(clusters), dtype=object)[ok]
        clo, chi = cluster_bootstrap_ci(d, cl, n_resamples=n_resamples, seed=seed)
    wins, ties, losses = win_tie_loss(d, higher_is_better(metric))
    return {
        "n_pairs": int(d.size), "n_nonzero": n_nonzero, "mean_diff": float(d.mean()) if d.size else math.nan,
        "ci_low": lo, "ci_high": hi, "ci_low_cluster": clo, "ci_high_cluster": chi,
        "wins": wins, "ties": ties, "losses": losses, "p_raw": wilcoxon_p(d), "flags": ";".join(flags),
    }  # fmt: skip


def paired_stats(
    per_case: pd.DataFrame,
    reference_method: str,
    metrics: Sequence[str] | None = None,
    protocol: str = "paper",
    class_id: int = 3,
    *,
    baselines: Sequence[str] | None = None,
    n_resamples: int = 10000,
    seed: int = 0,
) -> pd.DataFrame:
    """stats.csv: ``reference_method`` (method_a) against every other method (method_b), per metric.

    Args:
        per_case: long per-case frame (several methods and seeds).
        reference_method: the method under test (e.g. ``ssnet``).
        metrics: metrics of the Holm family; default Dice, Jaccard, HSD (paper) or DSC, IoU, HD95 (strict).
        protocol: ``paper`` or ``strict``.
        class_id: class to test (3 = MVO).
        baselines: methods to compare against; default every other method present.
        n_resamples, seed: bootstrap settings (fixed seed → reproducible CIs); 0 skips the CIs.

    Returns:
        DataFrame with :data:`STATS_COLUMNS`; ``p_holm`` is Holm-adjusted over all its rows.
    """
    shash = check_single_split(per_case)
    metrics = tuple(metrics or PRIMARY_METRICS.get(protocol, ()))
    methods = sorted(per_case["method"].unique())
    if reference_method not in methods:
        raise SsnetError(f"reference method {reference_method!r} not in the per-case rows; present: {', '.join(methods)}")
    others = [m for m in (baselines if baselines is not None else methods) if m != reference_method]
    unknown = [m for m in others if m not in methods]
    if unknown:
        raise SsnetError(f"method {unknown[0]!r} not in the per-case rows; present: {', '.join(methods)}")
    patients = per_case.drop_duplicates("scan_id").set_index("scan_id")["patient_id"] if "patient_id" in per_case else None
    family = f"{protocol}:class{class_id}:" + ",".join(metrics)
    rows = []
    for metric in metrics:
        table = scan_scores(per_case, protocol=protocol, metric=metric, class_id=class_id)
        if reference_method not in table.columns:
            raise SsnetError(f"no {protocol} {metric} rows for method {reference_method!r}")
        for other in others:
            if other not in table.columns:
                raise SsnetError(f"no {protocol} {metric} rows for method {other!r}")
            pair = table[[reference_method, other]]
            _require_complete(pair, protocol, metric)
            # pair on scans both methods were scored on; paper HSD additionally needs a value on both
            clusters = None if patients is None else patients.reindex(pair.index).astype(str).tolist()
            res = paired_test(pair[reference_method].to_numpy(), pair[other].to_numpy(), metric=metric,
                              clusters=clusters, n_resamples=n_resamples, seed=seed)
            rows.append({"method_a": reference_method, "method_b": other, "protocol": protocol, "metric": metric,
                         "class_id": int(class_id), "family": family, **res})
    df = pd.DataFrame(rows, columns=STATS_COLUMNS)
    df["p_holm"] = holm(df["p_raw"].to_numpy(float))
    df["split_hash"] = shash
    return df


# --------------------------------------------------------------------------- ranking stability


def _ranks(means: np.ndarray, higher_better: bool) -> np.ndarray:
    """Ranks (1 = best, ties averaged) along the last axis."""
    return sps.rankdata(-means if higher_better else means, axis=-1, method="average")


def _nanstat(fn: Callable[..., Any], values: np.ndarray, *args: float) -> float:
    """``fn(values, *args)`` ignoring NaN (undefined τ when a bootstrap ranking is all ties); NaN if none."""
    return float(fn(values, *args)) if np.any(~np.isnan(values)) else math.nan


def ranking_stability(
    per_case: pd.DataFrame, *, metric: str = "dice", protocol: str = "paper", class_id: int = 3,
    n_boot: int = 1000, seed: int = 0,
) -> tuple[dict, pd.DataFrame]:
    """Ranking stability by scan bootstrap (aggregate-then-rank).

    Returns:
        ``(summary, freq)``: summary has ``kendall_tau_median``, ``kendall_tau_low`` (2.5 %),
        ``kendall_tau_high`` (97.5 %), ``n_boot``, ``n_scans``, ``full_ranking`` (best first);
        freq is a method × rank table of frequencies (rows sum to 1; average ranks are rounded up).
    """
    table = scan_scores(per_case, protocol=protocol, metric=metric, class_id=class_id)
    methods = list(table.columns)
    _require_complete(table, protocol, metric)
    x = table.to_numpy(float)  # scans × methods
    n = x.shape[0]
    hib = higher_is_better(metric)

    def agg(vals: np.ndarray) -> np.ndarray:  # (..., scans, methods) → (..., methods)
        if metric == "hsd" and protocol == "paper":
            cnt = np.sum(~np.isnan(vals), axis=-2)
            tot = np.nansum(vals, axis=-2)
            return np.where(cnt > 0, tot / np.maximum(cnt, 1), 1.0)
        return vals.mean(axis=-2)

    full = _ranks(agg(x), hib)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(n_boot, n))
    ranks = _ranks(agg(x[idx]), hib)  # n_boot × methods
    taus = np.array([sps.kendalltau(full, r).statistic for r in ranks], dtype=float)
    m = len(methods)
    freq = np.zeros((m, m))
    for j in range(m):
        r = np.ceil(ranks[:, j]).astype(int)
        freq[j] = np.bincount(r - 1, minlength=m)[:m] / n_boot
    freq_df = pd.DataFrame(freq, index=pd.Index(methods, name="method"), columns=[f"rank_{k + 1}" for k in range(m)])
    order = [methods[i] for i in np.argsort(full, kind="stable")]
    summary = {
        "metric": metric, "protocol": protocol, "class_id": int(class_id), "n_boot": int(n_boot), "n_scans": int(n),
        "kendall_tau_median": _nanstat(np.nanmedian, taus), "kendall_tau_low": _nanstat(np.nanpercentile, taus, 2.5),
        "kendall_tau_high": _nanstat(np.nanpercentile, taus, 97.5), "full_ranking": order,
    }  # fmt: skip
    return summary, freq_df
