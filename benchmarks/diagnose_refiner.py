"""Watch SSNet's uncertainty refinement while it trains (issue 10's diagnosis of the missing MVO).

    python benchmarks/diagnose_refiner.py --out /tmp/refiner.csv [--every 20] model=ssnet profile=quick \
        data.dir=data/phantom-easy seed=0 [model.options.refiner_bound=tanh ...]

Trains one run with the ordinary engine (``ssnet train`` with the given Hydra overrides; the run folder goes
under ``run_root`` as usual) and, every ``--every`` steps, records from the training step's own forward pass
(no extra forward, no change to the updates: the run is the one ``ssnet train`` would make):

* ``p{c}_at_{c}`` / ``coarse_p{c}_at_{c}``: mean probability of class c on the batch's class-c pixels, from
  the final map Ŷ and from the coarse map M;
* ``E{c}_at_mvo``: mean refinement E_c on the MVO pixels; ``U_at_mvo``: mean uncertainty there;
* ``E_abs``: mean |E| over the batch; ``pred_mvo_px``: pixels whose arg-max is MVO;
* ``grad_coarse_mvo``: mean |∂loss/∂M_MVO| on the MVO pixels (× 1e6).

Rows are written atomically to ``--out`` as training goes. Models without refinement give the M columns only.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ssnet.engine import module as engine_module  # noqa: E402
from ssnet.engine.config import compose  # noqa: E402
from ssnet.engine.train import train  # noqa: E402
from ssnet.io import atomic_write_csv  # noqa: E402

MVO = 3


def refiner_stats(out: Any, target: torch.Tensor, loss: torch.Tensor, num_classes: int = 4) -> dict[str, float]:
    """Per-class statistics of one training forward (see the module docstring); reads, never modifies, the graph."""
    coarse = out.aux.get("coarse_logits")
    grad = None
    if coarse is not None and coarse.requires_grad and (target == MVO).any():
        grad = torch.autograd.grad(loss, coarse, retain_graph=True)[0]  # .grad of parameters untouched
    with torch.no_grad():
        final = out.logits.float().softmax(1)
        rough = coarse.float().softmax(1) if coarse is not None else final
        row: dict[str, float] = {"loss": float(loss), "pred_mvo_px": int((final.argmax(1) == MVO).sum())}
        for c in range(num_classes):
            mask = target == c
            if mask.any():
                row[f"p{c}_at_{c}"] = float(final[:, c][mask].mean())
                row[f"coarse_p{c}_at_{c}"] = float(rough[:, c][mask].mean())
        mvo = target == MVO
        refine = out.aux.get("refinement")
        if refine is not None:
            refine = refine.float() if refine.ndim == 4 else refine.float()[:, :, -1]
            row["E_abs"] = float(refine.abs().mean())
        if mvo.any():
            row["mvo_px"] = int(mvo.sum())
            if grad is not None:
                row["grad_coarse_mvo"] = float(grad[:, MVO][mvo].abs().mean() * 1e6)
            if refine is not None:
                for c in range(num_classes):
                    row[f"E{c}_at_mvo"] = float(refine[:, c][mvo].mean())
                row["U_at_mvo"] = float(out.aux["uncertainty"][:, 0][mvo].mean())
    return row


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, required=True, help="CSV of per-step statistics")
    p.add_argument("--every", type=int, default=20, help="record every N optimiser steps")
    p.add_argument("overrides", nargs="*", help="Hydra overrides of the run (as for ssnet train)")
    a = p.parse_args(argv)
    rows: list[dict[str, float]] = []
    original = engine_module.SegmentationModule.compute_loss

    def compute_loss(self, out, target):  # the training step's own loss, observed on the side
        loss = original(self, out, target)
        if self.training and self.global_step % a.every == 0 and torch.is_grad_enabled():
            rows.append({"step": int(self.global_step), **refiner_stats(out, target, loss)})
            atomic_write_csv(pd.DataFrame(rows), a.out, overwrite=True)
        return loss

    engine_module.SegmentationModule.compute_loss = compute_loss
    try:
        run_dir = train(compose(a.overrides), a.overrides)
    finally:
        engine_module.SegmentationModule.compute_loss = original
    print(run_dir)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
