"""Selective-scan core for the CPU: a sequential scan in cache-sized blocks with a hand-written backward.

Computes ``y_t = C_t · h_t`` with ``h_t = exp(Δ_t · A) ⊙ h_{t-1} + Δ_t · u_t · B_t`` (``h_{-1} = 0``)
in the step order of the naive reference. The state is time-major ``(L, b, n, d)``; the steps are
taken in blocks of ``k`` (about ``BLOCK_ELEMENTS`` state values, ~1 MiB): a block's decays and
inputs are built with a few vectorised ops into reused buffers, then each step is one fused
in-place ``addcmul_`` on a contiguous ``(b, n, d)`` slice, and the read-out ``C_t · h_t`` is one
batched product per block. Only decays in (0, 1] are multiplied, so nothing can overflow.

Only the state entering each block is kept for the backward. It walks the blocks in reverse:
recompute the block's decays and states from its entering state, then run the recurrence of the
state gradients backwards (``g_t = C_t ∂y_t + a_{t+1} ⊙ g_{t+1}``) and reduce the gradients of
``Δ``, ``u``, ``A``, ``B``, ``C`` block by block. No ``(L, b, d, n)`` tensor is ever allocated: on a
CPU, allocating and first touching such tensors (page faults) cost more than the arithmetic,
which is why this is several times faster there than the chunked scan of
:mod:`ssnet.models.selective_scan`. On a GPU the ``L`` small kernel launches would dominate, so the
chunked scan stays in use there.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch.autograd.function import once_differentiable

BLOCK_ELEMENTS = 2**18  # state elements per block of steps (1 MiB in float32)


class _Steps:
    """A reusable ``(k, b, n, d)`` block buffer and its ``k`` step views (unbound once, not per block)."""

    def __init__(self, like: torch.Tensor, k: int, b: int, n: int, d: int) -> None:
        self.data = like.new_empty(k, b, n, d)
        self.steps = self.data.unbind(0)

    def __call__(self, m: int) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        return self.data[:m], self.steps[:m]


def _recur_(h: Sequence[torch.Tensor], a: Sequence[torch.Tensor], reverse: bool = False) -> None:
    """In place over the steps: ``h[t] += a[t]·h[t−1]`` forward, or ``h[t] += a[t+1]·h[t+1]`` in reverse."""
    if reverse:
        for t in range(len(h) - 2, -1, -1):
            h[t].addcmul_(a[t + 1], h[t + 1])
    else:
        for t in range(1, len(h)):
            h[t].addcmul_(a[t], h[t - 1])


def _time_major(x: torch.Tensor) -> torch.Tensor:
    """``(b, c, L)`` → contiguous ``(L, b, c)``."""
    return x.permute(2, 0, 1).contiguous()


def _rows(x: torch.Tensor) -> torch.Tensor:
    """Merge the leading ``(steps, b)`` dims of a time-major tensor: the batch of a ``bmm``."""
    return x.flatten(0, 1)


def _block_states(
    dt: torch.Tensor, du: torch.Tensor, bt: torch.Tensor, at: torch.Tensor, h0: torch.Tensor,
    decay: _Steps, h: _Steps,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One block of ``m`` steps from the entering state ``h0 (b, n, d)``: decays ``exp(Δ·A)`` and states."""
    m = dt.shape[0]
    (a, a_steps), (x, h_steps) = decay(m), h(m)
    torch.mul(dt.unsqueeze(2), at, out=a).exp_()
    torch.mul(du.unsqueeze(2), bt.unsqueeze(-1), out=x)  # the inputs Δ·u·B, scanned in place into the states
    h_steps[0].addcmul_(a_steps[0], h0)
    _recur_(h_steps, a_steps)
    return a, x


