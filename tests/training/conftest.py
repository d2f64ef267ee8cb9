"""Fixtures for the training tests: a tiny synthetic corpus (built once) and one CPU thread per test."""

from __future__ import annotations

import pytest
import torch

from lare.data.synthetic import generate_synthetic


@pytest.fixture(scope="session")
def synthetic_dir(tmp_path_factory):
    """24 reasoning questions (+ their captions and instructions), 4 test questions, images under `images/`."""
    out = tmp_path_factory.mktemp("synthetic")
    generate_synthetic(out, n_train=24, n_test=4, seed=0, overwrite=True)
    return out


@pytest.fixture(autouse=True)
def one_thread():
    """One intra-op thread: on a loaded 2-core box small CPU kernels are far faster single-threaded, and the
    in-process runs then use the same math as the single-threaded subprocess runs they are compared with."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
