"""The Lightning module every method trains through: one loss rule, one optimiser rule."""
from __future__ import annotations

from typing import Any

import lightning as L
import torch
import torch.nn as nn
from omegaconf import DictConfig

from ssnet.errors import SsnetError
from ssnet.models.base import SegOutput, as_output
from ssnet.models.losses import multiclass_soft_dice_loss


class DivergenceError(SsnetError):
    """The loss became NaN or Inf."""


class SegmentationModule(L.LightningModule):
    """Wraps a registered model: training/validation steps, optimiser and schedule from ``cfg.train``."""

    def __init__(self, model: nn.Module, cfg: DictConfig, run_label: str = "") -> None:
        super().__init__()
        self.model = model
        self.train_cfg = cfg.train
        self.run_label = run_label

    def forward(self, frames: torch.Tensor) -> SegOutput:
        return as_output(self.model(frames))

    def compute_loss(self, out: SegOutput, target: torch.Tensor) -> torch.Tensor:
        """The model's own loss when it defines one, else multiclass soft Dice (as smp ``DiceLoss``) on the logits."""
        if hasattr(self.model, "loss"):
            return self.model.loss(out, target)
        return multiclass_soft_dice_loss(out.logits, target)

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        loss = self.compute_loss(self(batch["frames"]), batch["label"])
        if not torch.isfinite(loss):
            raise DivergenceError(
                f"loss became {loss.item()} at step {self.global_step} (batch {batch_idx}) of run {self.run_label}; "
                "lower train.lr or check the data"
            )
        self.log("train/loss", loss, prog_bar=True, batch_size=batch["label"].shape[0])
        return loss

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

