"""Paper tables (Table 1 methods, Table 2 ablation, Table 3 frame count) as CSV, Markdown and LaTeX.

One small deterministic writer: a :class:`Table` (header, cells, notes) is built once from the
per-case rows and rendered to three formats. For each table two files sets are written:

* ``<stem>.{csv,md,tex}`` — **paper protocol** (authors' evaluation), class 3 (MVO): Dice,
  Jaccard, HSD, precision, recall, ``n_hsd``, Dice on MVO-positive scans, the number of scans
  with predicted MVO and, when ``ours`` is given, Holm-adjusted Wilcoxon p of ours vs every row;
* ``<stem>_strict.{csv,md,tex}`` — **strict protocol** (when strict rows exist): DSC, IoU, HD95,
  NSD(τ), scan-level detection sensitivity/specificity, DSC on MVO-positive scans, Holm p.

Every table carries the reference row **no-MVO** (predicting no MVO on any scan, computed from
the ground truth counts ``n_gt``); ``--with-paper`` appends the paper's published numbers,
labelled as a different, private cohort.

``ssnet tables --kind table1|table2|table3 --per-case a.csv [b.csv ...] --out DIR
[--with-paper] [--ours NAME] [--rows ROWS.csv] [--stem NAME]``
"""
from __future__ import annotations

import argparse
import csv
import io
import math
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ssnet.errors import SsnetError, input_error
from ssnet.io import atomic_write_csv, atomic_write_text
from ssnet.evaluation.stats import check_single_split, paired_stats, summarize

KINDS: tuple[str, ...] = ("table1", "table2", "table3")
MVO = 3
NO_MVO = "no-MVO"
INPUT_COL = "Input"
FRAMES_COL = "Frames"
ABLATION_COLS: tuple[str, ...] = ("Static encoder", "Motion encoder", "Guided decoder", "Uncertainty refinement")
EFFICIENCY_COLS: tuple[str, ...] = ("Params (M)", "GFLOPs", "s/step", "Peak mem (MB)", "ms/clip")
INFARCT = 2
CHECK, CROSS = "✓", "✗"
#: snake_case keys accepted in ``TableRow.columns`` and their display names.
COLUMN_ALIASES: dict[str, str] = {
    "input": INPUT_COL, "frames": FRAMES_COL, "static_encoder": ABLATION_COLS[0], "motion_encoder": ABLATION_COLS[1],
    "guided_decoder": ABLATION_COLS[2], "uncertainty_refinement": ABLATION_COLS[3], "params_m": EFFICIENCY_COLS[0],
    "gflops": EFFICIENCY_COLS[1], "s_per_step": EFFICIENCY_COLS[2], "peak_mem_mb": EFFICIENCY_COLS[3],
    "ms_per_clip": EFFICIENCY_COLS[4],
}  # fmt: skip
TITLES = {
    "table1": "Table 1: MVO segmentation, methods compared",
    "table2": "Table 2: ablation of the SSNet components",
    "table3": "Table 3: number of input frames",
}
PAPER_FILES = {"table1": "paper_table1.csv", "table2": "paper_table2.csv", "table3": "paper_table3.csv"}
# (metric, header, higher is better)
PAPER_COLS: tuple[tuple[str, str, bool], ...] = (
    ("dice", "Dice", True), ("jaccard", "Jaccard", True), ("hsd", "HSD", False),
    ("precision", "Precision", True), ("recall", "Recall", True),
)  # fmt: skip
STRICT_COLS: tuple[tuple[str, str, bool], ...] = (
    ("dsc", "DSC", True), ("iou", "IoU", True), ("hd95", "HD95", False), ("nsd", "NSD", True),
    ("det_sensitivity", "Det. sens.", True), ("det_specificity", "Det. spec.", True),
)  # fmt: skip
P_COLS = {"paper": (("dice", "Dice"), ("jaccard", "Jaccard"), ("hsd", "HSD")),
          "strict": (("dsc", "DSC"), ("iou", "IoU"), ("hd95", "HD95"))}


@dataclass(frozen=True)
class TableRow:
    """One table row: the per-case ``method`` name, its display ``label`` and extra text columns
    (e.g. ``{"Input": "Video"}``, ablation ✓/✗, ``{"Frames": "10"}``, efficiency numbers
    ``Params (M)``/``GFLOPs``/``s/step``/``Peak mem (MB)``/``ms/clip``, shown last; empty columns are dropped). snake_case keys of :data:`COLUMN_ALIASES`
    (``input``, ``static_encoder``, ``frames``, ``params_m``, ``ms_per_clip`` ...) are accepted too."""

    method: str
    label: str
    columns: dict[str, str] = field(default_factory=dict)


