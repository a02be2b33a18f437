"""``ssnet models [--params] [--flops]``: one line per registered model; size and cost on the meta device."""
from __future__ import annotations

import argparse
import sys
from typing import Any

import torch

from ssnet import registry


def paper_kwargs(name: str, **overrides: Any) -> dict[str, Any]:
    """Builder arguments of ``name`` at the paper config (frames 10, K 4, 224², grey input)."""
    entry = registry.get(name)
    return {"frames": 10, "num_classes": 4, "in_channels": 1, "img_size": 224, **entry.paper_config, **overrides}


def model_cost(name: str, kwargs: dict[str, Any], flops: bool = True) -> tuple[int, float | None]:
    """``(parameters, forward GFLOPs per clip)`` of ``name`` built with ``kwargs`` on the meta device.

    Nothing is allocated: parameters and activations are meta tensors, and
    ``torch.utils.flop_counter`` counts the forward pass of one clip from shapes alone.
    """
    from torch.utils.flop_counter import FlopCounterMode

    entry = registry.get(name)
    with torch.device("meta"):
        model = entry.build(**kwargs)
        clip = torch.empty(1, kwargs["frames"], kwargs.get("in_channels", 1), kwargs["img_size"], kwargs["img_size"])
    params = sum(p.numel() for p in model.parameters())
    if not flops:
        return params, None
    model.eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(clip)
    return params, counter.get_total_flops() / 1e9


def count_parameters(name: str, **overrides: Any) -> int:
    """Parameters of ``name`` at its paper config, built on the meta device."""
    return model_cost(name, paper_kwargs(name, **overrides), flops=False)[0]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="ssnet models", description=__doc__)
    parser.add_argument("--params", action="store_true", help="print the parameter count at the paper config")
    parser.add_argument("--flops", action="store_true", help="also print forward GFLOPs per clip at the paper config")
    parser.add_argument("pattern", nargs="?", default="*", help="fnmatch pattern, e.g. 'ssnet*'")
    args = parser.parse_args(argv)
    for name in registry.names(args.pattern):
        if not (args.params or args.flops):
            print(name)
            continue
        try:
            params, gflops = model_cost(name, paper_kwargs(name), flops=args.flops)
        except Exception as exc:  # one broken model must not hide the others
            print(f"ssnet models: {name}: failed to build: {type(exc).__name__}: {' '.join(str(exc).split())}", file=sys.stderr)
            continue
        print("\t".join([name, str(params)] + ([f"{gflops:.2f}"] if gflops is not None else [])))
    for module, reason in registry.failures().items():
        print(f"ssnet models: {module} failed to import: {reason}", file=sys.stderr)
    return 0
