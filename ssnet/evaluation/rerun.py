"""A table written again into a folder that already holds it: keep the earlier files, then say how the new
per-case values agree with them.

``reproduce`` writes into ``results/<profile>`` by default, which holds the committed tables. Rather than
replace them silently, :func:`set_aside` moves every file of that table (``<stem>.*``, ``<stem>_*``) to
``<out>/previous/<stem>-<UTC time>/``; :func:`agreement` then compares the new per-case values with the
earlier ones for each (method, seed) present in both, so a fresh clone's rerun of a committed table says at once
whether it reproduced it (byte for byte or how far from it).
"""
from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

KEYS = ["method", "seed", "protocol", "scan_id", "class_id", "metric"]


def table_files(out_dir: Path, stem: str) -> list[Path]:
    """The files of table ``stem`` in ``out_dir``: ``stem.csv/.md/.tex`` and ``stem_*`` (per-case, claims, ...)."""
    if not out_dir.is_dir():
        return []
    return sorted(p for p in out_dir.iterdir() if p.is_file() and (p.stem == stem or p.name.startswith(f"{stem}_")))


def set_aside(out_dir: Path, stem: str) -> Path | None:
    """Move the table's earlier files to ``<out_dir>/previous/<stem>-<UTC time>/`` and say so on stderr; that
    folder, or None if there were none."""
    files = table_files(out_dir, stem)
    if not files:
        return None
    base = out_dir / "previous" / f"{stem}-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}"
    dest, n = base, 1
    while dest.exists():  # two writes within one second
        n += 1
        dest = base.with_name(f"{base.name}-{n}")
    dest.mkdir(parents=True)
    for f in files:
        shutil.move(str(f), dest / f.name)
    print(f"{stem}: the earlier {stem} files of {out_dir} moved to {dest} (not overwritten)", file=sys.stderr)
    return dest


def agreement(new: pd.DataFrame, old: pd.DataFrame) -> pd.DataFrame:
    """Per (method, seed) in both per-case frames: ``n`` values compared, ``n_differ`` and ``max_abs_diff``.
    Values equal to the last bit (NaN = NaN) count as agreeing; rows present in one frame only count as
    differing."""
    cols = [k for k in KEYS if k in new.columns and k in old.columns]
    shared = new[["method", "seed"]].drop_duplicates().merge(old[["method", "seed"]].drop_duplicates())
    out = []
    for method, seed in shared.itertuples(index=False):
        a = new[(new.method == method) & (new.seed == seed)]
        b = old[(old.method == method) & (old.seed == seed)]
        m = a[cols + ["value"]].merge(b[cols + ["value"]], on=cols, how="outer", suffixes=("_new", "_old"),
                                      indicator=True)
        x, y = m["value_new"].to_numpy(float), m["value_old"].to_numpy(float)
        same = (x == y) | (np.isnan(x) & np.isnan(y) & (m["_merge"] == "both").to_numpy())
        diff = np.abs(x - y)
        out.append({"method": method, "seed": int(seed), "n": len(m), "n_differ": int((~same).sum()),
                    "max_abs_diff": float(np.nanmax(diff)) if np.isfinite(diff).any() else float("nan")})
    return pd.DataFrame(out, columns=["method", "seed", "n", "n_differ", "max_abs_diff"])


def describe(table: pd.DataFrame) -> list[str]:
    """One line per (method, seed) of :func:`agreement`."""
    lines = []
    for r in table.itertuples(index=False):
        if r.n_differ == 0:
            lines.append(f"  {r.method} seed {r.seed}: identical ({r.n} per-case values)")
        else:
            lines.append(f"  {r.method} seed {r.seed}: {r.n_differ} of {r.n} per-case values differ "
                         f"(max |difference| {r.max_abs_diff:.4g})")
    return lines


def compare_with_previous(per_case: Path, previous: Path) -> list[str]:
    """:func:`describe` of the new ``per_case`` file against the file of the same name in ``previous`` (no lines
    when there is none or no (method, seed) in common)."""
    from ssnet.evaluation.score import read_per_case

    old = previous / per_case.name
    if not old.exists():
        return []
    return describe(agreement(read_per_case(per_case), read_per_case(old)))