@dataclass
class Cell:
    """A rendered cell: its text and whether it is the best value of its column."""

    text: str
    bold: bool = False


@dataclass
class Table:
    """Format-independent table: title, protocol, header, rows of cells, notes."""

    title: str
    protocol: str
    header: list[str]
    rows: list[list[Cell]]
    notes: list[str]


# --------------------------------------------------------------------------- formatting


def format_p(p: float) -> str:
    """p-value to 3 significant digits, ``< 0.001`` below 0.001, ``n/a`` for NaN."""
    if p is None or (isinstance(p, float) and math.isnan(p)):
        return "n/a"
    if p < 0.001:
        return "< 0.001"
    return f"{float(p):#.3g}"


def format_value(mean: float, sd: float = math.nan, n_seeds: int = 1) -> str:
    """4 decimals; ``mean ± SD`` when there are several seeds; ``n/a`` for NaN."""
    if mean is None or math.isnan(mean):
        return "n/a"
    if n_seeds > 1 and not math.isnan(sd):
        return f"{mean:.4f} ± {sd:.4f}"
    return f"{mean:.4f}"


def format_count(x: float) -> str:
    """Integer when integral (one seed), else one decimal (per-seed average)."""
    if x is None or math.isnan(x):
        return "n/a"
    return str(int(round(x))) if abs(x - round(x)) < 1e-9 else f"{x:.1f}"


def _arrow(hib: bool) -> str:
    return "↑" if hib else "↓"


# --------------------------------------------------------------------------- paper numbers


def paper_tables_dir() -> Path:
    """Folder of the paper's published tables: ``$SSNET_PAPER_TABLES``, ``<repo>/../shared/reference``,
    else the copy shipped in ``ssnet/evaluation/paper_tables``."""
    env = os.environ.get("SSNET_PAPER_TABLES")
    if env:
        return Path(env)
    shared = Path(__file__).resolve().parents[2].parent / "shared" / "reference"
    if (shared / PAPER_FILES["table1"]).is_file():
        return shared
    return Path(__file__).resolve().parent / "paper_tables"


def read_paper_table(kind: str, directory: str | Path | None = None) -> pd.DataFrame:
    """The paper's published numbers for ``kind`` (table1/2/3)."""
    path = Path(directory or paper_tables_dir()) / PAPER_FILES[kind]
    if not path.is_file():
        raise input_error(path, "paper table not found (set SSNET_PAPER_TABLES to the folder holding it)")
    return pd.read_csv(path)


def _paper_rows(kind: str, directory: str | Path | None) -> list[tuple[str, dict[str, str], dict[str, float]]]:
    df = read_paper_table(kind, directory)
    out = []
    for _, r in df.iterrows():
        values = {m: float(r[m]) for m, _, _ in PAPER_COLS}
        if kind == "table1":
            label, cols = str(r["method"]), {INPUT_COL: str(r["input"]).capitalize()}
        elif kind == "table2":
            flags = [r[c] for c in ("static_encoder", "motion_encoder", "guided_decoder", "uncertainty_refinement")]
            cols = {name: CHECK if int(f) else CROSS for name, f in zip(ABLATION_COLS, flags)}
            label = "SSNet"
        else:
            label, cols = "SSNet", {FRAMES_COL: str(int(r["frames"]))}
        out.append((f"{label} (paper†)", cols, values))
    return out


# --------------------------------------------------------------------------- building


