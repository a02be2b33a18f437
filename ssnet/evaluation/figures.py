"""Paper-style figures from the runs and per-case CSVs of one profile (matplotlib, Agg backend).

``ssnet figures [--profile quick] [--results results/<profile>]`` (``./reproduce.sh figures``) writes
PNGs under ``<results>/figures/``:

* ``fig3_panel.png`` (needs Table 1 runs): a Fig. 3-style panel. Rows: four test scans chosen by a
  fixed rule from SSNet's seed-0 paper-protocol MVO Dice: the two MVO-positive scans with the largest
  ground-truth MVO area, the first MVO-negative scan (scan id order), and the remaining scan whose
  SSNet Dice is the (lower) median over the test scans. Columns: the ED frame (frame 0), the ES frame
  (the clip frame that differs most from ED), the ground truth and each Table 1 method's prediction
  (seed 0, overlaid on ED; myocardium green, infarct yellow, MVO red), and SSNet's uncertainty map U
  (``SegOutput.aux["uncertainty"]``, from the run's best checkpoint re-run on the four clips; colours scaled
  per scan, the range printed under each map).
* ``mvo_dice_boxplot.png`` (Table 1): per-scan Dice on MVO-positive scans per method (seed-averaged),
  one box per method, annotated with the Holm-adjusted Wilcoxon p of the table's statistics
  (``table1_stats.csv``: SSNet vs the method, paper protocol, Dice over all scans).
* ``frames_sweep.png`` (Table 3): Dice and MVO-positive Dice against T with 95 % confidence intervals
  over scans (mean ± 1.96 · SD / √n of the seed-averaged per-scan values).
* ``ablation_bars.png`` (Table 2): Dice and MVO-positive Dice of each ablation row, same intervals.

A figure whose table has not been run is skipped with one line naming the command to run first.
"""
from __future__ import annotations

import argparse
import math
import re
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from ssnet.errors import SsnetError

MVO = 3
COLORS = {1: (0.2, 0.8, 0.2), 2: (1.0, 0.85, 0.0), 3: (0.9, 0.1, 0.1)}


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def scan_values(per_case: pd.DataFrame, metric: str = "dice", protocol: str = "paper", class_id: int = MVO,
                positive_only: bool = False) -> pd.DataFrame:
    """Seed-averaged per-scan values: columns method, scan_id, value."""
    r = per_case[(per_case["protocol"] == protocol) & (per_case["class_id"].astype(int) == class_id)
                 & (per_case["metric"] == metric)]
    if positive_only:
        r = r[r["n_gt"] > 0]
    return r.groupby(["method", "scan_id"], sort=False)["value"].mean().reset_index()


def mean_ci(values: np.ndarray) -> tuple[float, float]:
    """(mean, half-width of the normal-approximation 95 % CI) over scans."""
    v = np.asarray(values, float)
    v = v[~np.isnan(v)]
    if v.size == 0:
        return math.nan, math.nan
    half = 1.96 * v.std(ddof=1) / math.sqrt(v.size) if v.size > 1 else 0.0
    return float(v.mean()), float(half)


def _labels(results: Path, kind: str, methods: list[str]) -> dict[str, str]:
    rows = results / f"{kind}_rows.csv"
    if rows.is_file():
        df = pd.read_csv(rows, dtype=str, keep_default_na=False)
        return {m: lab for m, lab in zip(df["method"], df["label"])} | {m: m for m in methods if m not in set(df["method"])}
    return {m: m for m in methods}


def _order(per_case: pd.DataFrame, results: Path, kind: str) -> list[str]:
    rows = results / f"{kind}_rows.csv"
    present = list(dict.fromkeys(per_case["method"].astype(str)))
    if rows.is_file():
        listed = [m for m in pd.read_csv(rows, dtype=str)["method"] if m in present]
        return listed + [m for m in present if m not in listed]
    return present


# --------------------------------------------------------------------------- (b) box plots


