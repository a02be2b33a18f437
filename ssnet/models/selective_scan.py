"""Mamba's selective scan: ``mamba_ssm``'s fused CUDA kernel when available, else a PyTorch scan.

The recurrence, per channel ``d`` and state ``n`` (``A < 0``)::

    h_t = exp(Δ_t · A) ⊙ h_{t-1} + Δ_t · B_t · u_t
    y_t = C_t · h_t + D · u_t,      y_t ← y_t · silu(z_t)   (when z is given)

Two PyTorch scans compute the states, both multiplying only decays in (0, 1] (no ``exp`` of a
cumulative sum), so neither can overflow:

* on the CPU, :func:`~ssnet.models.selective_scan_cpu.sequential_scan`: one fused in-place step per
  position on a cache-sized block of a time-major state, with a hand-written backward that
  recomputes each block's states instead of storing ``(b, d, L, n)`` tensors (``L`` small
  in-cache steps are cheap on a CPU; allocating and first touching full-size tensors is not);
* elsewhere (CUDA without ``mamba_ssm``, ``meta``), or when ``chunk_size`` is given, the chunked
  scan: the sequence is split into ``n_c`` chunks of ``L_c`` ≈ √L steps. A loop over the ``L_c``
  positions of a chunk runs all chunks at once (local states from a zero start, plus the running
  product of decays); a second loop over the ``n_c`` chunks carries each chunk's end state into
  the next. That is about 2·√L small vectorised steps instead of L (stage 1 of Vivim at T = 10,
  224² has L = 31,360: 178 + 177 steps), the right trade where each step is a kernel launch.

Neither reads tensor values on the host, so both run on the ``meta`` device and under
``FlopCounterMode``.
"""
from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F

from ssnet.models.selective_scan_cpu import sequential_scan

SCAN_BACKENDS = ("auto", "torch", "mamba_ssm")


@functools.lru_cache(maxsize=1)
def mamba_ssm_available() -> bool:
    """Whether ``mamba_ssm``'s fused ``selective_scan_fn`` can be imported."""
    try:
        from mamba_ssm.ops.selective_scan_interface import selective_scan_fn  # noqa: F401
    except Exception:
        return False
    return True


