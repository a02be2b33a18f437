"""Per-run peak memory on the CPU: reset at a run's start, so a later run does not inherit an earlier peak."""
import numpy as np
import pytest

from ssnet.engine.memory import peak_memory_mb, reset_peak_memory


def test_cpu_peak_memory_resets_between_runs():
    if not reset_peak_memory():
        pytest.skip("no resettable resident-set high-water mark here (needs Linux /proc/self/clear_refs)")
    block = np.ones(256 * 2**20, dtype=np.uint8)  # a 256 MiB "first run", touched page by page
    first = peak_memory_mb()
    del block
    assert reset_peak_memory()
    second = peak_memory_mb()  # a small "second run" in the same process
    assert first - second > 200, (first, second)
    block = np.ones(64 * 2**20, dtype=np.uint8)
    assert peak_memory_mb() - second > 50
    del block
