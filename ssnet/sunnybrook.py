"""Real-data benchmark: UNet and SSNet on the Sunnybrook patients, LV myocardium on the native grid.

``ssnet reproduce sunnybrook [--profile quick] [--folds 1] [--src ../shared/data/sunnybrook]
[--data DIR] [--out results/sunnybrook] [overrides ...]`` (``./reproduce.sh sunnybrook``):

1. imports the patients once (``ssnet import sunnybrook`` → ``data/sunnybrook``) unless ``--data`` names
   a dataset in the contract;
2. patient-wise folds: fold k tests patient k, validates on patient k+1 and trains on the rest
   (patients in sorted order; ``--folds N`` rotates the test patient). Each fold is a small dataset
   folder (manifest pointing at the shared files + its own split.csv) under ``<out>/folds/``;
3. settings are chosen without the held-out patient: the field of view in mm is the finest of
   ``SPACING_CANDIDATES`` at which none of the training and validation myocardium falls outside the
   ``data.size`` crop; the best checkpoint is the lowest validation loss; with ``--grid KEY=V1,V2``
   (e.g. ``--grid train.lr=1e-4,1e-3``) every combination is trained and the one with the best
   myocardium Dice of the validation patient, pooled over its slices (``ssnet predict --split val`` +
   the scorer; the per-slice mean is reported beside it), is kept;
4. trains UNet and SSNet (K = 4 as in the paper; this data only has classes 0/1), predicts the test
   patient on the native grid and scores class 1 (LV myocardium) with the shared scorer; with ``--refit``
   the chosen settings are trained once more on the training and validation patients together (final
   weights: ``train.fit_parts=[train,val] train.checkpoint=last``) and that run is tested; with ``--seeds 0,1,2``
   the grid runs at the first seed, the chosen settings are trained once per seed and the test patient is
   predicted by their ensemble (softmax averaged; each seed's own Dice is reported beside it); ``--tta flip``
   predicts validation (the choice) and test with test-time flips;
5. writes ``<out>/sunnybrook.csv`` / ``.md`` (Dice, HD95 per method and fold), ``sunnybrook_per_case.csv``,
   ``sunnybrook_grid.csv`` (every grid cell's validation Dice, the chosen one marked) and ``sunnybrook_ed.png``
   (ED frames, expert and predicted contours).
"""
from __future__ import annotations

import argparse
import io
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from ssnet.data.contract import read_manifest, scans, write_manifest
from ssnet.errors import SsnetError, input_error
from ssnet.engine.tuning import parse_grid, train_or_reuse, val_per_case
from ssnet.evaluation.rerun import set_aside
from ssnet.io import atomic_write, atomic_write_csv, atomic_write_text

REPO = Path(__file__).resolve().parents[1]
DEFAULT_SRC = REPO.parent / "shared" / "data" / "sunnybrook"
SPACING_CANDIDATES = (1.607143, 1.8, 2.0, 2.2, 2.5)  # mm; the first is the quick profile's (103 mm at 64 px)
MODELS = (("unet", "UNet (frames as channels)"), ("ssnet", "SSNet"))
MYO = 1
REFIT_OVERRIDES = ("train.fit_parts=[train,val]", "train.checkpoint=last")


def ensure_import(src: Path, data_dir: Path) -> None:
    """``ssnet import sunnybrook SRC --out data_dir`` once (a dataset already there is reused, unless an older
    importer wrote it with 0-based contour coordinates: then it is imported again, saying so)."""
    import json

    from ssnet.data.importers.sunnybrook import CONTOUR_ORIGIN, import_sunnybrook

    force = False
    if (data_dir / "manifest.csv").exists():
        try:
            origin = json.loads((data_dir / "dataset.json").read_text()).get("contour_origin", 0.0)
        except (OSError, ValueError):
            origin = None
        if origin == CONTOUR_ORIGIN:
            return
        print(f"{data_dir}: imported with contour origin {origin} (an older importer); importing again with "
              f"{CONTOUR_ORIGIN:g}-based contours", file=sys.stderr)
        force = True

    if not Path(src).is_dir():
        raise input_error(src, "Sunnybrook source folder not found (pass --src or --data)")
    start = time.perf_counter()
    info = import_sunnybrook(Path(src), data_dir, None, force=force)
    print(f"imported {info['n_scans']} Sunnybrook scans ({info['n_subjects']} patients) in "
          f"{time.perf_counter() - start:.0f} s", file=sys.stderr)


