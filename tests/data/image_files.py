"""Helpers that write good and bad image files for the data tests."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image


def noise_image(size: tuple[int, int] = (64, 64), seed: int = 0) -> Image.Image:
    """Random pixels: they do not compress, so cutting the file in half really truncates the pixel data."""
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))


def encoded(image: Image.Image, format: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=format, **kwargs)
    return buffer.getvalue()


def truncated(data: bytes) -> bytes:
    return data[: len(data) // 2]


def bomb_png(width: int = 100_000, height: int = 100_000) -> bytes:
    """A tiny PNG whose header claims `width` x `height` pixels (the CRC is fixed so the header parses)."""
    data = bytearray(encoded(Image.new("L", (1, 1)), "PNG"))
    # Signature (8 bytes), then the IHDR chunk: length (4), type (4), width (4), height (4), ..., CRC (4).
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path
