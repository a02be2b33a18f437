"""``ssnet train [hydra overrides]``: train one model on DIR/split.csv, predict and score the test split.

Flow: compose config → dataset (split made if absent) → run folder (resume if unfinished)
→ Lightning fit (best-val-loss checkpoint, ``last.ckpt`` every few steps) → test predictions
as label-map NIfTI ``predictions/<scan_id>.nii.gz`` on each scan's native grid (the inverse of
the training geometry, ssnet/data/spatial.py) → ``per_case.csv`` via the shared scorer (native
grid; ground truth outside the field of view counts as missed and is reported in run.json).
The last printed line is the run folder.
"""
from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lightning.pytorch.callbacks import Callback
from omegaconf import DictConfig, OmegaConf

from ssnet.data.contract import CLASS_NAMES, NUM_CLASSES, read_split, split_hash
from ssnet.data.augment import batch_augment_from_config
from ssnet.data.dataset import CineDataset, ClipConfig, collate_batch
from ssnet.data.sampling import StepBatchSampler
from ssnet.engine.config import build_model, compose, config_hash, model_kwargs
from ssnet.engine.memory import peak_memory_mb, reset_peak_memory
from ssnet.engine.models_cli import model_cost
from ssnet.engine.predict import predict_dataset
from ssnet.engine.provenance import provenance
from ssnet.engine.runs import acquire_run_dir, read_run, release, run_name, write_status
from ssnet.errors import SsnetError, input_error
from ssnet.io import atomic_write_text


def clip_config(cfg: DictConfig) -> ClipConfig:
    d = cfg.data
    spacing_mm = d.get("spacing_mm")
    return ClipConfig(int(d.frames), int(d.size), str(d.spatial), float(d.norm_mean), float(d.norm_std),
                      None if spacing_mm is None else float(spacing_mm), str(d.get("intensity", "minmax")),
                      tuple(float(v) for v in d.get("percentiles", (0.5, 99.5))))


def time_shifts(data_cfg: DictConfig) -> tuple[int, ...]:
    """``data.augment_time_shift`` k → the training clip offsets (-k … k) in source frames; (0,) when off."""
    k = int(data_cfg.get("augment_time_shift") or 0)
    if k < 0:
        raise SsnetError(f"data.augment_time_shift must be >= 0, got {k}")
    return tuple(range(-k, k + 1))


def fit_selection(train_cfg: DictConfig) -> tuple[tuple[str, ...], str]:
    """``(train.fit_parts, train.checkpoint)`` checked: the weights kept are the lowest validation loss
    (``best``, the default) or the final ones (``last``); fitting on ``val`` requires ``last``."""
    parts = tuple(str(p) for p in (train_cfg.get("fit_parts") or ["train"]))
    select = str(train_cfg.get("checkpoint") or "best")
    if select not in ("best", "last"):
        raise SsnetError(f"train.checkpoint must be best or last, got {select!r}")
    if not parts or any(p not in ("train", "val") for p in parts) or len(set(parts)) != len(parts):
        raise SsnetError(f"train.fit_parts must list train and/or val once each, got {list(parts)}")
    if "val" in parts and select != "last":
        raise SsnetError("train.fit_parts includes val: its loss cannot choose the checkpoint; set train.checkpoint=last")
    return parts, select


def ensure_split(cfg: DictConfig) -> str:
    """Make ``DIR/split.csv`` when absent (seed ``data.split_seed``); return its hash."""
    from ssnet.data.split import make_split

    data_dir = Path(cfg.data.dir)
    if not (data_dir / "manifest.csv").exists():
        raise input_error(data_dir / "manifest.csv", "dataset not found (make one with `ssnet phantom --out DIR` or an importer)")
    if not (data_dir / "split.csv").exists():
        scans = tuple(cfg.data.split_scans) if cfg.data.get("split_scans") else None
        make_split(data_dir, seed=int(cfg.data.split_seed), target_scans=scans)
    read_split(data_dir)
    return split_hash(data_dir)