def fold_split(patients: list[str], fold: int) -> dict[str, str]:
    """Patient → train/val/test for one fold: test = patient ``fold``, val = the next one, train = the rest."""
    n = len(patients)
    if n < 3:
        raise SsnetError(f"a patient-wise train/val/test split needs at least 3 patients, got {n}")
    order = sorted(patients)
    test, val = order[fold % n], order[(fold + 1) % n]
    return {p: "test" if p == test else "val" if p == val else "train" for p in order}


def make_fold(data_dir: Path, fold_dir: Path, fold: int) -> dict[str, str]:
    """Write ``fold_dir/manifest.csv`` (paths into ``data_dir``) and ``split.csv`` for one fold."""
    import os

    manifest = read_manifest(data_dir)
    parts = fold_split(sorted(manifest["subject_id"].unique()), fold)
    rel = Path(os.path.relpath(data_dir.resolve(), fold_dir.resolve()))
    rows = []
    for r in manifest.to_dict("records"):
        r = dict(r)
        r["cine"] = str(rel / r["cine"])
        r["label"] = str(rel / r["label"]) if str(r["label"]).strip() else ""
        rows.append(r)
    fold_dir.mkdir(parents=True, exist_ok=True)
    split = pd.DataFrame({"scan_id": manifest["scan_id"], "subject_id": manifest["subject_id"],
                          "split": manifest["subject_id"].map(parts)})
    new = pd.DataFrame(rows)[list(manifest.columns)]
    if (fold_dir / "split.csv").exists():
        old = pd.read_csv(fold_dir / "split.csv", dtype=str)
        if not old.equals(split.astype(str)):
            raise input_error(fold_dir / "split.csv", "exists with a different split (another dataset?); remove the folder")
    else:
        write_manifest(fold_dir, new.to_dict("records"))
        atomic_write_csv(split, fold_dir / "split.csv")
    return parts


def choose_spacing(fold_dir: Path, size: int, candidates=SPACING_CANDIDATES) -> tuple[float, dict[float, int]]:
    """Finest candidate spacing (mm) at which no train/val myocardium lies outside the ``size`` crop."""
    from ssnet.data.contract import load_label, scans_in_split
    from ssnet.data.dataset import outside_fov_counts
    from ssnet.data.spatial import geometry_for

    labelled = [s for part in ("train", "val") for s in scans_in_split(fold_dir, part)]
    labels = [(s, load_label(s)) for s in labelled]
    missed: dict[float, int] = {}
    for sp in candidates:
        missed[sp] = sum(outside_fov_counts(lab, geometry_for(lab.shape, size, "crop", s.spacing, sp, s.cine))[MYO]
                         for s, lab in labels)
        if missed[sp] == 0:
            return sp, missed
    return min(missed, key=lambda k: (missed[k], k)), missed


def val_dice(run_dir: Path, fold_dir: Path, tta: str = "none") -> tuple[float, float]:
    """LV-myocardium Dice of a finished run on the validation patient: (mean over slices, pooled over the
    patient), predicted with test-time augmentation ``tta``. Predictions are kept in the run folder."""
    df = val_per_case(run_dir, fold_dir, protocol="strict", classes=(MYO,), tta=tta)
    dsc = df[df.metric == "dsc"]
    return float(dsc["value"].mean()), pooled_dice(dsc)


