"""Shared fixtures: the tiny preset, built in-process (random init, no downloads)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from lare import LaReConfig, LaReForConditionalGeneration, LaReProcessor


@pytest.fixture(scope="session")
def tiny_processor() -> LaReProcessor:
    return LaReProcessor.tiny()


@pytest.fixture()
def tiny_model() -> LaReForConditionalGeneration:
    torch.manual_seed(0)
    return LaReForConditionalGeneration(LaReConfig.tiny()).eval()


def random_image(seed: int, size: int = 64) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8))


@pytest.fixture()
def tiny_batch(tiny_processor):
    images = [random_image(1), random_image(2)]
    texts = ["What colour is the circle?", "Which shape is right of the small red square in the top left?"]
    return tiny_processor(images=images, text=texts, return_tensors="pt"), images, texts
