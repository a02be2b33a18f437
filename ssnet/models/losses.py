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


def cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Pixel-mean cross-entropy, ``F.cross_entropy(logits, target)``, that also runs in deterministic mode on CUDA.

    CUDA's fused 2-D NLL mean has no deterministic kernel (``torch.use_deterministic_algorithms(True)``, which
    ``train.deterministic`` sets, makes it raise); there the per-pixel losses are averaged instead. Elsewhere
    the fused call is kept, so CPU results are bit-identical to ``F.cross_entropy``.
    """
    if logits.is_cuda and torch.are_deterministic_algorithms_enabled():
        return F.cross_entropy(logits, target, reduction="none").mean()
    return F.cross_entropy(logits, target)


def ce_dice_loss(logits: torch.Tensor, target: torch.Tensor, ce_weight: float = 1.0, dice_weight: float = 1.0) -> torch.Tensor:
    """``ce_weight``·cross-entropy + ``dice_weight``·:func:`multiclass_soft_dice_loss` (TransUNet 0.5/0.5, SwinUNETR 1/1).

    Args:
        logits: ``(B, K, H, W)`` pre-softmax scores (log-probabilities work too: softmax is unchanged).
        target: ``(B, H, W)`` int64 class indices.
        ce_weight: weight of the pixel-mean cross-entropy.
        dice_weight: weight of the soft Dice loss.

    Returns:
        scalar loss, float32.
    """
    loss = dice_weight * multiclass_soft_dice_loss(logits, target)
    if ce_weight:
        loss = loss + ce_weight * cross_entropy(logits.float(), target.long())
    return loss
