"""The Lightning module every method trains through: one loss rule, one optimiser rule.

The training step never waits for the device: the loss is logged every ``train.log_every`` steps
(not every step), and a non-finite loss is recorded on the device (first bad step and value) and
checked every ``train.log_every`` steps and at the last step, raising :class:`DivergenceError`
before that step's checkpoint is written. Augmentation runs here, on the device, after the batch
has been transferred (:meth:`SegmentationModule.on_after_batch_transfer`).
"""
from __future__ import annotations

from typing import Any

import lightning as L
import torch
import torch.nn as nn
from omegaconf import DictConfig

from ssnet.data.augment import batch_augment_from_config
from ssnet.data.dataset import augment_batch
from ssnet.errors import SsnetError
from ssnet.models.base import SegOutput, as_output
from ssnet.models.losses import ce_dice_loss, multiclass_soft_dice_loss

LOSSES = ("default", "dice_ce")  # train.loss for models without their own loss


class DivergenceError(SsnetError):
    """The loss became NaN or Inf."""


class SegmentationModule(L.LightningModule):
    """Wraps a registered model: training/validation steps, optimiser and schedule from ``cfg.train``."""

    def __init__(self, model: nn.Module, cfg: DictConfig, run_label: str = "") -> None:
        super().__init__()
        self.model = model
        self.train_cfg = cfg.train
        self.run_label = run_label
        self.augment = batch_augment_from_config(cfg.data)
        self.log_every = max(1, int(cfg.train.get("log_every", 50)))
        self.loss_name = str(cfg.train.get("loss", "default"))
        if self.loss_name not in LOSSES:
            raise SsnetError(f"train.loss={self.loss_name!r}: choose one of {', '.join(LOSSES)}")
        if self.loss_name != "default" and hasattr(model, "loss"):
            raise SsnetError(f"train.loss={self.loss_name} replaces only the engine's Dice; model "
                              f"{type(model).__name__} defines its own loss (leave train.loss=default)")
        self._bad: torch.Tensor | None = None  # [first non-finite step (-1: none), its loss], on the device

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Augment training batches on the device (a pure function of the sampler's per-sample seeds)."""
        if isinstance(batch, dict) and "frames" in batch:
            training = self._trainer is None or self.trainer.training
            batch = augment_batch(batch, self.augment if training else None)
        return batch

    def forward(self, frames: torch.Tensor) -> SegOutput:
        return as_output(self.model(frames))

    def compute_loss(self, out: SegOutput, target: torch.Tensor) -> torch.Tensor:
        """The model's own loss when it defines one, else ``train.loss`` on the logits (default: multiclass soft
        Dice, as smp ``DiceLoss``; ``dice_ce``: Dice + pixel-mean cross-entropy, 1:1 as nnU-Net)."""
        if hasattr(self.model, "loss"):
            return self.model.loss(out, target)
        if self.loss_name == "dice_ce":
            return ce_dice_loss(out.logits, target)
        return multiclass_soft_dice_loss(out.logits, target)

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        loss = self.compute_loss(self(batch["frames"]), batch["label"])
        self._record_non_finite(loss.detach(), self.global_step)
        last = self._trainer is not None and batch_idx + 1 >= self.trainer.num_training_batches
        if (batch_idx + 1) % self.log_every == 0 or last:
            self.check_finite()
            self.log("train/loss", loss.detach(), prog_bar=True, batch_size=batch["label"].shape[0])
        return loss

    def _record_non_finite(self, loss: torch.Tensor, step: int) -> None:
        """Remember the first non-finite loss on the device, without a host synchronisation."""
        if self._bad is None or self._bad.device != loss.device:
            self._bad = torch.zeros(2, device=loss.device)
            self._bad[0] = -1.0  # a fill, not a host-to-device copy
        now = torch.stack([torch.full_like(loss.float(), float(step)), loss.float()])
        first = (~torch.isfinite(loss)) & (self._bad[0] < 0)
        self._bad = torch.where(first, now, self._bad)

    def check_finite(self) -> None:
        """Raise :class:`DivergenceError` if a non-finite loss was recorded (one host synchronisation)."""
        if self._bad is None:
            return
        step, value = self._bad.tolist()
        if step >= 0:
            raise DivergenceError(
                f"loss became {value} at step {int(step)} of run {self.run_label}; lower train.lr or check the data"
            )

    def on_train_end(self) -> None:
        self.check_finite()

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        out = self(batch["frames"])
        loss = self.compute_loss(out, batch["label"])
        pred = out.logits.argmax(1)
        mvo_p, mvo_g = pred == 3, batch["label"] == 3
        inter = (mvo_p & mvo_g).sum((1, 2)).float()
        denom = (mvo_p.sum((1, 2)) + mvo_g.sum((1, 2))).float()
        dice = torch.where(denom > 0, 2 * inter / denom.clamp_min(1), torch.ones_like(denom))
        n = batch["label"].shape[0]
        self.log("val/loss", loss, prog_bar=True, batch_size=n)
        self.log("val/mvo_dice", dice.mean(), prog_bar=True, batch_size=n)

    def configure_optimizers(self) -> Any:
        t = self.train_cfg
        if t.optimizer == "adam":
            opt = torch.optim.Adam(self.parameters(), lr=t.lr, betas=tuple(t.betas), weight_decay=t.weight_decay)
        elif t.optimizer == "adamw":
            opt = torch.optim.AdamW(self.parameters(), lr=t.lr)
        elif t.optimizer == "sgd":
            opt = torch.optim.SGD(self.parameters(), lr=t.lr, momentum=t.get("momentum", 0.9), weight_decay=t.weight_decay)
        else:
            raise SsnetError(f"train.optimizer: unknown optimiser {t.optimizer!r}; available: adam, adamw, sgd")
        steps = max(1, int(t.max_steps))  # optimiser steps (Lightning's global_step)
        if t.scheduler == "cosine":
            sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps, eta_min=0.0)
        elif t.scheduler == "onecycle":
            sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=t.lr, total_steps=steps, pct_start=0.1)
        elif t.scheduler == "poly":  # lr · (1 − step / steps)^power (TransUNet: 0.9)
            power = float(t.get("poly_power", 0.9))
            sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: max(0.0, 1.0 - s / steps) ** power)
        elif t.scheduler == "constant":
            sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0)
        else:
            raise SsnetError(
                f"train.scheduler: unknown schedule {t.scheduler!r}; available: cosine, onecycle, poly, constant"
            )
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