class KillAtStep(Callback):
    """Fault injection for the resume test: SIGKILL this process when step ``step`` begins.

    Added only when the environment variable ``SSNET_FAULT_KILL_AT_STEP`` is set.
    """

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int) -> None:
        if trainer.global_step >= self.step:
            os.kill(os.getpid(), signal.SIGKILL)


class StepTimer(Callback):
    """Wall time of the optimiser steps of this session (the first step, warm-up, excluded when there are more)
    and of its validation passes (``val_seconds``: issue 12 asks validation to cost <= 5 % of a run)."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self._t0 = 0.0
        self.val_seconds = 0.0
        self._v0 = 0.0

    def on_validation_start(self, trainer: Any, pl_module: Any) -> None:
        self._v0 = time.perf_counter()

    def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize(pl_module.device)
        self.val_seconds += time.perf_counter() - self._v0

    def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int) -> None:
        self._t0 = time.perf_counter()

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize(pl_module.device)
        self.times.append(time.perf_counter() - self._t0)

    def seconds_per_step(self, accumulate: int = 1) -> float | None:
        times = self.times[1:] if len(self.times) > 1 else self.times
        return float(np.mean(times)) * accumulate if times else None


def _ddp_child() -> tuple[Path, bool] | None:
    """In a DDP worker process (Lightning re-runs the command with ``LOCAL_RANK`` > 0): rank 0's run
    folder and whether it resumes, passed down through the environment; None in rank 0."""
    if int(os.environ.get("LOCAL_RANK", "0") or 0) > 0 and os.environ.get("SSNET_RUN_DIR"):
        return Path(os.environ["SSNET_RUN_DIR"]), os.environ.get("SSNET_RUN_RESUMING") == "1"
    return None


def precision_for(cfg: DictConfig) -> str:
    p = str(cfg.train.precision)
    if p != "auto":
        return p
    return "bf16-mixed" if torch.cuda.is_available() else "32-true"


def quiet_lightning() -> None:
    for name in ("lightning", "lightning.pytorch", "lightning.fabric", "pytorch_lightning"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", ".*does not have many workers.*")
    warnings.filterwarnings("ignore", ".*LeafSpec.*")
    warnings.filterwarnings("ignore", ".*deterministic.*")
    warnings.filterwarnings("ignore", ".*sync_dist.*")  # DDP: every rank validates the whole val set, same values


def place_data(cfg: DictConfig, device: torch.device, *datasets: CineDataset) -> None:
    """``train.data_on_device``: move the in-memory cohort onto this rank's training ``device`` once (``train.data_fp16``)."""
    t = cfg.train
    if not t.get("data_on_device", True) or device.type == "cpu" or int(t.num_workers) > 0:
        return
    for ds in datasets:
        ds.to(device, torch.float16 if t.get("data_fp16", False) else None)


def prepare_model(model: torch.nn.Module, cfg: DictConfig) -> torch.nn.Module:
    """``train.channels_last`` (4-D weights in NHWC) and ``train.compile`` (in place: checkpoint keys unchanged)."""
    t = cfg.train
    if t.get("channels_last", False):
        for p in model.parameters():
            if p.dim() == 4:
                p.data = p.data.contiguous(memory_format=torch.channels_last)
    if t.get("compile", False):
        model.compile()
    return model


