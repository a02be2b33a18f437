"""Per-run peak memory on the CPU: reset at a run's start, so a later run does not inherit an earlier peak."""
import subprocess
import sys

import pytest

from ssnet.engine.memory import reset_peak_memory

# Run in a fresh interpreter: in the test process, memory freed by earlier tests stays resident in the allocator
# and would be reused by the "second run" without raising its peak.
SCENARIO = """
import numpy as np
from ssnet.engine.memory import peak_memory_mb, reset_peak_memory
assert reset_peak_memory()
block = np.ones(256 * 2**20, dtype=np.uint8)  # a 256 MiB "first run", touched page by page
first = peak_memory_mb()
del block
assert reset_peak_memory()
second = peak_memory_mb()  # the start of a "second run" in the same process
block = np.ones(64 * 2**20, dtype=np.uint8)
third = peak_memory_mb()
print(first, second, third)
"""


def test_cpu_peak_memory_resets_between_runs():
    if not reset_peak_memory():
        pytest.skip("no resettable resident-set high-water mark here (needs Linux /proc/self/clear_refs)")
    res = subprocess.run([sys.executable, "-c", SCENARIO], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    first, second, third = map(float, res.stdout.split())
    assert first - second > 200, (first, second)  # the reset forgot the first run's peak
    assert third - second > 50, (second, third)   # and the second run's own peak is measured
