"""A batch sampler whose batches depend only on (seed, step): exact resume after a crash.

Batch ``s`` takes positions ``j·B … (j+1)·B`` of the epoch permutation ``e = s // (N // B)``
(drawn from ``seed`` and ``e``), and every sample carries an augmentation seed derived from
(seed, s, position). A run resumed at step ``s`` therefore sees exactly the batches and the
augmentations that an uninterrupted run sees from ``s`` on.

Distributed data parallel (``train.devices=N train.strategy=ddp``): the sampler shards itself
(the Trainer gets ``use_distributed_sampler=False``). ``B`` stays the *global* batch; rank ``r``
of ``W`` processes takes positions ``r, r + W, r + 2W, …`` of the step's global batch, so the
union over ranks is exactly the single-process batch and still depends only on (seed, step).
"""
from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from torch.utils.data import Sampler


class StepBatchSampler(Sampler[list[tuple[int, int]]]):
    """Yield ``total_steps − start_step`` batches of ``(index, augmentation seed)`` pairs (this rank's share)."""

    def __init__(self, n: int, batch_size: int, seed: int, total_steps: int, start_step: int = 0,
                 rank: int = 0, world_size: int = 1) -> None:
        if n < 1:
            raise ValueError("cannot sample batches from an empty dataset")
        self.n, self.seed = n, int(seed)
        self.batch_size = min(int(batch_size), n)
        self.per_epoch = max(1, n // self.batch_size)
        self.total_steps, self.start_step = int(total_steps), int(start_step)
        self.rank, self.world_size = int(rank), int(world_size)
        if not 0 <= self.rank < self.world_size:
            raise ValueError(f"rank {rank} outside world size {world_size}")
        if self.batch_size < self.world_size:
            raise ValueError(f"global batch {self.batch_size} is smaller than the {self.world_size} processes")

    def __len__(self) -> int:
        return max(0, self.total_steps - self.start_step)

    def global_batch(self, step: int) -> list[tuple[int, int]]:
        """The whole step batch (every rank's share), a function of (seed, step) only."""
        epoch, j = divmod(step, self.per_epoch)
        perm = np.random.default_rng([self.seed, epoch]).permutation(self.n)
        idx = perm[j * self.batch_size : (j + 1) * self.batch_size]
        return [(int(i), int(np.random.SeedSequence([self.seed, step, k]).generate_state(1)[0])) for k, i in enumerate(idx)]

    def batch(self, step: int) -> list[tuple[int, int]]:
        """This rank's share of step ``step``."""
        return self.global_batch(step)[self.rank :: self.world_size]

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        for step in range(self.start_step, self.total_steps):
            yield self.batch(step)
