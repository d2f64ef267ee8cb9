"""The batch order: deterministic from the seed, sharded so W ranks see one process's global batch, resumable."""

from __future__ import annotations

import itertools

import pytest

from lare.training.sampler import ResumableBatchSampler


def _take(sampler, n):
    return list(itertools.islice(iter(sampler), n))


def test_order_is_a_seeded_permutation_per_epoch():
    sampler = ResumableBatchSampler(10, batch_size=3, seed=5)
    assert sampler.batches_per_epoch == 3  # the incomplete last batch is dropped
    batches = _take(sampler, 6)
    epoch0 = [i for b in batches[:3] for i in b]
    assert len(set(epoch0)) == 9 and set(epoch0) <= set(range(10))
    assert batches[:3] != batches[3:]  # the next epoch is reshuffled
    assert _take(ResumableBatchSampler(10, 3, seed=5), 6) == batches
    assert _take(ResumableBatchSampler(10, 3, seed=6), 3) != batches[:3]


def test_ranks_split_the_single_process_global_batch():
    single = _take(ResumableBatchSampler(20, batch_size=4, seed=1), 8)
    ranks = [_take(ResumableBatchSampler(20, batch_size=2, world_size=2, rank=r, seed=1), 8) for r in (0, 1)]
    assert [a + b for a, b in zip(*ranks)] == single


def test_resuming_skips_exactly_the_consumed_batches():
    full = _take(ResumableBatchSampler(13, batch_size=2, seed=3), 20)  # 6 batches per epoch: crosses epochs
    for start in (0, 1, 6, 7, 13):
        assert _take(ResumableBatchSampler(13, batch_size=2, seed=3, start=start), 20 - start) == full[start:]
    assert ResumableBatchSampler(13, 2, seed=3).position(13) == (2, 1)


def test_too_little_data_is_an_error():
    with pytest.raises(ValueError, match="fewer than one global batch"):
        ResumableBatchSampler(3, batch_size=2, world_size=2)