def no_mvo_scores(per_case: pd.DataFrame) -> dict[str, float]:
    """Scores of predicting no MVO on any scan, from the ground truth counts (class 3, ``n_gt``).

    Paper: Dice = Jaccard = recall = share of MVO-negative scans, precision 1, HSD 1.0 (no scan
    defined, ``n_hsd`` 0). Strict: DSC = IoU = NSD = share of negative scans, HD95 = mean of the
    image diagonal over positive scans (0 on negative ones), detection sensitivity 0, specificity 1.
    """
    rows = per_case[per_case["class_id"].astype(int) == MVO]
    if rows.empty:
        raise SsnetError("no class-3 (MVO) rows in the per-case data")
    gt = rows.groupby("scan_id")["n_gt"].agg(["min", "max"])
    bad = gt.index[gt["min"] != gt["max"]]
    if len(bad):
        raise SsnetError(f"scan {bad[0]!r} has different ground truth across runs (n_gt differs); "
                         "were they scored on different grids?")
    pos = gt["max"].to_numpy() > 0
    n = pos.size
    neg_share = float(np.count_nonzero(~pos) / n)
    out = {"dice": neg_share, "jaccard": neg_share, "precision": 1.0, "recall": neg_share, "hsd": 1.0,
           "n_hsd": 0.0, "dice_pos": 0.0 if pos.any() else math.nan, "n_pred_scans": 0.0,
           "dsc": neg_share, "iou": neg_share, "nsd": neg_share,
           "det_sensitivity": 0.0 if pos.any() else math.nan, "det_specificity": 1.0 if (~pos).any() else math.nan,
           "dsc_pos": 0.0 if pos.any() else math.nan}  # fmt: skip
    if {"grid_rows", "grid_cols"} <= set(rows.columns):
        first = rows.drop_duplicates("scan_id").set_index("scan_id").reindex(gt.index)
        sr = first["spacing_row"].fillna(1.0).to_numpy(float) if "spacing_row" in first else np.ones(n)
        sc = first["spacing_col"].fillna(1.0).to_numpy(float) if "spacing_col" in first else np.ones(n)
        diag = np.hypot(first["grid_rows"].to_numpy(float) * sr, first["grid_cols"].to_numpy(float) * sc)
        out["hd95"] = float(np.where(pos, diag, 0.0).mean())
    else:
        out["hd95"] = math.nan
    return out


def _method_stats(per_case: pd.DataFrame, summary: pd.DataFrame, method: str, protocol: str) -> dict[str, tuple]:
    """{key: (mean, sd, n_seeds)} for one method and protocol, class 3."""
    s = summary[(summary["method"] == method) & (summary["protocol"] == protocol) & (summary["class_id"] == MVO)]
    out: dict[str, tuple] = {}
    for r in s.itertuples(index=False):
        out[r.metric] = (r.mean, r.sd_seeds, int(r.n_seeds))
        if r.metric in ("dice", "dsc"):
            out[f"{r.metric}_pos"] = (r.mean_pos, math.nan, 1)
        if r.metric == "hsd":
            out["n_hsd"] = (r.n_used, math.nan, 1)
    rows = per_case[(per_case["method"] == method) & (per_case["protocol"] == protocol)
                    & (per_case["class_id"].astype(int) == MVO)]
    if len(rows):
        first = rows[rows["metric"] == rows["metric"].iloc[0]]
        n_pred = first.groupby("seed")["n_pred"].apply(lambda x: int((x > 0).sum()))
        out["n_pred_scans"] = (float(n_pred.mean()), math.nan, 1)
    return out


def _infarct_floor(per_case: pd.DataFrame, protocol: str) -> str:
    """``"; predicting no infarct scores X"`` (empty-empty scans score 1 in both protocols), or ``""``."""
    r = per_case[(per_case["protocol"] == protocol) & (per_case["class_id"].astype(int) == INFARCT)]
    if r.empty:
        return ""
    negative = r.groupby("scan_id")["n_gt"].max() == 0
    return f"; predicting no infarct scores {negative.mean():.4f} (the share of infarct-free scans)"


def infarct_dice(per_case: pd.DataFrame, method: str, protocol: str) -> float:
    """Mean class-2 (infarct) Dice (paper) / DSC (strict) over scans, seed-averaged; NaN without class-2 rows."""
    metric = "dice" if protocol == "paper" else "dsc"
    r = per_case[(per_case["method"] == method) & (per_case["protocol"] == protocol)
                 & (per_case["class_id"].astype(int) == INFARCT) & (per_case["metric"] == metric)]
    if r.empty:
        return math.nan
    return float(r.groupby("seed")["value"].mean().mean())


def _bold_best(rows: list[list[Cell]], col: int, values: list[float | None], hib: bool) -> None:
    vals = [(i, round(v, 4)) for i, v in enumerate(values) if v is not None and not math.isnan(v)]
    if not vals:
        return
    best = max(v for _, v in vals) if hib else min(v for _, v in vals)
    for i, v in vals:
        if v == best:
            rows[i][col].bold = True