def train(cfg: DictConfig, overrides: list[str] | None = None) -> Path:
    """Train, predict and score one run; return its folder."""
    import lightning as L
    from lightning.pytorch.callbacks import ModelCheckpoint, TQDMProgressBar

    from ssnet.engine.module import SegmentationModule

    quiet_lightning()
    shash = ensure_split(cfg)
    chash = config_hash(cfg)
    method = cfg.get("method") or cfg.model.key
    name = cfg.run_name or run_name(cfg)
    L.seed_everything(int(cfg.seed), workers=True, verbose=False)
    fit_parts, select = fit_selection(cfg.train)  # config errors before a folder is made
    shifts = time_shifts(cfg.data)
    model = build_model(cfg)
    child = _ddp_child()  # DDP worker: rank 0 owns the folder, the run.json and the predictions
    run_dir, resuming = child or acquire_run_dir(cfg.run_root, name)
    try:
        if child is None:
            hydra_dir = run_dir / ".hydra"
            atomic_write_text(hydra_dir / "config.yaml", OmegaConf.to_yaml(cfg))
            atomic_write_text(hydra_dir / "overrides.yaml", OmegaConf.to_yaml(OmegaConf.create(list(overrides or []))))
            n_params, gflops = model_cost(cfg.model.name, model_kwargs(cfg))
            before = read_run(run_dir) if resuming else {}  # a resumed run adds to the earlier sessions' times
            seconds_before, val_before = float(before.get("train_seconds") or 0), float(before.get("val_seconds") or 0)
            write_status(run_dir, status="running", method=method, model=cfg.model.name, seed=int(cfg.seed),
                         profile=str(cfg.profile.name), config_hash=chash, split_hash=shash, params=n_params,
                         gflops_per_clip=round(gflops, 3), data_dir=str(Path(cfg.data.dir).resolve()), **provenance())

        ccfg = clip_config(cfg)
        max_scans = cfg.data.get("max_scans")
        augment = batch_augment_from_config(cfg.data) or False
        train_ds = CineDataset(cfg.data.dir, fit_parts, ccfg, augment=augment, max_scans=max_scans, time_shifts=shifts)
        val_ds = CineDataset(cfg.data.dir, "val", ccfg, max_scans=max_scans)
        t = cfg.train
        accumulate = int(t.accumulate_grad_batches)
        start_step = 0
        if resuming:
            start_step = int(torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)["global_step"]) * accumulate
        ckpt_dir = run_dir / "checkpoints"
        best = ModelCheckpoint(dirpath=ckpt_dir, filename="best", monitor="val/loss", mode="min", save_top_k=1,
                               save_weights_only=True, enable_version_counter=False)
        last = ModelCheckpoint(dirpath=ckpt_dir, filename="last", every_n_train_steps=int(t.checkpoint_every), save_top_k=1, enable_version_counter=False)
        timer = StepTimer()
        callbacks: list[Any] = [best, last, timer]
        if t.progress_bar:
            callbacks.append(TQDMProgressBar(refresh_rate=10))
        if os.environ.get("SSNET_FAULT_KILL_AT_STEP"):
            callbacks.append(KillAtStep(int(os.environ["SSNET_FAULT_KILL_AT_STEP"])))
        val_every = min(int(t.val_every), int(t.max_steps))
        trainer = L.Trainer(
            max_steps=int(t.max_steps), accelerator=str(t.accelerator), devices=t.devices, strategy=str(t.strategy),
            precision=precision_for(cfg), val_check_interval=val_every, check_val_every_n_epoch=None,
            num_sanity_val_steps=0, accumulate_grad_batches=int(t.accumulate_grad_batches),
            deterministic=bool(t.deterministic), callbacks=callbacks, logger=False,
            enable_progress_bar=bool(t.progress_bar), enable_model_summary=False, default_root_dir=str(run_dir),
            use_distributed_sampler=False,  # the step sampler shards by rank itself (ssnet/data/sampling.py)
        )
        sampler = StepBatchSampler(len(train_ds), int(t.batch_size), int(cfg.seed), int(t.max_steps) * accumulate, start_step,
                                   rank=trainer.global_rank, world_size=trainer.world_size)
        place_data(cfg, trainer.strategy.root_device, train_ds, val_ds)
        loader_kw: dict[str, Any] = {"num_workers": int(t.num_workers), "persistent_workers": int(t.num_workers) > 0,
                                     "collate_fn": collate_batch}
        train_dl = torch.utils.data.DataLoader(train_ds, batch_sampler=sampler, **loader_kw)
        val_dl = torch.utils.data.DataLoader(val_ds, batch_size=int(t.get("val_batch_size") or t.batch_size), **loader_kw)
        module = SegmentationModule(prepare_model(model, cfg), cfg, run_label=f"{name} (config {run_dir / '.hydra' / 'config.yaml'})")
        ckpt = str(ckpt_dir / "last.ckpt") if resuming else None
        if resuming:
            print(f"resuming {run_dir} from {ckpt}", file=sys.stderr)
        os.environ["SSNET_RUN_DIR"], os.environ["SSNET_RUN_RESUMING"] = str(run_dir), "1" if resuming else "0"
        reset_peak_memory(trainer.strategy.root_device)
        start = time.perf_counter()
        trainer.fit(module, train_dl, val_dl, ckpt_path=ckpt)
        train_s = time.perf_counter() - start
        if select == "last":  # every rank (the save synchronises); last.ckpt may predate the final step
            trainer.save_checkpoint(ckpt_dir / "final.ckpt", weights_only=True)
        if child is not None or trainer.global_rank != 0:
            return run_dir  # one set of predictions and one per_case.csv: rank 0 only
        sps = timer.seconds_per_step(accumulate)
        total_s, val_s = seconds_before + train_s, val_before + timer.val_seconds
        write_status(run_dir, train_seconds=round(total_s, 1),
                     train_seconds_per_step=round(sps, 4) if sps is not None else None,
                     val_seconds=round(val_s, 2), val_share=round(val_s / total_s, 4) if total_s > 0 else None,
                     peak_memory_mb=round(peak_memory_mb(trainer.strategy.root_device), 1), world_size=int(trainer.world_size))

        best_path = Path(best.best_model_path) if best.best_model_path else ckpt_dir / "last.ckpt"
        if select == "last":
            best_path = ckpt_dir / "final.ckpt"
        state = torch.load(best_path, map_location="cpu", weights_only=False)["state_dict"]
        module.load_state_dict(state)
        device = torch.device("cuda" if torch.cuda.is_available() and str(t.accelerator) != "cpu" else "cpu")
        test_ds = CineDataset(cfg.data.dir, "test", ccfg, max_scans=max_scans)
        ms_per_clip = predict_dataset(module, test_ds, run_dir / "predictions", int(t.batch_size), device)
        outside = {CLASS_NAMES[c]: int(sum(d.get(c, 0) for d in test_ds.outside_fov)) for c in range(1, NUM_CLASSES)}
        fov = test_ds.geometries[0].field_of_view_mm() if test_ds.geometries else None
        print("test ground truth outside the field of view (counted as missed), pixels per class: "
              + ", ".join(f"{k} {v}" for k, v in outside.items())
              + (f"; field of view {fov[0]:.0f} x {fov[1]:.0f} mm" if fov else ""), file=sys.stderr)

        from ssnet.evaluation.score import score_predictions
        from ssnet.io import atomic_write_csv

        per_case = score_predictions(
            cfg.data.dir, run_dir / "predictions", split="test", protocol="both", method=method, seed=int(cfg.seed),
            checkpoint=str(best_path.relative_to(run_dir)), config_hash=chash,
        )
        atomic_write_csv(per_case, run_dir / "per_case.csv")
        if best_path.name != "last.ckpt":
            (ckpt_dir / "last.ckpt").unlink(missing_ok=True)  # resume state is not needed once the run is done
        mvo = per_case[(per_case["protocol"] == "paper") & (per_case["class_id"] == 3) & (per_case["metric"] == "dice")]
        write_status(run_dir, status="done", steps=int(trainer.global_step),
                     ms_per_clip=round(ms_per_clip, 2), best_checkpoint=str(best_path.relative_to(run_dir)),
                     test_mvo_dice_paper=float(np.mean(mvo["value"])) if len(mvo) else None, n_test=len(test_ds),
                     test_gt_outside_fov_px=outside, field_of_view_mm=[round(x, 1) for x in fov] if fov else None)
    finally:
        if child is None:
            release(run_dir)
    return run_dir


def main(argv: list[str]) -> int:
    """CLI: ``ssnet train [key=value ...]``; prints the run folder as its last line."""
    parser = argparse.ArgumentParser(
        prog="ssnet train",
        description="Train one model. Overrides are Hydra syntax: model=NAME profile=smoke|quick|paper data.dir=DIR seed=N ...",
    )
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. model=unet profile=quick seed=1")
    parser.add_argument("--cfg", action="store_true", help="print the composed config and exit")
    args = parser.parse_args(argv)
    cfg = compose(args.overrides)
    if args.cfg:
        print(OmegaConf.to_yaml(cfg))
        return 0
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    run_dir = train(cfg, args.overrides)
    print(run_dir)
    return 0
