"""The paper's claims as paired tests: ``python -m ssnet.evaluation.claims --per-case P --out CSV``.

For one table's per-case CSV (seeds averaged per scan first, the harness's rule), each claim is tested on
three endpoints of the paper protocol: the MVO Dice over all scans (the paper's column), the MVO Dice over
MVO-positive scans only, and the infarct (class 2) Dice. Per endpoint a family is Holm-corrected:

* ``ours_vs_each``: ``--ours`` (default ``ssnet``) against every other method;
* ``best_video_vs_best_image``: the video and the image method with the highest mean MVO Dice (kinds from the
  registry, or ``--kinds method=video,...``), one test per endpoint;
* ``pairs``: any ``--pair A:B`` (e.g. Table 2: ``ssnet:ssnet_static_only``), Holm over the pairs given.

Each row: the mean difference a − b with its 95 % bootstrap CI (scans resampled), wins/ties/losses, the
Wilcoxon signed-rank p (raw and Holm) and the harness's flags (``all_zero``: every difference is 0).
"""
from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from ssnet.errors import SsnetError
from ssnet.evaluation.stats import holm, paired_test, scan_scores

MVO, INFARCT = 3, 2
ENDPOINTS = {"mvo_dice": (MVO, False), "mvo_pos_dice": (MVO, True), "infarct_dice": (INFARCT, False)}


def endpoint_scores(per_case: pd.DataFrame, endpoint: str) -> pd.DataFrame:
    """Scan × method table (seed-averaged, paper protocol) of one endpoint."""
    class_id, positive_only = ENDPOINTS[endpoint]
    table = scan_scores(per_case, protocol="paper", metric="dice", class_id=class_id)
    if positive_only:
        rows = per_case[(per_case["protocol"] == "paper") & (per_case["class_id"].astype(int) == MVO)]
        positive = rows.groupby("scan_id")["n_gt"].max() > 0
        table = table.loc[table.index.isin(positive[positive].index)]
    return table


def _family(per_case: pd.DataFrame, family: str, pairs: list[tuple[str, str]]) -> list[dict]:
    rows = []
    for endpoint in ENDPOINTS:
        table = endpoint_scores(per_case, endpoint)
        found = []
        for a, b in pairs:
            missing = [m for m in (a, b) if m not in table.columns]
            if missing:
                raise SsnetError(f"claims: method {missing[0]!r} has no per-case rows (methods: {', '.join(table.columns)})")
            found.append({"family": family, "endpoint": endpoint, "method_a": a, "method_b": b,
                          "mean_a": float(table[a].mean()), "mean_b": float(table[b].mean()),
                          **paired_test(table[a], table[b], metric="dice")})
        for row, p in zip(found, holm([r["p_raw"] for r in found])):
            row["p_holm"] = float(p)
        rows += found
    return rows


def claims(per_case: pd.DataFrame, ours: str | None = "ssnet", kinds: dict[str, str] | None = None,
           pairs: list[tuple[str, str]] | None = None) -> pd.DataFrame:
    """Every claim's paired test on the three endpoints (see the module docstring)."""
    methods = sorted(per_case["method"].unique())
    rows: list[dict] = []
    if ours and ours in methods:
        rows += _family(per_case, "ours_vs_each", [(ours, m) for m in methods if m != ours])
    if kinds:
        dice = endpoint_scores(per_case, "mvo_dice").mean()
        best = {k: max((m for m in methods if kinds.get(m) == k), key=lambda m: dice[m], default=None) for k in ("video", "image")}
        if best["video"] and best["image"]:
            rows += _family(per_case, "best_video_vs_best_image", [(best["video"], best["image"])])
    if pairs:
        rows += _family(per_case, "pairs", pairs)
    return pd.DataFrame(rows)


def registry_kinds(methods: list[str]) -> dict[str, str]:
    """``method → image|video`` from the registry (a method is a model key, or unknown and left out)."""
    from ssnet import registry

    out = {}
    for m in methods:
        try:
            out[m] = registry.get(m).kind
        except Exception:
            continue
    return out


def main(argv: list[str] | None = None) -> int:
    from ssnet.evaluation.score import read_per_case
    from ssnet.io import atomic_write_csv

    p = argparse.ArgumentParser(prog="python -m ssnet.evaluation.claims", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--per-case", required=True, type=Path)
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--ours", default="ssnet")
    p.add_argument("--pair", action="append", default=[], metavar="A:B")
    p.add_argument("--no-kinds", action="store_true", help="skip the best-video vs best-image claim")
    p.add_argument("--force", action="store_true")
    a = p.parse_args(argv)
    per_case = read_per_case(a.per_case)
    pairs = [tuple(x.split(":", 1)) for x in a.pair]
    kinds = None if a.no_kinds else registry_kinds(sorted(per_case["method"].unique()))
    table = claims(per_case, a.ours, kinds, pairs)
    atomic_write_csv(table, a.out, overwrite=a.force)
    cols = ["family", "endpoint", "method_a", "method_b", "mean_a", "mean_b", "mean_diff", "ci_low", "ci_high", "p_holm", "flags"]
    print(table[cols].to_string(index=False, float_format=lambda x: f"{x:.4f}"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
