"""A batch sampler whose batches depend only on (seed, step): exact resume after a crash.

Batch ``s`` takes positions ``j·B … (j+1)·B`` of the epoch permutation ``e = s // (N // B)``
(drawn from ``seed`` and ``e``), and every sample carries an augmentation seed derived from
(seed, s, position). A run resumed at step ``s`` therefore sees exactly the batches and the
augmentations that an uninterrupted run sees from ``s`` on.
"""
from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from torch.utils.data import Sampler


class StepBatchSampler(Sampler[list[tuple[int, int]]]):
    """Yield ``total_steps − start_step`` batches of ``(index, augmentation seed)`` pairs."""

    def __init__(self, n: int, batch_size: int, seed: int, total_steps: int, start_step: int = 0) -> None:
        if n < 1:
            raise ValueError("cannot sample batches from an empty dataset")
        self.n, self.seed = n, int(seed)
        self.batch_size = min(int(batch_size), n)
        self.per_epoch = max(1, n // self.batch_size)
        self.total_steps, self.start_step = int(total_steps), int(start_step)

    def __len__(self) -> int:
        return max(0, self.total_steps - self.start_step)

    def batch(self, step: int) -> list[tuple[int, int]]:
        epoch, j = divmod(step, self.per_epoch)
        perm = np.random.default_rng([self.seed, epoch]).permutation(self.n)
        idx = perm[j * self.batch_size : (j + 1) * self.batch_size]
        return [(int(i), int(np.random.SeedSequence([self.seed, step, k]).generate_state(1)[0])) for k, i in enumerate(idx)]

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        for step in range(self.start_step, self.total_steps):
            yield self.batch(step)