def build_table(
    kind: str,
    per_case: pd.DataFrame,
    rows: Sequence[TableRow],
    ours: str | None,
    protocol: str,
    *,
    with_paper: bool = False,
    paper_dir: str | Path | None = None,
) -> Table:
    """Build one table (``protocol`` = ``paper`` or ``strict``) from per-case rows.

    Args:
        kind: ``table1``, ``table2`` or ``table3``.
        per_case: long per-case frame of every row's method (all seeds).
        rows: ordered table rows; each ``method`` must be present in ``per_case``.
        ours: method whose Wilcoxon p against every other row is shown (Holm-adjusted); None: no p.
        protocol: ``paper`` or ``strict``.
        with_paper: append the paper's published numbers (paper protocol only).
        paper_dir: folder of paper_table*.csv (default :func:`paper_tables_dir`).
    """
    if kind not in KINDS:
        raise SsnetError(f"unknown table kind {kind!r}; available: {', '.join(KINDS)}")
    split = check_single_split(per_case)
    present = set(per_case["method"].unique())
    missing = [r.method for r in rows if r.method not in present]
    if missing:
        raise SsnetError(f"method {missing[0]!r} has no per-case rows; present: {', '.join(sorted(present))}")
    if ours is not None and ours not in {r.method for r in rows}:
        raise SsnetError(f"ours={ours!r} is not one of the table rows")
    rows = [TableRow(r.method, r.label, {COLUMN_ALIASES.get(k, k): v for k, v in r.columns.items()}) for r in rows]
    methods = [r.method for r in rows]
    data = per_case[per_case["method"].isin(methods) & (per_case["class_id"].astype(int) == MVO)]
    data_p = data[data["protocol"] == protocol]
    missing = [m for m in methods if m not in set(data_p["method"])]
    if missing:
        raise SsnetError(f"method {missing[0]!r} has no {protocol}-protocol MVO rows")
    summary = summarize(data_p)
    metric_cols = PAPER_COLS if protocol == "paper" else STRICT_COLS
    paper_rows = _paper_rows(kind, paper_dir) if (with_paper and protocol == "paper") else []

    extra: list[str] = []
    for r in rows:
        for k in r.columns:
            if k not in extra and k not in EFFICIENCY_COLS:
                extra.append(k)
    for _, cols, _ in paper_rows:
        for k in cols:
            if k not in extra:
                extra.append(k)
    eff = [k for k in EFFICIENCY_COLS if any(r.columns.get(k) for r in rows)]
    inf_metric = "dice" if protocol == "paper" else "dsc"
    with_infarct = bool(((per_case["class_id"].astype(int) == INFARCT) & (per_case["protocol"] == protocol)
                         & (per_case["metric"] == inf_metric) & per_case["method"].isin(methods)).any())
    tau_unit = ""
    if protocol == "strict":
        unit = "/".join(sorted(set(data_p["unit"].astype(str)))) if "unit" in data_p else "px"
        taus = sorted(set(data_p["tau"].astype(float))) if "tau" in data_p else [math.nan]
        tau_unit = f"τ={'/'.join(f'{t:g}' for t in taus)} {unit}"
    header = ["Method", *extra]
    for m, name, hib in metric_cols:
        label = name
        if m == "hd95":
            label = f"HD95 ({unit})"
        elif m == "nsd":
            label = f"NSD ({tau_unit})"
        header.append(f"{label} {_arrow(hib)}")
    pos_name = "Dice" if protocol == "paper" else "DSC"
    count_cols = (["n_hsd"] if protocol == "paper" else []) + [f"{pos_name} MVO+ ↑", "Scans w/ MVO pred."]
    count_cols += [f"{pos_name} infarct ↑"] if with_infarct else []
    header += count_cols
    others = [m for m in methods if m != ours]
    p_cols = P_COLS[protocol] if ours is not None and others else ()
    header += [f"p {name} (Holm)" for _, name in p_cols]
    header += eff

    pstats = None
    if p_cols:
        pstats = paired_stats(data_p, ours, metrics=[m for m, _ in p_cols], protocol=protocol, class_id=MVO,
                              baselines=others, n_resamples=0)

    body: list[list[Cell]] = []
    metric_values: dict[str, list[float | None]] = {m: [] for m, _, _ in metric_cols}
    pos_key = "dice_pos" if protocol == "paper" else "dsc_pos"
    metric_values[pos_key] = []
    metric_values["infarct"] = []
    for r in rows:
        st = _method_stats(data_p, summary, r.method, protocol)
        cells = [Cell(r.label)] + [Cell(r.columns.get(k, "")) for k in extra]
        for m, _, _ in metric_cols:
            mean, sd, ns = st.get(m, (math.nan, math.nan, 1))
            cells.append(Cell(format_value(mean, sd, ns)))
            metric_values[m].append(mean)
        if protocol == "paper":
            cells.append(Cell(format_count(st.get("n_hsd", (math.nan,))[0])))
        mean_pos = st.get(pos_key, (math.nan,))[0]
        metric_values[pos_key].append(mean_pos)
        cells.append(Cell(format_value(mean_pos)))
        cells.append(Cell(format_count(st.get("n_pred_scans", (math.nan,))[0])))
        if with_infarct:
            inf = infarct_dice(per_case, r.method, protocol)
            metric_values["infarct"].append(inf)
            cells.append(Cell(format_value(inf)))
        for m, _ in p_cols:
            if r.method == ours:
                cells.append(Cell("—"))
            else:
                hit = pstats[(pstats["metric"] == m) & (pstats["method_b"] == r.method)]
                cells.append(Cell(format_p(float(hit["p_holm"].iloc[0]))))
        cells += [Cell(r.columns.get(k, "")) for k in eff]
        body.append(cells)
    first_metric = 1 + len(extra)
    for j, (m, _, hib) in enumerate(metric_cols):
        _bold_best(body, first_metric + j, metric_values[m], hib)
    _bold_best(body, header.index(f"{pos_name} MVO+ ↑"), metric_values[pos_key], True)
    if with_infarct:
        _bold_best(body, header.index(f"{pos_name} infarct ↑"), metric_values["infarct"], True)

    # reference row: no MVO predicted anywhere
    ref = no_mvo_scores(data)
    cells = [Cell(NO_MVO)] + [Cell("") for _ in extra]
    cells += [Cell(format_value(ref.get(m, math.nan))) for m, _, _ in metric_cols]
    if protocol == "paper":
        cells.append(Cell("0"))
    cells += [Cell(format_value(ref[pos_key])), Cell("0")] + ([Cell("")] if with_infarct else [])
    cells += [Cell("") for _ in p_cols] + [Cell("") for _ in eff]
    body.append(cells)

    for label, cols, values in paper_rows:
        cells = [Cell(label)] + [Cell(cols.get(k, "")) for k in extra]
        cells += [Cell(format_value(values[m])) for m, _, _ in metric_cols]
        cells += [Cell("") for _ in count_cols] + [Cell("") for _ in p_cols] + [Cell("") for _ in eff]
        body.append(cells)

    n_scans = int(data_p["scan_id"].nunique())
    n_pos = int(data_p.loc[data_p["n_gt"] > 0, "scan_id"].nunique())
    seeds = data_p.groupby("method")["seed"].nunique()
    notes = [f"Class 3 (MVO); {n_scans} test scans ({n_pos} MVO-positive); split {split or 'unknown'}."]
    if protocol == "paper":
        notes.append("Paper protocol (the authors' evaluation): per-scan Dice, Jaccard, precision, recall averaged over "
                     "all scans (0/0 scores 1; precision 1 on an empty prediction); HSD = directed pred→GT maximum edge "
                     "distance in pixels, averaged over the n_hsd scans where both masks are non-empty (1.0 if none).")
    else:
        notes.append(f"Strict protocol (Metrics Reloaded): per-scan values with the empty-mask policy (miss/false "
                     f"positive: 0, distances the image diagonal; both empty: 1, distance 0), mean over all scans; "
                     f"HD95 = max of the two directed 95th percentiles; NSD at {tau_unit}; detection = scan-level "
                     f"MVO presence.")
    notes.append(f"{pos_name} MVO+: mean over MVO-positive scans only; Scans w/ MVO pred.: scans with any predicted MVO."
                 + (f" {pos_name} infarct: class 2 (infarct), mean over all scans{_infarct_floor(per_case, protocol)}."
                    if with_infarct else ""))
    if eff:
        notes.append("Efficiency (from each row's run.json): parameters, forward GFLOPs per clip at the run's grid and T, "
                     "training seconds per optimiser step, peak training memory (GPU: CUDA max allocated; CPU: peak RSS "
                     "of the process), test inference ms per clip.")
    if (seeds > 1).any():
        notes.append("Mean ± SD over seeds (SD of seed-level means, ddof 1); counts are per-seed averages.")
    notes.append(f"{NO_MVO}: predicting no MVO on any scan (from the ground truth, no training)"
                 + ("; its HSD is the authors' 1.0 placeholder for n_hsd = 0." if protocol == "paper" else "."))
    if p_cols:
        lab = {r.method: r.label for r in rows}
        notes.append(f"p: two-sided Wilcoxon signed-rank test per scan (seed-averaged) of {lab[ours]} vs each row, "
                     f"Holm-adjusted over {len(others)} row(s) × {', '.join(n for _, n in p_cols)}.")
        if kind == "table1" and protocol == "paper" and others:
            best = max(others, key=lambda m: _method_stats(data_p, summary, m, protocol).get("dice", (-1.0,))[0])
            parts = []
            for m, name in p_cols:
                hit = pstats[(pstats["metric"] == m) & (pstats["method_b"] == best)]
                parts.append(f"{name} {format_p(float(hit['p_raw'].iloc[0]))}")
            notes.append(f"{lab[ours]} vs the best baseline {lab[best]} (highest mean Dice), raw p: {', '.join(parts)}.")
    if paper_rows:
        notes.append("† Published numbers of the paper, on a different, private cohort: not comparable with the rows above.")
    proto_name = "paper protocol" if protocol == "paper" else "strict protocol"
    return Table(f"{TITLES[kind]} ({proto_name})", protocol, header, body, notes)


