"""``ssnet predict RUN_DIR --data DIR --out PRED_DIR``: apply a finished run to any dataset in the contract.

Also the one prediction loop of ``ssnet train`` (:func:`predict_dataset`). Every prediction is
mapped back through the exact inverse of the scan's geometry (un-crop, un-pad, un-resample) and
saved on the scan's native grid with its native spacing: ``<scan_id>.nii.gz`` (uint8 label map).
With ``--probabilities``: ``probabilities/<scan_id>_probs.nii.gz`` ((H, W, K) float32 softmax; outside
the field of view background = 1) and, when the model outputs one (SSNet), its uncertainty map
``probabilities/<scan_id>_uncertainty.nii.gz`` ((H, W) float32). They live in a sub-folder so that
``ssnet score --pred PRED_DIR`` reads only the label maps.

``ssnet predict RUN_A RUN_B ... --tta flip``: an ensemble of runs (softmax probabilities averaged; the runs
must see the same clips) and/or test-time augmentation (each flipped/turned view's probabilities mapped back
before averaging); the arg-max of the average is the label map.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ssnet.errors import SsnetError, input_error
from ssnet.io import save_nifti

PROB_DIR = "probabilities"


TTA = ("none", "flip", "dihedral")


def tta_transforms(tta: str) -> list[tuple[int, bool]]:
    """Test-time augmentations as (quarter turns, transpose-free flip of W) pairs over the last two axes.

    ``none``: identity; ``flip``: identity and the three flips (H, W, both = a half turn); ``dihedral``: the
    eight symmetries of the square (the training augmentation draws flips and any rotation, so every one
    of them is an image the model was trained on).
    """
    if tta not in TTA:
        raise SsnetError(f"--tta must be one of {', '.join(TTA)}, got {tta!r}")
    if tta == "none":
        return [(0, False)]
    if tta == "flip":
        return [(0, False), (0, True), (2, False), (2, True)]  # W flip; half turn = H+W flip; H flip = half turn + W flip
    return [(k, f) for k in range(4) for f in (False, True)]


def _apply(x: torch.Tensor, turns: int, flip: bool) -> torch.Tensor:
    x = torch.rot90(x, turns, dims=(-2, -1)) if turns else x
    return x.flip(-1) if flip else x


def _undo(x: torch.Tensor, turns: int, flip: bool) -> torch.Tensor:
    x = x.flip(-1) if flip else x
    return torch.rot90(x, -turns, dims=(-2, -1)) if turns else x


def _uncertainty_map(out, size: torch.Size) -> torch.Tensor | None:
    """The model's uncertainty as a (B, 1, H, W) map at the output's size, or None (absent, or not a map of
    that size, e.g. AFB-URR's per-frame scalars). SSNet gives (B, 1, H, W); a per-class map is reduced to its max."""
    u = out.aux.get("uncertainty")
    if u is None or u.ndim < 3 or u.shape[-2:] != size:
        return None
    return u.float().unsqueeze(1) if u.ndim == 3 else u.float().flatten(1, -3).amax(1, keepdim=True)


def averaged_probabilities(nets: Sequence[torch.nn.Module], frames: torch.Tensor, tta: str = "none",
                           uncertainty: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Class probabilities (B, K, H, W) averaged over ``nets`` (an ensemble) and the test-time augmentations,
    each mapped back before averaging; plus (with ``uncertainty``) the models' uncertainty map averaged the
    same way, or None when a model gives none."""
    from ssnet.models.base import as_output

    probs, unc, n = None, None, 0
    for net in nets:
        for turns, flip in tta_transforms(tta):
            out = as_output(net(_apply(frames, turns, flip)))
            p = _undo(out.logits.float().softmax(1), turns, flip)
            probs = p if probs is None else probs + p
            u = _uncertainty_map(out, p.shape[-2:]) if uncertainty else None
            if u is not None:
                u = _undo(u, turns, flip)
                unc = u if unc is None else unc + u
            n += 1
    return probs / n, (unc / n if unc is not None else None)


def predict_dataset(
    model: torch.nn.Module | Sequence[torch.nn.Module],
    dataset,
    out_dir: Path,
    batch_size: int,
    device: torch.device,
    probabilities: bool = False,
    tta: str = "none",
) -> float:
    """Write every clip's arg-max label map on its native grid (and probabilities); return ms per clip.

    The label map is ``Geometry.probabilities_inverse``: the arg-max of the class probabilities mapped
    back to the native grid (linear un-resampling when ``data.spacing_mm`` resampled the scan).

    Args:
        model: a registered model, or a module whose ``.model`` is one (the Lightning module), or a
            list of them: an ensemble whose softmax probabilities are averaged.
        dataset: a :class:`~ssnet.data.dataset.CineDataset` (its ``geometries`` give the inverse maps).
        out_dir: folder of ``<scan_id>.nii.gz``.
        batch_size: clips per forward pass.
        device: where the model runs.
        probabilities: also write class probabilities and the uncertainty map (when present).
        tta: test-time augmentation, one of :data:`TTA` (probabilities averaged; default none).
    """
    models = list(model) if isinstance(model, (list, tuple)) else [model]
    nets = [getattr(m, "model", m).eval().to(device) for m in models]
    tta_transforms(tta)  # validate before any work
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with torch.inference_mode():
        for i in range(0, len(dataset), batch_size):
            frames = dataset.frames[i : i + batch_size].to(device)
            probs_t, unc_t = averaged_probabilities(nets, frames, tta, uncertainty=probabilities)
            probs = probs_t.cpu().numpy()
            unc = unc_t.squeeze(1).cpu().numpy() if unc_t is not None else None
            for j in range(len(probs)):
                scan, geo = dataset.scans[i + j], dataset.geometries[i + j]
                spacing = geo.native_spacing
                save_nifti(out_dir / f"{scan.scan_id}.nii.gz", geo.probabilities_inverse(probs[j]), spacing)
                if not probabilities:
                    continue
                p = probs[j]
                fill = np.zeros((p.shape[0], 1, 1), np.float32)
                fill[0] = 1.0  # outside the field of view: background with certainty
                native = np.stack([geo.image_inverse(p[k], fill=float(fill[k, 0, 0])) for k in range(p.shape[0])], -1)
                save_nifti(out_dir / PROB_DIR / f"{scan.scan_id}_probs.nii.gz", native.astype(np.float32), spacing)
                if unc is not None:
                    save_nifti(out_dir / PROB_DIR / f"{scan.scan_id}_uncertainty.nii.gz",
                               geo.image_inverse(unc[j]).astype(np.float32), spacing)
    return 1000 * (time.perf_counter() - start) / max(1, len(dataset))


def load_run(run_dir: Path):
    """``(cfg, model with the run's best weights, checkpoint path)`` of a finished run folder."""
    from omegaconf import OmegaConf

    from ssnet.engine.config import build_model
    from ssnet.engine.runs import read_run

    run_dir = Path(run_dir)
    cfg_path = run_dir / ".hydra" / "config.yaml"
    if not cfg_path.is_file():
        raise input_error(cfg_path, "not a run folder (resolved config missing)")
    try:
        cfg = OmegaConf.load(cfg_path)
    except Exception as exc:
        raise input_error(cfg_path, f"cannot read config ({type(exc).__name__}: {exc})") from exc
    info = read_run(run_dir)
    ckpt = run_dir / (info.get("best_checkpoint") or "checkpoints/best.ckpt")
    if not ckpt.is_file():
        raise input_error(ckpt, f"checkpoint not found (run status: {info.get('status', 'unknown')})")
    model = build_model(cfg)
    try:
        state = torch.load(ckpt, map_location="cpu", weights_only=False)["state_dict"]
        state = {k[len("model."):]: v for k, v in state.items() if k.startswith("model.")}
        model.load_state_dict(state)
    except Exception as exc:
        raise input_error(ckpt, f"cannot load weights into {cfg.model.name} ({type(exc).__name__}: {exc})") from exc
    return cfg, model, ckpt


def predict_run(run_dir: Path | Sequence[Path], data_dir: Path, out_dir: Path, split: str | None = None,
                probabilities: bool = False, force: bool = False, batch_size: int | None = None, device: str = "auto",
                tta: str = "none") -> tuple[int, float]:
    """Apply a finished run (or an ensemble of runs, probabilities averaged) to ``data_dir`` (all scans, or one
    split part); return (scans, ms per clip). Runs of an ensemble must see the same input (same clip config)."""
    from ssnet.data.contract import read_manifest
    from ssnet.data.dataset import CineDataset
    from ssnet.engine.train import clip_config

    run_dirs = [Path(run_dir)] if isinstance(run_dir, (str, Path)) else [Path(r) for r in run_dir]
    if not run_dirs:
        raise SsnetError("predict: no run folder given")
    data_dir, out_dir = Path(data_dir), Path(out_dir)
    read_manifest(data_dir)
    if out_dir.exists() and any(out_dir.iterdir()) and not force:
        raise input_error(out_dir, "already exists and is not empty; pass --force to overwrite its predictions")
    tta_transforms(tta)
    loaded = [load_run(r) for r in run_dirs]
    clip = clip_config(loaded[0][0])
    for r, (cfg, _, _) in zip(run_dirs[1:], loaded[1:]):
        if clip_config(cfg) != clip:
            raise input_error(r / ".hydra" / "config.yaml", f"its input (data.* settings) differs from {run_dirs[0]}'s: "
                              "an ensemble needs runs that see the same clips")
    ds = CineDataset(data_dir, split, clip, require_labels=False)
    dev = torch.device("cuda" if device == "auto" and torch.cuda.is_available() else ("cpu" if device == "auto" else device))
    bs = int(batch_size or loaded[0][0].train.batch_size)
    ms = predict_dataset([m for _, m, _ in loaded], ds, out_dir, bs, dev, probabilities=probabilities, tta=tta)
    return len(ds), ms


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="ssnet predict", description="Apply a finished run to a dataset; label maps on each scan's native grid.")
    p.add_argument("run_dir", type=Path, nargs="+",
                   help="run folder (.hydra/config.yaml, checkpoints/best.ckpt, run.json); several = an ensemble "
                        "(softmax probabilities averaged; the runs must share their data settings)")
    p.add_argument("--data", type=Path, required=True, help="dataset folder in the contract (labels optional)")
    p.add_argument("--out", type=Path, required=True, help="output folder of <scan_id>.nii.gz")
    p.add_argument("--split", default=None, choices=["train", "val", "test"], help="only this split part (default: every scan)")
    p.add_argument("--probabilities", action="store_true", help="also write probabilities/<scan_id>_probs.nii.gz (and _uncertainty)")
    p.add_argument("--tta", default="none", choices=TTA,
                   help="test-time augmentation: flip (4 flips) or dihedral (8 flips/turns), probabilities averaged")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--device", default="auto", help="auto | cpu | cuda")
    p.add_argument("--force", action="store_true", help="write into a non-empty --out")
    a = p.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        n, ms = predict_run(a.run_dir, a.data, a.out, a.split, a.probabilities, a.force, a.batch_size, a.device, a.tta)
    except ValueError as exc:
        raise SsnetError(str(exc)) from None
    print(f"predicted {n} scans ({ms:.1f} ms per clip)", file=sys.stderr)
    print(a.out)
    return 0