def chunked_scan(
    delta: torch.Tensor, u: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor, chunk_size: int | None = None
) -> torch.Tensor:
    """``y = C · h`` of the recurrence by chunks (see the module docstring); shapes as :func:`sequential_scan`."""
    b, d, length = u.shape
    n = A.shape[1]
    lc = int(chunk_size) if chunk_size else max(1, math.isqrt(length - 1) + 1)
    nc = -(-length // lc)
    pad = nc * lc - length
    if pad:  # padded steps: zero step size (decay 1, input 0), zero read-out
        delta, u, B, C = (F.pad(t, (0, pad)) for t in (delta, u, B, C))

    # (b, d, nc, lc, n): per-step decay and input
    decay = torch.exp(delta.unsqueeze(-1) * A[:, None, :]).reshape(b, d, nc, lc, n)
    drive = ((delta * u).unsqueeze(-1) * B.transpose(1, 2).unsqueeze(1)).reshape(b, d, nc, lc, n)

    # 1) within chunks (all chunks at once): local states from zero, running decay products.
    #    unbind (not indexing) keeps the backward linear: one stack instead of a zero-filled
    #    full-size gradient per step.
    decays, drives = decay.unbind(3), drive.unbind(3)
    h, p = drives[0], decays[0]
    local, prod = [h], [p]
    for a_j, x_j in zip(decays[1:], drives[1:]):
        h = a_j * h + x_j
        p = a_j * p
        local.append(h)
        prod.append(p)
    local_h = torch.stack(local, 3)  # (b, d, nc, lc, n)
    prod_p = torch.stack(prod, 3)

    # 2) across chunks: the true state entering each chunk
    ends, spans = local[-1].unbind(2), prod[-1].unbind(2)  # each chunk's local end state and total decay
    carry = [torch.zeros_like(ends[0])]
    for end, span in zip(ends[:-1], spans[:-1]):
        carry.append(span * carry[-1] + end)
    carry_in = torch.stack(carry, 2)  # (b, d, nc, n)

    states = local_h + prod_p * carry_in.unsqueeze(3)  # (b, d, nc, lc, n)
    c_read = C.transpose(1, 2).reshape(b, nc, lc, n)
    return torch.einsum("bdcln,bcln->bdcl", states, c_read).reshape(b, d, nc * lc)[..., :length]


def selective_scan_torch(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    delta_bias: torch.Tensor | None = None,
    delta_softplus: bool = False,
    chunk_size: int | None = None,
) -> torch.Tensor:
    """Selective scan in plain PyTorch, with ``mamba_ssm.selective_scan_fn``'s signature and maths.

    Args:
        u: ``(b, d, L)`` input.
        delta: ``(b, d, L)`` step sizes (before ``delta_bias``/softplus).
        A: ``(d, n)`` state matrix (negative for a decaying state).
        B: ``(b, n, L)`` input projection.
        C: ``(b, n, L)`` output projection.
        D: ``(d,)`` skip weight, or None.
        z: ``(b, d, L)`` gate (``y · silu(z)``), or None.
        delta_bias: ``(d,)`` added to ``delta``, or None.
        delta_softplus: apply softplus to ``delta`` (after the bias).
        chunk_size: steps per chunk of the chunked scan; None: the sequential scan on the CPU, else
            chunks of ``ceil(sqrt(L))`` steps.

    Returns:
        ``(b, d, L)`` output in ``u``'s dtype (computed in at least float32).
    """
    out_dtype = u.dtype
    work = torch.promote_types(u.dtype, torch.float32)
    u, delta, B, C = (t.to(work) for t in (u, delta, B, C))
    A = A.to(work)
    if delta_bias is not None:
        delta = delta + delta_bias.to(work)[:, None]
    if delta_softplus:
        delta = F.softplus(delta)
    if chunk_size is None and u.device.type == "cpu":
        y = sequential_scan(delta, u, A, B, C)
    else:
        y = chunked_scan(delta, u, A, B, C, chunk_size)
    if D is not None:
        y = y + D.to(work)[:, None] * u
    if z is not None:
        y = y * F.silu(z.to(work))
    return y.to(out_dtype)


def selective_scan_reference(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    delta_bias: torch.Tensor | None = None,
    delta_softplus: bool = False,
) -> torch.Tensor:
    """Naive step-by-step selective scan (one Python step per position); for tests only."""
    if delta_bias is not None:
        delta = delta + delta_bias[:, None]
    if delta_softplus:
        delta = F.softplus(delta)
    b, d, length = u.shape
    h = u.new_zeros(b, d, A.shape[1])
    ys = []
    for t in range(length):
        h = torch.exp(delta[:, :, t, None] * A) * h + (delta[:, :, t] * u[:, :, t])[..., None] * B[:, None, :, t]
        ys.append((h * C[:, None, :, t]).sum(-1))
    y = torch.stack(ys, -1)
    if D is not None:
        y = y + D[:, None] * u
    if z is not None:
        y = y * F.silu(z)
    return y


def selective_scan(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    delta_bias: torch.Tensor | None = None,
    delta_softplus: bool = False,
    backend: str = "auto",
    checkpoint: bool | None = None,
) -> torch.Tensor:
    """Selective scan by ``backend``: ``torch``, ``mamba_ssm`` (fused CUDA), or ``auto``.

    ``auto`` uses ``mamba_ssm`` for CUDA tensors when it is importable, else the PyTorch scan.
    ``checkpoint`` (PyTorch scan only) recomputes the scan in the backward pass instead of keeping
    its ``(b, d, L, n)`` intermediates (the CPU's sequential scan keeps none); ``None`` means on for
    CUDA tensors while gradients are on.
    Shapes as :func:`selective_scan_torch`.
    """
    if backend not in SCAN_BACKENDS:
        raise ValueError(f"unknown scan_backend {backend!r}; available: {', '.join(SCAN_BACKENDS)}")
    use_fused = backend == "mamba_ssm" or (backend == "auto" and u.is_cuda and mamba_ssm_available())
    if use_fused:
        try:
            from mamba_ssm.ops.selective_scan_interface import selective_scan_fn
        except Exception as exc:
            raise RuntimeError(
                f"scan_backend='mamba_ssm' but mamba_ssm cannot be imported ({type(exc).__name__}: {exc}); "
                "install the GPU extra (pip install -e .[gpu]) or use scan_backend='torch'"
            ) from exc
        return selective_scan_fn(
            u.contiguous(), delta.contiguous(), A.contiguous(), B.contiguous(), C.contiguous(),
            D=None if D is None else D.float(), z=None if z is None else z.contiguous(),
            delta_bias=None if delta_bias is None else delta_bias.float(), delta_softplus=delta_softplus,
        )
    if checkpoint is None:
        checkpoint = u.is_cuda
    if checkpoint and torch.is_grad_enabled():
        from torch.utils.checkpoint import checkpoint as recompute

        return recompute(selective_scan_torch, u, delta, A, B, C, D, z, delta_bias, delta_softplus, use_reentrant=False)
    return selective_scan_torch(u, delta, A, B, C, D, z, delta_bias, delta_softplus)
