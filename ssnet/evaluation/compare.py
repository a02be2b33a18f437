"""Compare two result CSVs: ``ssnet compare A.csv B.csv [--metric dice --protocol paper --class 3]
[--format text|json|md] [--allow-different-splits]``.

Two per-case CSVs are compared on the scans they share (per-scan score = mean over seeds):
means, paired difference ``A − B`` with a 95 % BCa CI, two-sided Wilcoxon p and direction-aware
wins/ties/losses. Two summary CSVs (or one of each) are compared by their means only, without
paired statistics, and the output says so.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from ssnet.errors import SsnetError, input_error
from ssnet.evaluation.metrics import higher_is_better, paper_aggregate
from ssnet.evaluation.stats import paired_test, summarize


def _read(path: Path) -> tuple[str, pd.DataFrame]:
    """('per_case' | 'summary', frame)."""
    if not path.is_file():
        raise input_error(path, "file not found")
    try:
        head = pd.read_csv(path, nrows=0)
    except Exception as exc:
        raise input_error(path, f"malformed CSV ({type(exc).__name__}: {exc})") from exc
    if "scan_id" in head.columns:
        from ssnet.evaluation.score import read_per_case

        return "per_case", read_per_case(path)
    if {"method", "protocol", "class_id", "metric", "mean"} <= set(head.columns):
        return "summary", pd.read_csv(path, dtype={"method": str, "split_hash": str}, keep_default_na=True)
    raise input_error(path, "neither a per-case CSV (scan_id column) nor a summary CSV (mean column)")


def _split_hash(df: pd.DataFrame, path: Path) -> str:
    if "split_hash" not in df.columns:
        return ""
    hashes = sorted({str(h) for h in df["split_hash"].fillna("").astype(str)} - {""})
    if len(hashes) > 1:
        raise input_error(path, f"rows from different splits (split_hash {', '.join(hashes)})")
    return hashes[0] if hashes else ""


def _select(df: pd.DataFrame, path: Path, protocol: str, metric: str, class_id: int) -> pd.DataFrame:
    protos = sorted(set(df["protocol"].astype(str)))
    if protocol not in protos:
        raise input_error(path, f"has no {protocol}-protocol rows (protocols present: {', '.join(protos) or 'none'})")
    sel = df[(df["protocol"] == protocol) & (df["metric"] == metric) & (df["class_id"].astype(int) == class_id)]
    if sel.empty:
        metrics = sorted(set(df.loc[df["protocol"] == protocol, "metric"].astype(str)))
        raise input_error(path, f"no {protocol} {metric!r} rows for class {class_id} (metrics: {', '.join(metrics)})")
    return sel


def _name(df: pd.DataFrame, path: Path) -> str:
    methods = [m for m in dict.fromkeys(df["method"].astype(str)) if m]
    return "+".join(methods) if methods else path.stem


def _mean(values: np.ndarray, metric: str, protocol: str) -> float:
    if protocol == "paper":
        return paper_aggregate(values, metric)[0] if values.size else math.nan
    return float(np.mean(values)) if values.size else math.nan


def _one_method(df: pd.DataFrame, path: Path, method: str | None) -> pd.DataFrame:
    methods = list(dict.fromkeys(df["method"].astype(str)))
    if method is not None:
        if method not in methods:
            raise input_error(path, f"no rows for method {method!r}; present: {', '.join(methods)}")
        return df[df["method"].astype(str) == method]
    if len(methods) > 1:
        raise input_error(path, f"holds several methods ({', '.join(methods)}); choose one with --method-a/--method-b")
    return df


def compare_files(
    a_path: str | Path, b_path: str | Path, *, metric: str = "dice", protocol: str = "paper", class_id: int = 3,
    allow_different_splits: bool = False, method_a: str | None = None, method_b: str | None = None,
    n_resamples: int = 10000, seed: int = 0,
) -> dict:
    """Compare two per-case (or summary) CSVs; returns a JSON-serialisable dict.

    Each file must hold one method, or ``method_a``/``method_b`` picks one. The paired
    difference is ``A − B``; wins count scans where A is better (direction-aware).

    Raises:
        SsnetError: different split hashes (unless ``allow_different_splits``), a missing
            protocol/metric, different τ for NSD, or no shared scans.
    """
    a_path, b_path = Path(a_path), Path(b_path)
    kind_a, a = _read(a_path)
    kind_b, b = _read(b_path)
    ha, hb = _split_hash(a, a_path), _split_hash(b, b_path)
    warnings: list[str] = []
    if ha != hb:
        msg = f"different splits: {a_path.name} has split_hash {ha or 'unknown'}, {b_path.name} has {hb or 'unknown'}"
        if not allow_different_splits:
            raise SsnetError(msg + " (pass --allow-different-splits to compare anyway)")
        warnings.append("WARNING: " + msg + "; the comparison is not on one test set")
    sa = _one_method(_select(a, a_path, protocol, metric, class_id), a_path, method_a)
    sb = _one_method(_select(b, b_path, protocol, metric, class_id), b_path, method_b)
    if "tau" in sa.columns and "tau" in sb.columns and protocol == "strict":
        ta, tb = sorted(set(sa["tau"].astype(float))), sorted(set(sb["tau"].astype(float)))
        if ta != tb:
            raise SsnetError(f"different NSD tolerances: {a_path.name} τ={ta}, {b_path.name} τ={tb}")
    result: dict = {
        "a": {"file": str(a_path), "method": _name(sa, a_path), "kind": kind_a},
        "b": {"file": str(b_path), "method": _name(sb, b_path), "kind": kind_b},
        "metric": metric, "protocol": protocol, "class_id": class_id,
        "higher_is_better": higher_is_better(metric), "split_hash_a": ha, "split_hash_b": hb,
        "warnings": warnings,
    }  # fmt: skip
    if kind_a == "per_case" and kind_b == "per_case":
        pa = sa.groupby("scan_id")["value"].mean()
        pb = sb.groupby("scan_id")["value"].mean()
        shared = sorted(set(pa.index) & set(pb.index))
        if not shared:
            raise SsnetError(f"{a_path.name} and {b_path.name} share no scans")
        xa, xb = pa.reindex(shared).to_numpy(float), pb.reindex(shared).to_numpy(float)
        patients = sa.drop_duplicates("scan_id").set_index("scan_id")["patient_id"].reindex(shared).astype(str)
        res = paired_test(xa, xb, metric=metric, clusters=patients.tolist(), n_resamples=n_resamples, seed=seed)
        result.update({
            "paired": True, "n_shared": len(shared), "n_only_a": len(set(pa.index) - set(shared)),
            "n_only_b": len(set(pb.index) - set(shared)),
            "mean_a": _mean(xa, metric, protocol), "mean_b": _mean(xb, metric, protocol),
            "n_seeds_a": int(sa["seed"].nunique()), "n_seeds_b": int(sb["seed"].nunique()), **res,
        })  # fmt: skip
        result["a"]["mean"], result["b"]["mean"] = result["mean_a"], result["mean_b"]
        if result["n_only_a"] or result["n_only_b"]:
            warnings.append(f"compared on the {len(shared)} shared scans only "
                            f"({result['n_only_a']} only in A, {result['n_only_b']} only in B)")
    else:
        ra = sa if kind_a == "summary" else summarize(sa)
        rb = sb if kind_b == "summary" else summarize(sb)
        for key, r in (("a", ra), ("b", rb)):
            if len(r) != 1:
                raise SsnetError(f"{result[key]['file']}: expected one summary row for {protocol} {metric} class "
                                 f"{class_id}, found {len(r)} (one method per file)")
            row = r.iloc[0]
            result[key].update({"mean": float(row["mean"]), "sd_seeds": float(row.get("sd_seeds", math.nan)),
                                "n_scans": int(row["n_scans"]), "n_used": float(row.get("n_used", math.nan))})
        result.update({"paired": False, "mean_a": result["a"]["mean"], "mean_b": result["b"]["mean"],
                       "mean_diff": result["a"]["mean"] - result["b"]["mean"],
                       "note": "summary CSV input: means only, no paired statistics (needs per-case CSVs)"})
    return result


def _fmt(x: object) -> str:
    if isinstance(x, float):
        return "n/a" if math.isnan(x) else f"{x:.4f}"
    return str(x)


def _clean(obj: object) -> object:
    """NaN → None, NumPy scalars → Python, for strict JSON."""
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if isinstance(obj, (np.floating, float)):
        return None if math.isnan(float(obj)) else float(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    return obj


def render(result: dict, fmt: str) -> str:
    """Render a :func:`compare_files` result as ``text``, ``md`` or ``json``."""
    if fmt == "json":
        return json.dumps(_clean(result), sort_keys=True, allow_nan=False)
    from ssnet.evaluation.tables import format_p

    a, b = result["a"], result["b"]
    arrow = "↑" if result["higher_is_better"] else "↓"
    rows = [("metric", f"{result['metric']} {arrow} ({result['protocol']} protocol, class {result['class_id']})"),
            (f"A: {a['method']}", _fmt(result["mean_a"])), (f"B: {b['method']}", _fmt(result["mean_b"]))]
    if result["paired"]:
        rows += [
            ("scans paired", f"{result['n_pairs']} of {result['n_shared']} shared"),
            ("mean diff A − B", f"{_fmt(result['mean_diff'])} (95% CI {_fmt(result['ci_low'])} to {_fmt(result['ci_high'])})"),
            ("Wilcoxon p (two-sided)", format_p(result["p_raw"])),
            ("wins / ties / losses (A)", f"{result['wins']} / {result['ties']} / {result['losses']}"),
        ]  # fmt: skip
        if result["flags"]:
            rows.append(("flags", result["flags"]))
    else:
        rows += [("mean diff A − B", _fmt(result["mean_diff"])), ("note", result["note"])]
    notes = list(result["warnings"])
    if fmt == "md":
        lines = ["| | |", "|:---|:---|"] + [f"| {k} | {v} |" for k, v in rows]
        return "\n".join(lines + [""] + [f"- {n}" for n in notes])
    width = max(len(k) for k, _ in rows)
    return "\n".join([f"{k.ljust(width)}  {v}" for k, v in rows] + notes)


def main(argv: list[str]) -> int:
    """``ssnet compare``: compare two per-case (or summary) CSVs."""
    p = argparse.ArgumentParser(prog="ssnet compare", description="Compare two per-case (or summary) CSVs.")
    p.add_argument("a", help="per_case.csv or summary.csv of method A")
    p.add_argument("b", help="per_case.csv or summary.csv of method B")
    p.add_argument("--metric", default="dice")
    p.add_argument("--protocol", default="paper", choices=["paper", "strict"])
    p.add_argument("--class", dest="class_id", type=int, default=3)
    p.add_argument("--format", default="text", choices=["text", "json", "md"])
    p.add_argument("--method-a", default=None, help="method to take from A when it holds several")
    p.add_argument("--method-b", default=None, help="method to take from B when it holds several")
    p.add_argument("--allow-different-splits", action="store_true", help="compare anyway (loud warning)")
    args = p.parse_args(argv)
    result = compare_files(args.a, args.b, metric=args.metric, protocol=args.protocol, class_id=args.class_id,
                           allow_different_splits=args.allow_different_splits, method_a=args.method_a,
                           method_b=args.method_b)
    for w in result["warnings"]:
        if w.startswith("WARNING"):
            print(f"ssnet compare: {w}", file=sys.stderr)
    print(render(result, args.format))
    return 0