# --------------------------------------------------------------------------- rendering


def render_csv(table: Table) -> str:
    """CSV: a ``Protocol`` column plus the header; plain cells (no bold markup)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["Protocol", *table.header])
    for row in table.rows:
        w.writerow([table.protocol, *(c.text for c in row)])
    return buf.getvalue()


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|")


def render_markdown(table: Table) -> str:
    """GitHub Markdown: bold title, pipe table (best values bold), notes as a list."""
    lines = [f"**{table.title}**", ""]
    lines.append("| " + " | ".join(_md_escape(h) for h in table.header) + " |")
    lines.append("|" + "|".join([":---"] + ["---:"] * (len(table.header) - 1)) + "|")
    for row in table.rows:
        cells = [f"**{_md_escape(c.text)}**" if c.bold and c.text else _md_escape(c.text) for c in row]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    lines += [f"- {n}" for n in table.notes]
    return "\n".join(lines) + "\n"


_TEX_CHARS = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
              "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}
_TEX_SYMBOLS = {"±": r"$\pm$", "↑": r"$\uparrow$", "↓": r"$\downarrow$", "✓": r"\checkmark{}", "✗": r"$\times$",
                "†": r"$^\dagger$", "τ": r"$\tau$", "→": r"$\rightarrow$", "—": "---", "×": r"$\times$",
                "<": r"$<$", "≠": r"$\neq$", "∅": r"$\emptyset$"}


def tex_escape(text: str) -> str:
    """Escape LaTeX special characters and map the table's symbols to LaTeX."""
    return "".join(_TEX_SYMBOLS.get(ch, _TEX_CHARS.get(ch, ch)) for ch in text)


