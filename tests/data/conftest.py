"""Fixtures for the data tests: a small synthetic benchmark, built once per session."""

from __future__ import annotations

import pytest

from lare.data.synthetic import SyntheticSummary, generate_synthetic


@pytest.fixture(scope="session")
def synthetic(tmp_path_factory) -> SyntheticSummary:
    """40 train / 40 test questions: enough for every family and every POPE split, fast to build."""
    return generate_synthetic(tmp_path_factory.mktemp("synthetic"), n_train=40, n_test=40, seed=3)