class SequentialScan(torch.autograd.Function):
    """``(delta, u, A, B, C)`` → ``y (b, d, L)``; shapes as :func:`sequential_scan` (``delta`` after softplus).

    States are laid out ``(L, b, n, d)``: sums over ``n`` and ``d`` then run over whole rows. The
    steps are processed in blocks of ``k`` (about ``BLOCK_ELEMENTS`` state values), so a block's
    temporaries stay in cache and are reused; only the state entering each block is kept for the
    backward, which recomputes a block's decays and states before running it in reverse.
    """

    @staticmethod
    def forward(ctx: Any, delta: torch.Tensor, u: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor) -> torch.Tensor:
        dt, ut, bt, ct, at = _time_major(delta), _time_major(u), _time_major(B), _time_major(C), A.t().contiguous()
        du = dt * ut
        (length, b, d), n = dt.shape, at.shape[0]
        k = max(1, min(length, BLOCK_ELEMENTS // (b * d * n)))
        decay, h = _Steps(dt, k, b, n, d), _Steps(dt, k, b, n, d)
        entering = dt.new_zeros(-(-length // k), b, n, d)  # the state entering each block
        y = dt.new_empty(length, b, d)
        for i, s in enumerate(range(0, length, k)):
            e = min(s + k, length)
            _, h_blk = _block_states(dt[s:e], du[s:e], bt[s:e], at, entering[i], decay, h)
            torch.bmm(_rows(ct[s:e]).unsqueeze(1), _rows(h_blk), out=_rows(y[s:e]).unsqueeze(1))
            if e < length:
                entering[i + 1].copy_(h_blk[-1])
        ctx.block = k
        ctx.save_for_backward(dt, ut, du, at, bt, ct, entering)
        return y.permute(1, 2, 0)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_y: torch.Tensor) -> tuple[torch.Tensor, ...]:
        dt, ut, du, at, bt, ct, entering = ctx.saved_tensors
        k, (length, b, d), n = ctx.block, dt.shape, at.shape[0]
        gy = _time_major(grad_y)
        decay, h, g, scratch = (_Steps(dt, k, b, n, d) for _ in range(4))
        g_dt, g_du, g_b, g_c = torch.empty_like(dt), torch.empty_like(dt), torch.empty_like(bt), torch.empty_like(ct)
        g_at = torch.zeros_like(at)
        later_g, later_decay = dt.new_zeros(b, n, d), dt.new_zeros(b, n, d)  # g and decay of the step after the block
        for i, s in reversed(list(enumerate(range(0, length, k)))):
            e = min(s + k, length)
            a_blk, h_blk = _block_states(dt[s:e], du[s:e], bt[s:e], at, entering[i], decay, h)
            (g_blk, g_steps), (tmp, _) = g(e - s), scratch(e - s)
            # total gradient of each state: ∂y_t/∂h_t = C_t ⊗ ∂y_t, plus a_{t+1} ⊙ g_{t+1} (reversed recurrence)
            torch.mul(gy[s:e].unsqueeze(2), ct[s:e].unsqueeze(-1), out=g_blk)
            g_steps[-1].addcmul_(later_decay, later_g)
            _recur_(g_steps, decay(e - s)[1], reverse=True)
            torch.sum(torch.mul(h_blk, gy[s:e].unsqueeze(2), out=tmp), -1, out=g_c[s:e])
            torch.sum(torch.mul(g_blk, du[s:e].unsqueeze(2), out=tmp), -1, out=g_b[s:e])
            torch.bmm(_rows(bt[s:e]).unsqueeze(1), _rows(g_blk), out=_rows(g_du[s:e]).unsqueeze(1))
            # through the decays: ∂/∂(Δ·A)_t = g_t ⊙ h_{t-1} ⊙ a_t
            torch.mul(g_blk[0], entering[i], out=tmp[0])
            torch.mul(g_blk[1:], h_blk[:-1], out=tmp[1:])
            tmp.mul_(a_blk)
            later_g.copy_(g_blk[0])
            later_decay.copy_(a_blk[0])
            torch.sum(torch.mul(tmp, at, out=g_blk), 2, out=g_dt[s:e])
            g_at += tmp.mul_(dt[s:e].unsqueeze(2)).sum((0, 1))
        g_dt.addcmul_(g_du, ut)
        return g_dt.permute(1, 2, 0), (g_du * dt).permute(1, 2, 0), g_at.t(), g_b.permute(1, 2, 0), g_c.permute(1, 2, 0)


def sequential_scan(
    delta: torch.Tensor, u: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor
) -> torch.Tensor:
    """``y = C · h`` of the selective-scan recurrence; ``delta``, ``u``: ``(b, d, L)``, ``A``: ``(d, n)``,
    ``B``, ``C``: ``(b, n, L)``, all one floating dtype → ``(b, d, L)``."""
    return SequentialScan.apply(delta, u, A, B, C)