def render_latex(table: Table, label: str) -> str:
    """LaTeX ``table`` with a booktabs ``tabular`` (needs booktabs, amssymb for ✓, graphicx for resizebox)."""
    spec = "l" + "c" * (len(table.header) - 1)
    out = [
        f"% generated by ssnet tables ({table.protocol} protocol); needs \\usepackage{{booktabs,amssymb,graphicx}}",
        r"\begin{table}[t]",
        r"\centering",
        rf"\caption{{{tex_escape(table.title)}}}",
        rf"\label{{tab:{label}}}",
        r"\resizebox{\textwidth}{!}{%",
        rf"\begin{{tabular}}{{{spec}}}",
        r"\toprule",
        " & ".join(tex_escape(h) for h in table.header) + r" \\",
        r"\midrule",
    ]
    in_paper = False
    for row in table.rows:
        is_paper = row[0].text.endswith("(paper†)")
        if row[0].text == NO_MVO or (is_paper and not in_paper):
            out.append(r"\midrule")
        in_paper = is_paper
        cells = [rf"\textbf{{{tex_escape(c.text)}}}" if c.bold and c.text else tex_escape(c.text) for c in row]
        out.append(" & ".join(cells) + r" \\")
    out += [r"\bottomrule", r"\end{tabular}}", r"\par\smallskip\footnotesize"]
    out += [tex_escape(n) + r"\par" for n in table.notes]
    out.append(r"\end{table}")
    return "\n".join(out) + "\n"


