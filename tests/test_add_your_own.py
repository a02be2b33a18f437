"""The README's "Add your own method", end to end in a copy of the project: one file in ``baselines/`` and
one ``configs/model/<name>.yaml`` make a model that ``ssnet models`` lists, ``ssnet train`` trains and
``ssnet reproduce table1`` reports as its own row. A broken module names itself in one line and hides nothing.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]

TOY_MODEL = '''\
"""Toy: one 3x3 convolution over the stacked frames (an example of the model contract)."""
from __future__ import annotations

import torch
import torch.nn as nn

from ssnet.registry import register


class ToyMine(nn.Module):
    def __init__(self, frames: int, num_classes: int, in_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(frames * in_channels, num_classes, 3, padding=1)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:  # (B, T, C, H, W) -> (B, K, H, W)
        b, t, c, h, w = frames.shape
        return self.conv(frames.reshape(b, t * c, h, w))


@register("toy_mine", kind="image", display_name="Toy (mine)", test_config={"frames": 2, "img_size": 32})
def build_toy_mine(*, frames: int, num_classes: int = 4, in_channels: int = 1, img_size: int = 224) -> nn.Module:
    return ToyMine(frames, num_classes, in_channels)
'''

TOY_CONFIG = """\
name: toy_mine
display_name: Toy (mine)
"""  # no options: the builder has none

BROKEN = 'raise ImportError("needs the package frobnicate, which is not installed")\n'


def _ssnet(project: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(project), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "ssnet.cli", *args], cwd=project, env=env, capture_output=True,
                          text=True, timeout=600)


def test_add_your_own_method(tiny_split_dataset: Path, tmp_path: Path) -> None:
    project = tmp_path / "project"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for folder in ("ssnet", "baselines", "configs"):
        shutil.copytree(ROOT / folder, project / folder, ignore=ignore)
    (project / "baselines" / "toy_mine.py").write_text(TOY_MODEL)
    (project / "configs" / "model" / "toy_mine.yaml").write_text(TOY_CONFIG)
    (project / "baselines" / "broken.py").write_text(BROKEN)

    # listed; the broken module names itself in one stderr line and the others stay listed
    models = _ssnet(project, "models")
    assert models.returncode == 0, models.stderr
    listed = models.stdout.split()
    assert {"toy_mine", "unet", "ssnet"} <= set(listed) and "broken" not in listed
    broken = [line for line in models.stderr.splitlines() if "baselines.broken" in line]
    assert len(broken) == 1 and "frobnicate" in broken[0]

    small = ["data.size=32", "data.frames=3"]
    trained = _ssnet(project, "train", "model=toy_mine", "profile=smoke", f"data.dir={tiny_split_dataset}",
                     f"run_root={tmp_path / 'runs'}", *small)
    assert trained.returncode == 0, trained.stderr
    run_dir = Path(trained.stdout.strip().splitlines()[-1])
    assert run_dir.name.startswith("toy_mine-smoke") and (run_dir / "per_case.csv").exists()

    out = tmp_path / "results"
    bad = _ssnet(project, "reproduce", "table1", "--profile", "smoke", "--data", str(tiny_split_dataset),
                 "--methods", "unet,nope", "--out", str(out))
    errors = [line for line in bad.stderr.splitlines() if "error" in line]
    assert bad.returncode == 1 and len(errors) == 1 and "Traceback" not in bad.stderr
    assert "unknown method(s) nope; available: unet" in bad.stderr and "toy_mine" in bad.stderr

    table = _ssnet(project, "reproduce", "table1", *small, "--profile", "smoke", "--data", str(tiny_split_dataset),
                   "--methods", "toy_mine,unet", "--out", str(out))
    assert table.returncode == 0, table.stderr
    rows = pd.read_csv(out / "table1.csv")
    paper = rows[rows["Protocol"] == "paper"]
    assert list(paper["Method"].iloc[:2]) == ["UNet", "Toy (mine)"]  # paper order kept; the new method follows
    assert paper.set_index("Method").loc["Toy (mine)", "Input"] == "Image"
    assert not (ROOT / "baselines" / "toy_mine.py").exists()  # the real tree is untouched
