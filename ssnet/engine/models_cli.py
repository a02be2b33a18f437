"""``ssnet models [--params]``: one line per registered model."""
from __future__ import annotations

import argparse

import torch

from ssnet import registry


def count_parameters(name: str, **overrides) -> int:
    """Parameters of ``name`` at its paper config (frames 10, K 4, 224²), built on the meta device."""
    entry = registry.get(name)
    kwargs = {"frames": 10, "num_classes": 4, "in_channels": 1, "img_size": 224, **entry.paper_config, **overrides}
    with torch.device("meta"):
        model = entry.build(**kwargs)
    return sum(p.numel() for p in model.parameters())


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="ssnet models", description=__doc__)
    parser.add_argument("--params", action="store_true", help="also print the parameter count at the paper config")
    parser.add_argument("pattern", nargs="?", default="*", help="fnmatch pattern, e.g. 'ssnet*'")
    args = parser.parse_args(argv)
    for name in registry.names(args.pattern):
        print(f"{name}\t{count_parameters(name)}" if args.params else name)
    return 0
