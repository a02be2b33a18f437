"""Losses shared by every model: the engine's default and SSNet's Dice term are one function."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def multiclass_soft_dice_loss(logits: torch.Tensor, target: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """Multiclass soft Dice over all K classes (background included), as smp ``DiceLoss("multiclass")``.

    Per class, intersection and cardinality are summed over batch and pixels; Dice =
    2·I / max(card, eps); a class absent from the batch's ground truth contributes 0; the mean
    is taken over K.

    Args:
        logits: ``(B, K, H, W)`` pre-softmax scores.
        target: ``(B, H, W)`` int64 class indices.

    Returns:
        scalar loss, float32.
    """
    k = logits.shape[1]
    probs = logits.float().softmax(dim=1)
    onehot = F.one_hot(target.long(), k).permute(0, 3, 1, 2).to(probs.dtype)
    dims = (0, 2, 3)
    inter = (probs * onehot).sum(dims)
    card = (probs + onehot).sum(dims)
    score = 2.0 * inter / card.clamp_min(eps)
    present = onehot.sum(dims) > 0
    return ((1.0 - score) * present).mean()
