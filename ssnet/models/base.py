"""Shared model output type and helpers."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class SegOutput:
    """A model's output: class logits ``(B, K, H, W)`` plus named auxiliary tensors."""

    logits: torch.Tensor
    aux: dict[str, torch.Tensor] = field(default_factory=dict)


def as_output(out: torch.Tensor | SegOutput) -> SegOutput:
    """Wrap plain logits in a :class:`SegOutput`."""
    return out if isinstance(out, SegOutput) else SegOutput(out)
