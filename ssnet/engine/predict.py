"""``ssnet predict RUN_DIR --data DIR --out PRED_DIR``: apply a finished run to any dataset in the contract.

Also the one prediction loop of ``ssnet train`` (:func:`predict_dataset`). Every prediction is
mapped back through the exact inverse of the scan's geometry (un-crop, un-pad, un-resample) and
saved on the scan's native grid with its native spacing: ``<scan_id>.nii.gz`` (uint8 label map).
With ``--probabilities``: ``probabilities/<scan_id>_probs.nii.gz`` ((H, W, K) float32 softmax; outside
the field of view background = 1) and, when the model outputs one (SSNet), its uncertainty map
``probabilities/<scan_id>_uncertainty.nii.gz`` ((H, W) float32). They live in a sub-folder so that
``ssnet score --pred PRED_DIR`` reads only the label maps.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

from ssnet.errors import SsnetError, input_error
from ssnet.io import save_nifti

PROB_DIR = "probabilities"


def predict_dataset(
    model: torch.nn.Module,
    dataset,
    out_dir: Path,
    batch_size: int,
    device: torch.device,
    probabilities: bool = False,
) -> float:
    """Write every clip's arg-max label map on its native grid (and probabilities); return ms per clip.

    The label map is ``Geometry.probabilities_inverse``: the arg-max of the class probabilities mapped
    back to the native grid (linear un-resampling when ``data.spacing_mm`` resampled the scan).

    Args:
        model: a registered model, or a module whose ``.model`` is one (the Lightning module).
        dataset: a :class:`~ssnet.data.dataset.CineDataset` (its ``geometries`` give the inverse maps).
        out_dir: folder of ``<scan_id>.nii.gz``.
        batch_size: clips per forward pass.
        device: where the model runs.
        probabilities: also write class probabilities and the uncertainty map (when present).
    """
    from ssnet.models.base import as_output

    net = getattr(model, "model", model)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    net.eval().to(device)
    start = time.perf_counter()
    with torch.inference_mode():
        for i in range(0, len(dataset), batch_size):
            frames = dataset.frames[i : i + batch_size].to(device)
            out = as_output(net(frames))
            logits = out.logits.float()
            probs = logits.softmax(1).cpu().numpy()
            unc = out.aux.get("uncertainty") if probabilities else None
            if unc is not None:  # (B, 1, H, W) in SSNet; a per-class map is reduced to its maximum
                unc = unc.float().flatten(1, -3).amax(1).cpu().numpy() if unc.ndim > 3 else unc.float().cpu().numpy()
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


def predict_run(run_dir: Path, data_dir: Path, out_dir: Path, split: str | None = None, probabilities: bool = False,
                force: bool = False, batch_size: int | None = None, device: str = "auto") -> tuple[int, float]:
    """Apply a finished run to ``data_dir`` (all scans, or one split part); return (scans, ms per clip)."""
    from ssnet.data.contract import read_manifest
    from ssnet.data.dataset import CineDataset
    from ssnet.engine.train import clip_config

    data_dir, out_dir = Path(data_dir), Path(out_dir)
    read_manifest(data_dir)
    if out_dir.exists() and any(out_dir.iterdir()) and not force:
        raise input_error(out_dir, "already exists and is not empty; pass --force to overwrite its predictions")
    cfg, model, _ = load_run(run_dir)
    ds = CineDataset(data_dir, split, clip_config(cfg), require_labels=False)
    dev = torch.device("cuda" if device == "auto" and torch.cuda.is_available() else ("cpu" if device == "auto" else device))
    bs = int(batch_size or cfg.train.batch_size)
    ms = predict_dataset(model, ds, out_dir, bs, dev, probabilities=probabilities)
    return len(ds), ms


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="ssnet predict", description="Apply a finished run to a dataset; label maps on each scan's native grid.")
    p.add_argument("run_dir", type=Path, help="run folder (.hydra/config.yaml, checkpoints/best.ckpt, run.json)")
    p.add_argument("--data", type=Path, required=True, help="dataset folder in the contract (labels optional)")
    p.add_argument("--out", type=Path, required=True, help="output folder of <scan_id>.nii.gz")
    p.add_argument("--split", default=None, choices=["train", "val", "test"], help="only this split part (default: every scan)")
    p.add_argument("--probabilities", action="store_true", help="also write probabilities/<scan_id>_probs.nii.gz (and _uncertainty)")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--device", default="auto", help="auto | cpu | cuda")
    p.add_argument("--force", action="store_true", help="write into a non-empty --out")
    a = p.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        n, ms = predict_run(a.run_dir, a.data, a.out, a.split, a.probabilities, a.force, a.batch_size, a.device)
    except ValueError as exc:
        raise SsnetError(str(exc)) from None
    print(f"predicted {n} scans ({ms:.1f} ms per clip)", file=sys.stderr)
    print(a.out)
    return 0