def write_table(
    kind: str,
    per_case: pd.DataFrame,
    rows: Sequence[TableRow],
    ours: str | None,
    out_dir: str | Path,
    stem: str,
    with_paper: bool = False,
    *,
    paper_dir: str | Path | None = None,
) -> dict[str, Path]:
    """Write ``<stem>.{csv,md,tex}`` (paper protocol) and, when the per-case data has strict rows,
    ``<stem>_strict.{csv,md,tex}``, atomically.

    Returns:
        ``{"csv", "md", "tex"}`` (and ``"strict_csv"``, ``"strict_md"``, ``"strict_tex"``) → paths.
    """
    out_dir = Path(out_dir)
    protocols = [p for p in ("paper", "strict") if (per_case["protocol"] == p).any()]
    if not protocols:
        raise SsnetError("per-case data has no paper or strict rows")
    written: dict[str, Path] = {}
    for protocol in protocols:
        table = build_table(kind, per_case, rows, ours, protocol, with_paper=with_paper, paper_dir=paper_dir)
        name = stem if protocol == "paper" else f"{stem}_strict"
        prefix = "" if protocol == "paper" else "strict_"
        for fmt, text in (("csv", render_csv(table)), ("md", render_markdown(table)),
                          ("tex", render_latex(table, name))):
            path = out_dir / f"{name}.{fmt}"
            atomic_write_text(path, text)
            written[f"{prefix}{fmt}"] = path
    return written


# --------------------------------------------------------------------------- CLI


def _registry_info(method: str) -> tuple[str, str]:
    """(label, Image/Video) from the model registry; (method, "") when not registered."""
    try:
        from ssnet import registry

        entry = registry.get(method)
    except (KeyError, ImportError):
        return method, ""
    return entry.label, entry.kind.capitalize()


def default_row(kind: str, method: str) -> TableRow:
    """A row when no rows CSV is given: Table 2 takes label and ablation flags from ``configs/model/<method>.yaml``
    (as ``reproduce`` does), the other tables the registry's label and Image/Video kind."""
    if kind == "table2":
        from ssnet.engine.config import CONFIG_DIR
        from ssnet.experiments import table2_job

        if (CONFIG_DIR / "model" / f"{method}.yaml").exists():
            job = table2_job(method)
            return TableRow(method, job.label, job.columns)
        return TableRow(method, method, {})
    label, input_kind = _registry_info(method)
    return TableRow(method, label, {INPUT_COL: input_kind} if kind == "table1" else {})


def pick_methods(files: list[tuple[str, pd.DataFrame]], methods: list[str]) -> list[tuple[str, pd.DataFrame]]:
    """Keep ``methods`` only, each from the first file that has it (said on stderr); a method in no file is an error."""
    picked, taken = [], set()
    for path, df in files:
        keep = [m for m in methods if m not in taken and (df["method"] == m).any()]
        for m in keep:
            print(f"{m}: from {path}", file=sys.stderr)
        taken.update(keep)
        picked.append((path, df[df["method"].isin(keep)]))
    missing = [m for m in methods if m not in taken]
    if missing:
        raise SsnetError(f"--methods: {', '.join(missing)} in none of the per-case files ({', '.join(f for f, _ in files)})")
    return picked


def rows_from_csv(path: str | Path) -> list[TableRow]:
    """Rows from a CSV with columns ``method``, ``label`` (optional) and any extra text columns."""
    path = Path(path)
    if not path.is_file():
        raise input_error(path, "file not found")
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    if "method" not in df.columns:
        raise input_error(path, "rows CSV needs a 'method' column")
    extra = [c for c in df.columns if c not in ("method", "label")]
    return [TableRow(r["method"], r.get("label") or r["method"], {c: r[c] for c in extra}) for _, r in df.iterrows()]


def rows_frame(rows: Sequence[TableRow]) -> pd.DataFrame:
    """The table rows (method, label, extra columns) as written to ``<kind>_rows.csv``."""
    keys: list[str] = []
    for r in rows:
        keys += [k for k in r.columns if k not in keys]
    return pd.DataFrame([{"method": r.method, "label": r.label, **{k: r.columns.get(k, "") for k in keys}} for r in rows],
                        columns=["method", "label", *keys])


