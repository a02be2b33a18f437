"""Loading local encoder weights (never downloads): adapt the stem to the input channels like smp.

Shared by every model with a ResNet-style encoder (torchvision key names ``conv1``, ``bn1``,
``layer1`` … ``layer4``; ``fc.*`` is ignored).
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn

from ssnet.errors import input_error


def adapt_stem_kernel(weight: torch.Tensor, in_channels: int) -> torch.Tensor:
    """Adapt an RGB stem kernel (O, 3, k, k) to ``in_channels``: sum for 1, cycle scaled by 3/C otherwise."""
    if weight.shape[1] == in_channels:
        return weight
    if in_channels == 1:
        return weight.sum(1, keepdim=True)
    reps = [weight[:, i % weight.shape[1]] for i in range(in_channels)]
    return torch.stack(reps, 1) * (weight.shape[1] / in_channels)


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a local state dict (unwrapping ``state_dict``/``model`` and ``module.``/``encoder.`` prefixes)."""
    path = Path(path)
    if not path.is_file():
        raise input_error(path, "encoder weights file not found (weights are never downloaded; give a local file)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise input_error(path, f"cannot read encoder weights ({type(exc).__name__}: {exc})") from exc
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    return {k.removeprefix("module.").removeprefix("encoder."): v for k, v in state.items()}


def load_local_encoder_weights(encoder: nn.Module, path: str | Path) -> None:
    """Load a local ResNet state dict into ``encoder``, adapting the stem's input channels."""
    own = encoder.state_dict()
    adapted = {}
    for key, value in read_state_dict(path).items():
        if key.startswith("fc.") or key not in own:
            continue
        if key == "conv1.weight":
            value = adapt_stem_kernel(value, own[key].shape[1])
        adapted[key] = value
    missing = [k for k in own if k not in adapted]
    if missing:
        raise input_error(path, f"encoder weights lack {len(missing)} tensor(s), e.g. {missing[0]!r}")
    encoder.load_state_dict(adapted, strict=False)
