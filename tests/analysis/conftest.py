"""Fixtures for the analysis tests: a 12-question synthetic benchmark, its samples, and a saved tiny model."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from lare import LaReConfig, LaReForConditionalGeneration
from lare.analysis.samples import AnalysisSample, load_samples
from lare.data.synthetic import SyntheticSummary, generate_synthetic


@pytest.fixture(scope="session")
def synthetic(tmp_path_factory) -> SyntheticSummary:
    """12 test questions: every family, with evidence boxes and scene metadata."""
    return generate_synthetic(tmp_path_factory.mktemp("synthetic"), n_train=0, n_test=12, seed=0)


@pytest.fixture(scope="session")
def samples(synthetic) -> list[AnalysisSample]:
    return load_samples(synthetic.test_path)


@pytest.fixture(scope="session")
def saved_model_dir(tmp_path_factory, tiny_processor) -> Path:
    """A random tiny LaRe model saved with its processor, as `--model` expects."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("model")
    LaReForConditionalGeneration(LaReConfig.tiny()).save_pretrained(path)
    tiny_processor.save_pretrained(path)
    return path