def mvo_boxplot(per_case: pd.DataFrame, stats: pd.DataFrame | None, labels: dict[str, str], order: list[str],
                out: Path, ours: str = "ssnet") -> Path:
    plt = _plt()
    vals = scan_values(per_case, positive_only=True)
    data = [vals.loc[vals["method"] == m, "value"].to_numpy() for m in order]
    fig, ax = plt.subplots(figsize=(max(6.0, 1.3 * len(order) + 2), 4.2))
    ax.boxplot(data, showmeans=True)
    ax.set_xticks(range(1, len(order) + 1), [labels.get(m, m) for m in order], rotation=20, ha="right")
    ax.set_ylabel("Dice on MVO-positive scans (per scan)")
    ax.set_ylim(-0.05, 1.12)
    for i, m in enumerate(order, 1):
        text = "ours" if m == ours else ""
        if stats is not None and m != ours:
            hit = stats[(stats["protocol"] == "paper") & (stats["metric"] == "dice") & (stats["method_a"] == ours)
                        & (stats["method_b"] == m)]
            if len(hit):
                from ssnet.evaluation.tables import format_p

                p = format_p(float(hit["p_holm"].iloc[0]))
                text = f"p {p}" if p.startswith("<") else f"p = {p}"
        ax.text(i, 1.06, text, ha="center", fontsize=8)
    n = vals["scan_id"].nunique()
    ax.set_title(f"Dice on the {n} MVO-positive test scans (box: quartiles, ▲ mean)\n"
                 f"p: Holm-adjusted Wilcoxon, {labels.get(ours, ours)} vs the method (Table 1, Dice)", fontsize=9)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


# --------------------------------------------------------------------------- (c), (d) intervals


def _dice_pair(per_case: pd.DataFrame, methods: list[str]) -> tuple[list, list]:
    allv, posv = scan_values(per_case), scan_values(per_case, positive_only=True)
    dice = [mean_ci(allv.loc[allv["method"] == m, "value"]) for m in methods]
    pos = [mean_ci(posv.loc[posv["method"] == m, "value"]) for m in methods]
    return dice, pos


def frames_sweep(per_case: pd.DataFrame, frames: dict[str, int], out: Path) -> Path:
    plt = _plt()
    methods = sorted(frames, key=frames.get)
    dice, pos = _dice_pair(per_case, methods)
    t = [frames[m] for m in methods]
    fig, ax = plt.subplots(figsize=(5, 3.6))
    for series, name, marker in ((dice, "Dice (all scans)", "o"), (pos, "Dice (MVO-positive scans)", "s")):
        ax.errorbar(t, [s[0] for s in series], yerr=[s[1] for s in series], marker=marker, capsize=4, label=name)
    ax.set_xlabel("input frames T")
    ax.set_xticks(t)
    ax.set_ylabel("MVO Dice (mean, 95 % CI over scans)")
    ax.set_ylim(0, 1.05)
    ax.legend(fontsize=8)
    ax.set_title("SSNet: number of input frames", fontsize=10)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def ablation_bars(per_case: pd.DataFrame, labels: dict[str, str], order: list[str], out: Path) -> Path:
    plt = _plt()
    dice, pos = _dice_pair(per_case, order)
    x = np.arange(len(order))
    fig, ax = plt.subplots(figsize=(1.4 * len(order) + 2, 4))
    for off, series, name in ((-0.2, dice, "Dice (all scans)"), (0.2, pos, "Dice (MVO-positive scans)")):
        ax.bar(x + off, [s[0] for s in series], 0.4, yerr=[s[1] for s in series], capsize=4, label=name)
    ax.set_xticks(x, [labels.get(m, m) for m in order], rotation=20, ha="right")
    ax.set_ylabel("MVO Dice (mean, 95 % CI over scans)")
    ax.set_ylim(0, 1.05)
    ax.legend(fontsize=8)
    ax.set_title("Ablation of the SSNet components", fontsize=10)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


# --------------------------------------------------------------------------- (a) Fig. 3 panel