def test_myocardium(run_dirs: list[Path], fold_dir: Path, pred_dir: Path | None = None,
                    tta: str = "none") -> tuple[pd.DataFrame, Path]:
    """Strict per-case LV-myocardium rows of the test patient and the folder of the predictions they score: a
    single run's own test predictions when there is one run and no test-time augmentation, else the ensemble of
    ``run_dirs`` (softmax averaged over runs and ``tta`` transforms) predicted into ``pred_dir``."""
    from ssnet.engine.predict import predict_run
    from ssnet.evaluation.score import read_per_case, score_predictions

    if len(run_dirs) == 1 and tta == "none":
        df, pred_dir = read_per_case(run_dirs[0] / "per_case.csv"), run_dirs[0] / "predictions"
    else:
        if not (pred_dir / ".done").exists():
            predict_run(run_dirs, fold_dir, pred_dir, split="test", force=True, tta=tta)
            atomic_write_text(pred_dir / ".done", "\n".join(r.name for r in run_dirs) + "\n")
        df = score_predictions(fold_dir, pred_dir, split="test", protocol="strict", classes=(MYO,))
    return df[(df["class_id"] == MYO) & (df["protocol"] == "strict")].copy(), pred_dir


def ed_figure(fold_dir: Path, predictions: dict[str, Path], out: Path, n_slices: int = 3) -> None:
    """ED frames of the test patient's middle slices with expert (green) and predicted contours, PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ssnet.data.contract import load_scan, scans_in_split
    from ssnet.io import load_label_map

    test = scans_in_split(fold_dir, "test")
    mid = len(test) // 2
    chosen = test[max(0, mid - n_slices // 2): max(0, mid - n_slices // 2) + n_slices]
    colours = {"unet": "tab:orange", "ssnet": "tab:red"}
    fig, axes = plt.subplots(1, len(chosen), figsize=(4 * len(chosen), 4.3), squeeze=False)
    for ax, scan in zip(axes[0], chosen):
        cine, label = load_scan(scan)
        ys, xs = np.nonzero(label) if label is not None and label.any() else (np.array([cine.shape[1] // 2]), np.array([cine.shape[2] // 2]))
        cy, cx, half = int(ys.mean()), int(xs.mean()), int(max(np.ptp(ys), np.ptp(xs), 40) * 0.9)
        win = (slice(max(cy - half, 0), cy + half), slice(max(cx - half, 0), cx + half))
        ax.imshow(cine[0][win], cmap="gray")
        if label is not None:
            ax.contour(label[win] == MYO, levels=[0.5], colors="lime", linewidths=1.2)
        for key, pred_dir in predictions.items():
            pred = load_label_map(pred_dir / f"{scan.scan_id}.nii.gz")
            ax.contour(pred[win] == MYO, levels=[0.5], colors=colours.get(key, "tab:blue"), linewidths=1.0, linestyles="--")
        ax.set_title(scan.scan_id, fontsize=9)
        ax.axis("off")
    handles = [plt.Line2D([], [], color="lime", label="expert")]
    handles += [plt.Line2D([], [], color=colours.get(k, "tab:blue"), ls="--", label=dict(MODELS).get(k, k)) for k in predictions]
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=9, frameon=False)
    fig.tight_layout(rect=(0, 0.06, 1, 0.96))
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    with atomic_write(out, "wb") as fh:
        fh.write(buf.getvalue())


def pooled_dice(dsc_rows: pd.DataFrame) -> float:
    """One Dice over all slices of a patient from per-slice DSC rows: 2·Σ|P∩G| / (Σ|P| + Σ|G|).

    |P∩G| = DSC·(|P| + |G|)/2 per slice (``n_pred``, ``n_gt``); slices where both are empty add nothing.
    """
    sizes = dsc_rows["n_gt"].astype(float) + dsc_rows["n_pred"].astype(float)
    total = float(sizes.sum())
    return float((dsc_rows["value"].astype(float) * sizes).sum() / total) if total > 0 else 1.0


def _fmt(values: pd.Series, digits: int) -> str:
    v = values.dropna()
    return "n/a" if v.empty else f"{v.mean():.{digits}f} ± {v.std(ddof=0):.{digits}f}"


def run_benchmark(data_dir: Path, out_dir: Path, profile: str = "quick", folds: int = 1, seed: int | list[int] = 0,
                  extra: list[str] | None = None, grid: list[str] | None = None,
                  models: list[str] | None = None, refit: bool = False, tta: str = "none") -> dict[str, Path]:
    """The whole benchmark; returns the written files.

    ``seed``: one seed, or several: the grid is trained with the first, the chosen settings (refit or not) with
    every seed, and the test patient is predicted by their ensemble (softmax averaged); each seed's own test Dice
    is reported beside it. ``tta``: test-time augmentation for validation (the choice) and test alike.
    Earlier benchmark files in ``out_dir`` are moved to ``out_dir/previous/`` before the new ones are written.
    """
    from ssnet.engine.config import compose
    from ssnet.engine.predict import tta_transforms
    from ssnet.engine.runs import read_run

    out_dir = Path(out_dir)
    written = {"csv": out_dir / "sunnybrook.csv", "md": out_dir / "sunnybrook.md",
               "per_case": out_dir / "sunnybrook_per_case.csv", "grid": out_dir / "sunnybrook_grid.csv",
               "figure": out_dir / "sunnybrook_ed.png"}
    if not any(s.label is not None for s in scans(data_dir)):
        raise input_error(data_dir / "manifest.csv", "no labels: the benchmark needs the expert contours")
    seeds = [int(seed)] if isinstance(seed, int) else [int(v) for v in seed]
    if not seeds or len(set(seeds)) != len(seeds):
        raise SsnetError(f"--seeds: give distinct seeds, got {seeds}")
    tta_transforms(tta)
    extra = list(extra or [])
    size = int(compose([f"profile={profile}", *extra]).data.size)
    combos = parse_grid(grid)
    unknown = sorted(set(models or []) - set(dict(MODELS)))
    if unknown:
        raise SsnetError(f"--models: unknown {', '.join(unknown)}; available: {', '.join(dict(MODELS))}")
    chosen_models = [(k, v) for k, v in MODELS if not models or k in models]
    inference = " + ".join(t for t in ((f"ensemble of seeds {','.join(map(str, seeds))}" if len(seeds) > 1 else ""),
                                       (f"TTA {tta}" if tta != "none" else "")) if t) or "single run"
    per_case, rows, grid_rows, fig_preds = [], [], [], {}
    for fold in range(int(folds)):
        fold_dir = out_dir / "folds" / f"fold{fold}"
        parts = make_fold(data_dir, fold_dir, fold)
        test_patient = next(p for p, s in parts.items() if s == "test")
        val_patient = next(p for p, s in parts.items() if s == "val")
        if any(o.startswith("data.spacing_mm=") for o in extra):
            spacing, missed = float(next(o for o in extra if o.startswith("data.spacing_mm=")).split("=", 1)[1]), {}
        else:
            spacing, missed = choose_spacing(fold_dir, size)
        print(f"fold {fold}: test {test_patient}, val {val_patient}; data.spacing_mm={spacing:g} "
              f"(field of view {spacing * size:.0f} mm; train/val myocardium outside it per candidate: {missed})", file=sys.stderr)
        for key, label in chosen_models:
            def base(s: int) -> list[str]:
                return [f"model={key}", f"profile={profile}", f"data.dir={fold_dir.resolve()}",
                        f"data.spacing_mm={spacing}", f"run_root={(out_dir / 'runs').resolve()}", f"seed={s}",
                        f"method={key}", *[o for o in extra if not o.startswith("data.spacing_mm=")]]
            start = time.perf_counter()
            tried = []
            for combo in combos:
                run_dir = train_or_reuse(base(seeds[0]) + combo)
                tried.append((*val_dice(run_dir, fold_dir, tta), combo, run_dir))
                print(f"  {key} {' '.join(combo) or '(profile settings)'}: validation myocardium Dice "
                      f"{tried[-1][0]:.4f} per slice, {tried[-1][1]:.4f} pooled (TTA {tta})", file=sys.stderr)
            best_val, best_val_patient, chosen, grid_run = max(tried, key=lambda t: t[1])  # the patient's Dice
            grid_rows += [{"method": label, "fold": fold, "val_patient": val_patient, "setting": " ".join(c) or "profile",
                           "val_dice": round(v, 4), "val_dice_patient": round(vp, 4), "tta": tta,
                           # the evidence for test-time augmentation, on the validation patient only
                           **({"val_dice_patient_no_tta": round(val_dice(r, fold_dir)[1], 4)} if tta != "none" else {}),
                           "chosen": c == chosen, "run": r.name} for v, vp, c, r in tried]
            # the chosen settings with every seed; with --refit trained on the training and validation patients
            final = [train_or_reuse(base(s) + chosen + list(REFIT_OVERRIDES)) if refit
                     else grid_run if s == seeds[0] else train_or_reuse(base(s) + chosen) for s in seeds]
            single = [pooled_dice(test_myocardium([r], fold_dir)[0].query("metric == 'dsc'")) for r in final]
            pred_dir = fold_dir / "predictions" / f"{key}-seeds{'-'.join(map(str, seeds))}-tta-{tta}"
            df, pred_dir = test_myocardium(final, fold_dir, pred_dir, tta)
            minutes = (time.perf_counter() - start) / 60
            info = read_run(final[0])
            df["fold"] = fold
            per_case.append(df)
            dsc, hd95 = df[df.metric == "dsc"]["value"], df[df.metric == "hd95"]["value"]
            patient = pooled_dice(df[df.metric == "dsc"])
            rows.append({"method": label, "fold": fold, "test_patient": test_patient, "val_patient": val_patient,
                         "chosen": " ".join(chosen) or "profile", "val_dice": round(best_val, 4), "val_dice_patient": round(best_val_patient, 4),
                         "trained_on": f"{len(parts) - 1} patients (train + val, refit)" if refit else f"{len(parts) - 2} patients (train)",
                         "inference": inference, "seeds": ",".join(map(str, seeds)), "tta": tta,
                         "n_test_scans": int(df.scan_id.nunique()), "dice_mean": round(float(dsc.mean()), 4),
                         "dice_sd": round(float(dsc.std(ddof=0)), 4), "dice_patient": round(patient, 4),
                         "dice_patient_per_seed": " / ".join(f"{v:.4f}" for v in single),
                         "hd95_mm_mean": round(float(hd95.mean()), 2),
                         "hd95_mm_sd": round(float(hd95.std(ddof=0)), 2), "dice": _fmt(dsc, 3), "hd95_mm": _fmt(hd95, 2),
                         "spacing_mm": spacing, "fov_mm": round(spacing * size, 1),
                         "myo_px_outside_fov": (info.get("test_gt_outside_fov_px") or {}).get("myocardium"),
                         "steps": info.get("steps"), "train_minutes": round(sum(float(read_run(r).get("train_seconds") or 0) for r in final) / 60, 1),
                         "wall_minutes_this_call": round(minutes, 1), "run": " ".join(r.name for r in final)})
            if fold == 0:
                fig_preds[key] = pred_dir
    set_aside(out_dir, "sunnybrook")
    ed_figure(out_dir / "folds" / "fold0", fig_preds, written["figure"])
    table = pd.DataFrame(rows)
    atomic_write_csv(table, written["csv"], overwrite=True)
    atomic_write_csv(pd.concat(per_case, ignore_index=True), written["per_case"], overwrite=True)
    atomic_write_csv(pd.DataFrame(grid_rows), written["grid"], overwrite=True)
    atomic_write_text(written["md"], markdown_table(table, profile, seeds), overwrite=True)
    return written


def markdown_table(table: pd.DataFrame, profile: str, seed: int | list[int]) -> str:
    """``sunnybrook.md`` from the rows of ``sunnybrook.csv``; with several folds, also each method's mean over folds
    (every patient held out once when ``--folds`` is the patient count)."""
    cols = ["method", "fold", "test_patient", "chosen", "val_dice_patient", "trained_on", "inference", "n_test_scans",
            "dice", "dice_patient", "dice_patient_per_seed", "hd95_mm", "fov_mm", "myo_px_outside_fov", "steps",
            "train_minutes"]
    cols = [c for c in cols if c in table.columns]
    seeds = ", ".join(map(str, seed)) if isinstance(seed, (list, tuple)) else str(seed)
    md = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    md += ["| " + " | ".join(str(r[c]) for c in cols) + " |" for r in table.to_dict("records")]
    if table["fold"].nunique() > 1:
        md += ["", "Mean over folds (± SD over folds):", "",
               "| method | folds | test patients | dice (mean of the per-slice means) | dice_patient | hd95_mm |", "|---|---|---|---|---|---|"]
        for method, g in table.groupby("method", sort=False):
            md.append(f"| {method} | {len(g)} | {', '.join(g['test_patient'])} | {_fmt(g['dice_mean'], 3)} | "
                      f"{_fmt(g['dice_patient'], 3)} | {_fmt(g['hd95_mm_mean'], 2)} |")
    note = (f"\nLV myocardium (class 1), strict protocol, native grid, mean ± SD over the held-out patient's ED slices; "
            f"dice_patient: one Dice over all of the patient's ED slices pooled (the volume Dice of cardiac challenges); "
            f"profile {profile}, seed(s) {seeds}; dice_patient_per_seed: each seed's run alone, without TTA. HD95 in mm. Sunnybrook has no infarct/MVO labels (K = 4 trained, classes 2–3 absent).\n")
    return "\n".join(md) + "\n" + note


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="ssnet reproduce sunnybrook", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--profile", default="quick", choices=["smoke", "quick", "paper"])
    p.add_argument("--folds", type=int, default=1, help="number of folds (test patient rotates; default 1)")
    p.add_argument("--seed", type=int, default=0, help="seed of every run (default 0)")
    p.add_argument("--seeds", default=None, metavar="S1,S2,...",
                   help="several seeds: the grid runs with the first, the chosen settings with each, and the test "
                        "patient is predicted by their ensemble (softmax averaged); replaces --seed")
    p.add_argument("--tta", default="none", choices=["none", "flip", "dihedral"],
                   help="test-time augmentation of the validation (choice) and test predictions (default none)")
    p.add_argument("--src", type=Path, default=DEFAULT_SRC, help="Sunnybrook source (DICOM tarballs + contours)")
    p.add_argument("--data", type=Path, default=None, help="an imported dataset (default: data/sunnybrook, imported once)")
    p.add_argument("--out", type=Path, default=None, help="results folder (default: results/sunnybrook)")
    p.add_argument("--force", action="store_true",
                   help="accepted and ignored: earlier tables are always moved to <out>/previous/, never overwritten")
    p.add_argument("--models", default="unet,ssnet", help="comma-separated subset of unet,ssnet (default both)")
    p.add_argument("--grid", action="append", default=None, metavar="KEY=V1,V2",
                   help="train every value and keep the best validation-patient Dice (repeatable; e.g. train.lr=1e-4,1e-3)")
    p.add_argument("--refit", action="store_true",
                   help="after choosing on the validation patient, retrain the chosen settings on train + val "
                        "(final weights, train.checkpoint=last) and test that run")
    p.add_argument("overrides", nargs="*", help="extra Hydra overrides for every run (e.g. data.spacing_mm=2.0)")
    a = p.parse_args(argv)
    if a.folds < 1:
        raise SsnetError(f"--folds must be >= 1, got {a.folds}")
    data_dir = a.data or Path("data") / "sunnybrook"
    if a.data is None:
        ensure_import(a.src, data_dir)
    elif not (data_dir / "manifest.csv").exists():
        raise input_error(data_dir / "manifest.csv", "dataset not found")
    out = a.out or Path("results") / ("sunnybrook" if a.profile == "quick" else f"sunnybrook-{a.profile}")
    start = time.perf_counter()
    try:
        seeds = [int(v) for v in a.seeds.split(",") if v.strip()] if a.seeds else a.seed
    except ValueError:
        raise SsnetError(f"--seeds must be comma-separated integers, got {a.seeds!r}") from None
    written = run_benchmark(data_dir, out, a.profile, a.folds, seeds, a.overrides, grid=a.grid,
                            models=[m.strip() for m in a.models.split(",") if m.strip()], refit=a.refit, tta=a.tta)
    for key, path in written.items():
        print(f"{key}: {path}")
    print(Path(written["md"]).read_text())
    print(f"sunnybrook done in {time.perf_counter() - start:.0f} s")
    return 0