def write_bundle(kind: str, per_case: pd.DataFrame, rows: Sequence[TableRow], ours: str | None, out_dir: str | Path,
                 stem: str | None = None, with_paper: bool = False) -> dict[str, Path]:
    """Everything ``reproduce`` commits for one table: the pooled per-case CSV (gzipped), the summary, the rows
    CSV, the table (paper and strict protocols) and, when there is an ``ours`` row and another row, the paired
    statistics of ``ours`` against every row. ``ssnet tables --bundle`` calls it on per-case CSVs merged from
    several runs (e.g. seeds run on different days), ``reproduce`` on the runs it has just made."""
    out_dir, stem = Path(out_dir), stem or kind
    out_dir.mkdir(parents=True, exist_ok=True)
    written = {"per_case": out_dir / f"{stem}_per_case.csv.gz", "summary": out_dir / f"{stem}_summary.csv",
               "rows": out_dir / f"{stem}_rows.csv"}
    atomic_write_csv(per_case, written["per_case"])
    atomic_write_csv(summarize(per_case), written["summary"])
    atomic_write_csv(rows_frame(rows), written["rows"])
    written.update(write_table(kind, per_case, rows, ours, out_dir, stem=stem, with_paper=with_paper))
    if ours is not None and len(rows) > 1:
        written["stats"] = out_dir / f"{stem}_stats.csv"
        both = [paired_stats(per_case, ours, protocol=p) for p in ("paper", "strict")]
        atomic_write_csv(pd.concat(both, ignore_index=True), written["stats"])
    return written


def main(argv: list[str]) -> int:
    """``ssnet tables``: write a paper table (CSV, Markdown, LaTeX) from per-case CSVs."""
    from ssnet.evaluation.score import read_per_case

    p = argparse.ArgumentParser(prog="ssnet tables", description="Write Table 1/2/3 from per-case CSVs.")
    p.add_argument("--kind", required=True, choices=list(KINDS))
    p.add_argument("--per-case", nargs="+", required=True, help="per_case.csv files (methods × seeds)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--stem", default=None, help="file name stem (default: the kind)")
    p.add_argument("--ours", default=None, help="method tested against every row (default: ssnet when present)")
    p.add_argument("--rows", nargs="+", default=None,
                   help="CSVs with columns method, label, extra columns (row order; a later file adds the methods "
                        "the earlier ones lack, e.g. an extra row run by a separate reproduce call)")
    p.add_argument("--methods", default=None,
                   help="comma-separated methods to keep, in this row order; each is taken from the first per-case "
                        "file that has it (e.g. Table 2's rows from one file and an extra row from another)")
    p.add_argument("--with-paper", action="store_true", help="add the paper's published numbers (private cohort)")
    p.add_argument("--bundle", action="store_true",
                   help="also write what reproduce writes beside the table: the pooled per-case CSV (.csv.gz), "
                        "summary, rows CSV and paired statistics (e.g. to pool seeds from separate reproduce calls)")
    a = p.parse_args(argv)
    files = [(f, read_per_case(f)) for f in a.per_case]
    methods = [m for m in (a.methods or "").split(",") if m]
    if methods:
        files = pick_methods(files, methods)
    per_case = pd.concat([df for _, df in files], ignore_index=True)
    dup = per_case.duplicated(["method", "seed", "protocol", "scan_id", "class_id", "metric"])
    if dup.any():
        r = per_case[dup].iloc[0]
        raise SsnetError(f"the per-case files overlap: method {r['method']!r} seed {r['seed']} appears twice")
    if a.rows:
        merged: dict[str, TableRow] = {}
        for path in a.rows:
            for row in rows_from_csv(path):
                merged.setdefault(row.method, row)  # the first file that lists a method gives its row
        rows = list(merged.values())
    else:
        rows = [default_row(a.kind, m) for m in (methods or dict.fromkeys(per_case["method"].astype(str)))]
    ours = a.ours
    if ours is None and "ssnet" in {r.method for r in rows}:
        ours = "ssnet"
    if a.bundle:
        written = write_bundle(a.kind, per_case, rows, ours, a.out, a.stem, with_paper=a.with_paper)
    else:
        written = write_table(a.kind, per_case, rows, ours, a.out, a.stem or a.kind, with_paper=a.with_paper)
    for path in written.values():
        print(path)
    return 0
