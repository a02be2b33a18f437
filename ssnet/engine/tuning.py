"""Choosing settings on the validation split: train a grid of overrides, score each run on ``val``.

Used by the Sunnybrook benchmark (``--grid``) and by ``benchmarks/tune_quick.py`` (the evidence behind
the quick profile). The test split is never read here: each run's validation predictions go to
``<run>/val_predictions`` and are scored with the shared scorer.
"""
from __future__ import annotations

import itertools
import re
import sys
from pathlib import Path

import pandas as pd

from ssnet.errors import SsnetError
from ssnet.io import atomic_write_text


def parse_grid(items: list[str] | None) -> list[list[str]]:
    """``["train.lr=1e-4,1e-3", ...]`` → every combination as a list of overrides ([[]] without a grid).

    Commas inside brackets belong to a list value: ``data.augment_scale=null,[0.8,1.25]`` has two values.
    """
    axes = []
    for item in items or []:
        key, sep, values = item.partition("=")
        vals = [v.strip() for v in re.split(r",(?![^\[\]]*\])", values) if v.strip()]
        if not sep or not key.strip() or not vals:
            raise SsnetError(f"--grid {item!r}: expected KEY=V1,V2,...")
        axes.append([f"{key.strip()}={v}" for v in vals])
    return [list(c) for c in itertools.product(*axes)] if axes else [[]]


def train_or_reuse(overrides: list[str]) -> Path:
    """Train one run, or reuse a finished one with the same resolved config, trained on the data's current split."""
    from ssnet.engine.config import compose
    from ssnet.engine.runs import find_finished, run_name
    from ssnet.engine.train import ensure_split, train

    cfg = compose(overrides)
    name = run_name(cfg)
    run_root = Path(cfg.run_root).resolve()
    run_dir, why = find_finished(run_root, name, current_split=ensure_split(cfg))
    if run_dir is not None:
        print(f"reusing {run_dir}", file=sys.stderr)
        return run_dir
    print(f"training {cfg.model.key} -> {run_root / name}" + (f" (not reusing {why})" if why else ""), file=sys.stderr)
    return train(cfg, overrides)


def val_per_case(run_dir: Path, data_dir: Path, protocol: str = "both", classes: tuple[int, ...] = (1, 2, 3),
                 tta: str = "none") -> pd.DataFrame:
    """Per-case scores of a finished run on the validation split (predictions cached in ``run_dir/val_predictions``,
    or ``val_predictions_tta-<tta>`` with test-time augmentation)."""
    from ssnet.engine.predict import predict_run
    from ssnet.evaluation.score import score_predictions

    pred = Path(run_dir) / ("val_predictions" if tta == "none" else f"val_predictions_tta-{tta}")
    if not (pred / ".done").exists():
        predict_run(Path(run_dir), Path(data_dir), pred, split="val", force=True, tta=tta)
        atomic_write_text(pred / ".done", "")
    return score_predictions(data_dir, pred, split="val", protocol=protocol, classes=classes)
