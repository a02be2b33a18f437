"""Peak memory of one run, reset at its start, on a GPU or on the CPU.

On a GPU this is ``torch.cuda`` max-allocated memory. On the CPU it is the process's resident-set high-water
mark (``VmHWM``), which Linux resets when ``5`` is written to ``/proc/self/clear_refs``: without the reset,
runs that share a process (``ssnet reproduce`` trains every row in one) would all report the largest earlier
peak. Where the reset is unavailable (not Linux, or a restricted ``/proc``) the lifetime peak
(``getrusage`` ``ru_maxrss``) is returned and :func:`reset_peak_memory` says so by returning False.
"""
from __future__ import annotations

import re
import resource
from pathlib import Path

import torch

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


def reset_peak_memory(device: torch.device | None = None) -> bool:
    """Start a new peak-memory window; True when the reset took effect (always on a GPU)."""
    if device is not None and device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return True
    try:
        _CLEAR_REFS.write_text("5")
    except OSError:
        return False
    return _vm_hwm_kib() is not None


def _vm_hwm_kib() -> int | None:
    try:
        match = re.search(r"^VmHWM:\s+(\d+)\s+kB", _STATUS.read_text(), re.MULTILINE)
    except OSError:
        return None
    return int(match.group(1)) if match else None


def peak_memory_mb(device: torch.device | None = None) -> float:
    """Peak memory (MiB) since the last :func:`reset_peak_memory`: CUDA max allocated on a GPU; on the CPU
    the process's peak resident set (it includes the in-memory dataset and the interpreter)."""
    if device is not None and device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    hwm = _vm_hwm_kib()
    return (hwm if hwm is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) / 1024
