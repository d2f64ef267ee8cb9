"""Fixtures shared by the evaluation tests."""

import pytest

from tests.evaluation.files import png_base64


@pytest.fixture
def red_png_b64() -> str:
    return png_base64((255, 0, 0))


@pytest.fixture
def blue_png_b64() -> str:
    return png_base64((0, 0, 255))
