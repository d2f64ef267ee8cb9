"""Deterministic, resumable, rank-sharded batch order.

Epoch e visits the samples in `randperm(N)` seeded from (seed, e). Global micro-batch i of the epoch is the slice
`[i·B·W, (i+1)·B·W)` of that permutation, and rank r takes its `[r·B, (r+1)·B)` part, so a W-process run sees
exactly the samples a single process with batch B·W would see, in the same order. The position is one integer
(micro-batches consumed since the start), so resuming skips exactly the consumed batches without reading them.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import Sampler

_EPOCH_STRIDE = 1_000_003  # keeps (seed, epoch) pairs from colliding: seed·stride + epoch


class ResumableBatchSampler(Sampler[list[int]]):
    """Yields this rank's index lists forever (epoch after epoch), starting at micro-batch `start`.

    Incomplete global batches at the end of an epoch are dropped so that every rank gets the same number of
    equally sized micro-batches (no rank waits in a collective for a batch that never comes).

    Args:
        num_samples: N, the dataset size.
        batch_size: B, samples per rank per micro-batch.
        world_size: W, processes.
        rank: this process.
        seed: seeds every epoch's permutation.
        start: micro-batches already consumed (across epochs).
    """

    def __init__(self, num_samples: int, batch_size: int, world_size: int = 1, rank: int = 0, seed: int = 0,
                 start: int = 0) -> None:
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is outside world size {world_size}")
        self.num_samples = num_samples
        self.batch_size = batch_size
        self.world_size = world_size
        self.rank = rank
        self.seed = seed
        self.start = start
        self.batches_per_epoch = num_samples // (batch_size * world_size)
        if self.batches_per_epoch == 0:
            raise ValueError(f"{num_samples} samples are fewer than one global batch of {batch_size} × "
                             f"{world_size} processes")

    def permutation(self, epoch: int) -> torch.Tensor:
        """[N] sample order of `epoch` (the same on every rank)."""
        generator = torch.Generator().manual_seed(self.seed * _EPOCH_STRIDE + epoch)
        return torch.randperm(self.num_samples, generator=generator)

    def position(self, consumed: int) -> tuple[int, int]:
        """(epoch, micro-batch within the epoch) after `consumed` micro-batches."""
        return divmod(consumed, self.batches_per_epoch)

    def __iter__(self) -> Iterator[list[int]]:
        epoch, index = self.position(self.start)
        global_batch = self.batch_size * self.world_size
        while True:
            order = self.permutation(epoch)
            for i in range(index, self.batches_per_epoch):
                begin = i * global_batch + self.rank * self.batch_size
                yield order[begin: begin + self.batch_size].tolist()
            epoch, index = epoch + 1, 0
