"""PNG checks shared by the analysis tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def assert_png(path: Path, size: tuple[int, int]) -> None:
    """The file is a PNG of exactly `size` (W, H) whose pixels are not all the same."""
    with Image.open(path) as image:
        assert image.format == "PNG"
        assert image.size == size
        pixels = np.asarray(image.convert("RGB"))
    assert pixels.std() > 1.0, "the PNG is blank"