def choose_scans(ssnet_scans: pd.DataFrame) -> list[str]:
    """The panel's four scans from SSNet's per-scan rows (columns scan_id, value = Dice, n_gt); see the module doc."""
    df = ssnet_scans.sort_values("scan_id").reset_index(drop=True)
    pos = df[df["n_gt"] > 0].sort_values(["n_gt", "scan_id"], ascending=[False, True])
    chosen = list(pos["scan_id"][:2])
    neg = df[df["n_gt"] == 0]
    chosen += list(neg["scan_id"][:1])
    median = float(np.sort(df["value"].to_numpy())[(len(df) - 1) // 2])
    rest = df[~df["scan_id"].isin(chosen)].copy()
    if len(rest):
        rest["gap"] = (rest["value"] - median).abs()
        chosen.append(rest.sort_values(["gap", "scan_id"])["scan_id"].iloc[0])
    return chosen


def find_run(runs_root: Path, method: str, profile: str, seed: int, config_hash: str) -> Path | None:
    """The finished run folder of (method, seed) with this config hash (``name``, ``name-2``, … newest first)."""
    from ssnet.engine.runs import read_run

    name = f"{method}-{profile}-s{seed}-{config_hash}"
    cands = sorted(runs_root.glob(f"{name}*"), key=lambda p: p.stat().st_mtime, reverse=True)
    for d in cands:
        info = read_run(d)
        if info.get("status") == "done" and info.get("config_hash") == config_hash:
            return d
    return None


def _overlay(ax, image: np.ndarray, label: np.ndarray | None) -> None:
    ax.imshow(image, cmap="gray", interpolation="nearest")
    if label is not None:
        rgba = np.zeros((*label.shape, 4))
        for c, col in COLORS.items():
            rgba[label == c] = (*col, 0.55)
        ax.imshow(rgba, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])


def fig3_panel(per_case: pd.DataFrame, runs_root: Path, labels: dict[str, str], order: list[str], out: Path,
               ours: str = "ssnet") -> Path:
    """The Fig. 3-style panel (see the module doc)."""
    import torch
    from omegaconf import OmegaConf

    from ssnet.data.dataset import CineDataset
    from ssnet.engine.config import build_model
    from ssnet.engine.train import clip_config
    from ssnet.io import load_nifti

    plt = _plt()
    first = per_case[(per_case["protocol"] == "paper") & (per_case["class_id"].astype(int) == MVO)
                     & (per_case["metric"] == "dice")]
    seed = int(first["seed"].min())
    first = first[first["seed"] == seed]
    runs = {}
    for m in order:
        rows = first[first["method"] == m]
        if rows.empty:
            continue
        profile = _profile_of(runs_root)
        d = find_run(runs_root, m, profile, seed, str(rows["config_hash"].iloc[0]))
        if d is None:
            raise SsnetError(f"{runs_root}: run folder of {m} seed {seed} not found (run its table first)")
        runs[m] = d
    if ours not in runs:
        raise SsnetError(f"{runs_root}: no {ours} run (the panel needs SSNet's predictions and checkpoint)")
    scans = choose_scans(first[first["method"] == ours][["scan_id", "value", "n_gt"]])
    cfg = OmegaConf.load(runs[ours] / ".hydra" / "config.yaml")
    from ssnet.engine.runs import read_run

    data_dir = read_run(runs[ours]).get("data_dir") or cfg.data.dir
    ds = CineDataset(data_dir, "test", clip_config(cfg), max_scans=cfg.data.get("max_scans"))
    index = {s.scan_id: i for i, s in enumerate(ds.scans)}
    idx = [index[s] for s in scans]
    model = build_model(cfg)
    ckpt = read_run(runs[ours]).get("best_checkpoint") or "checkpoints/best.ckpt"
    state = torch.load(runs[ours] / ckpt, map_location="cpu", weights_only=False)["state_dict"]
    model.load_state_dict({k.removeprefix("model."): v for k, v in state.items() if k.startswith("model.")})
    model.eval()
    from ssnet.models.base import as_output

    with torch.inference_mode():
        out_aux = as_output(model(ds.frames[idx])).aux
    unc = out_aux.get("uncertainty")
    methods = [m for m in order if m in runs]
    cols = ["ED", "ES", "GT"] + [labels.get(m, m) for m in methods] + [f"{labels.get(ours, ours)} uncertainty"]
    fig, axes = plt.subplots(len(scans), len(cols), figsize=(1.9 * len(cols), 1.9 * len(scans) + 0.4), squeeze=False)
    for r, (scan, i) in enumerate(zip(scans, idx)):
        clip = ds.frames[i, :, 0].numpy()
        es = int(np.argmax(np.abs(clip - clip[0]).reshape(len(clip), -1).sum(1)))
        gt = ds.labels[i].numpy()
        _overlay(axes[r, 0], clip[0], None)
        _overlay(axes[r, 1], clip[es], None)
        _overlay(axes[r, 2], clip[0], gt)
        for c, m in enumerate(methods, 3):
            pred = load_nifti(runs[m] / "predictions" / f"{scan}.nii.gz")[0]  # on the native grid
            pred = ds.geometries[i].label_forward(np.asarray(pred).astype(int))  # onto the model's field of view
            _overlay(axes[r, c], clip[0], pred)
        ax = axes[r, -1]
        if unc is not None:
            u = unc[r, 0].float().numpy()
            ax.imshow(u, cmap="magma", interpolation="nearest")  # scaled per scan: the range is printed below
            ax.set_xlabel(f"U {u.min():.2f}–{u.max():.2f}", fontsize=6)
        ax.set_xticks([])
        ax.set_yticks([])
        n_gt = int(first[(first["method"] == ours) & (first["scan_id"] == scan)]["n_gt"].iloc[0])
        axes[r, 0].set_ylabel(f"{scan}\nMVO {n_gt} px", fontsize=7)
        axes[r, 1].set_xlabel(f"frame {es}", fontsize=6)
    for c, name in enumerate(cols):
        axes[0, c].set_title(name, fontsize=8)
    fig.suptitle("MVO segmentation on test scans (green myocardium, yellow infarct, red MVO; labels at ED)", fontsize=9)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def _profile_of(runs_root: Path) -> str:
    return runs_root.parent.name


# --------------------------------------------------------------------------- driver


def make_figures(results: Path, profile: str | None = None) -> tuple[list[Path], list[str]]:
    """Every figure whose inputs exist under ``results``; returns (written PNGs, lines about missing inputs)."""
    from ssnet.evaluation.score import read_per_case

    profile = profile or results.name
    out_dir = results / "figures"
    out_dir.mkdir(parents=True, exist_ok=True)
    written, missing = [], []

    def need(kind: str, what: str) -> pd.DataFrame | None:
        path = results / f"{kind}_per_case.csv.gz"
        if not path.exists():  # uncompressed, as written before per-case tables were gzipped
            path = results / f"{kind}_per_case.csv"
        if not path.is_file():
            missing.append(f"{what}: needs {kind}; run `./reproduce.sh {kind} --profile {profile}` first ({path} missing)")
            return None
        return read_per_case(path)

    t1 = need("table1", "fig3_panel.png and mvo_dice_boxplot.png")
    if t1 is not None:
        order = _order(t1, results, "table1")
        labels = _labels(results, "table1", order)
        stats_path = results / "table1_stats.csv"
        stats = pd.read_csv(stats_path) if stats_path.is_file() else None
        written.append(mvo_boxplot(t1, stats, labels, order, out_dir / "mvo_dice_boxplot.png"))
        try:
            written.append(fig3_panel(t1, results / "runs", labels, order, out_dir / "fig3_panel.png"))
        except SsnetError as exc:
            missing.append(f"fig3_panel.png: {exc}; run `./reproduce.sh table1 --profile {profile}` first")
    t2 = need("table2", "ablation_bars.png")
    if t2 is not None:
        order = _order(t2, results, "table2")
        written.append(ablation_bars(t2, _labels(results, "table2", order), order, out_dir / "ablation_bars.png"))
    t3 = need("table3", "frames_sweep.png")
    if t3 is not None:
        frames = {}
        for m in dict.fromkeys(t3["method"].astype(str)):
            hit = re.search(r"_T(\d+)$", m)
            if hit:
                frames[m] = int(hit.group(1))
        written.append(frames_sweep(t3, frames, out_dir / "frames_sweep.png"))
    return written, missing


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="ssnet figures", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--profile", default="quick", help="profile whose results are drawn (default quick)")
    p.add_argument("--results", type=Path, default=None, help="results folder (default results/<profile>)")
    a = p.parse_args(argv)
    results = a.results or Path("results") / a.profile
    written, missing = make_figures(results, a.profile)
    for path in written:
        print(path)
    for line in missing:
        print(f"ssnet figures: {line}", file=sys.stderr)
    if not written:
        return 3
    return 0
