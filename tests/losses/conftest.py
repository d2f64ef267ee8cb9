"""Fixtures shared by the loss tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch


@pytest.fixture(autouse=True)
def single_thread() -> Iterator[None]:
    """Run each loss test on one intra-op thread, then restore the setting.

    The tensors here are tiny, so threads buy nothing, while on a busy shared CPU the OpenMP barriers
    between hundreds of small U-Net ops cost up to 100× (seconds per step instead of milliseconds).
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
