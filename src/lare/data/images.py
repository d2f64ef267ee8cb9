"""Safe image loading: path containment, size limits, full decode, EXIF orientation and RGB conversion.

Every image that reaches the model goes through `open_image`, so a bad file fails here with an `ImageError` that says
why, instead of crashing a data-loader worker mid-epoch or exhausting memory.
"""

from __future__ import annotations

import base64
import binascii
import io
import logging
import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

logger = logging.getLogger(__name__)

# 8192 x 8192. Below PIL's own warning threshold (~89.5 MP), so our check always fires first.
DEFAULT_MAX_PIXELS = 8192 * 8192

# Modes converted to RGB. Anything else (F, LAB, HSV, multi-channel TIFF, ...) has no unambiguous RGB meaning.
_ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")
_HIGH_BIT_DEPTH_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")
_DIRECT_MODES = ("RGB", "L", "1", "P", "CMYK", "YCbCr", "RGBX")
SUPPORTED_MODES = _ALPHA_MODES + _HIGH_BIT_DEPTH_MODES + _DIRECT_MODES

# Transparent pixels are composited onto white, the usual page colour of diagrams and scans.
_BACKGROUND = (255, 255, 255)


class ImageError(ValueError):
    """An image that cannot be used. `reason` is a short fixed phrase (good for counting), `detail` the specifics."""

    def __init__(self, reason: str, detail: str | None = None) -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}" if detail else reason)


def resolve_image_path(image_root: str | os.PathLike, relative: str | os.PathLike) -> Path:
    """Join `relative` onto `image_root` and check that the result stays inside the root.

    Absolute paths are rejected outright; `..` components and symlinks are resolved first, so both a `../x.png` and
    a symlink inside the root that points outside it are caught by the same containment check.
    """
    relative_str = os.fspath(relative)
    if "\x00" in relative_str:
        raise ImageError("invalid path", "contains a NUL byte")
    if os.path.isabs(relative_str) or Path(relative_str).drive:
        raise ImageError("absolute path not allowed", relative_str)
    root = Path(image_root).resolve()
    candidate = (root / relative_str).resolve()
    if not candidate.is_relative_to(root):
        raise ImageError("path escapes image root", f"{relative_str} -> {candidate}")
    return candidate


def open_image(
    source: str | os.PathLike | bytes,
    image_root: str | os.PathLike | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> Image.Image:
    """Open, fully decode and convert an image to RGB.

    Args:
        source: a path (relative to `image_root` when one is given) or the encoded image bytes.
        image_root: when given, `source` must resolve inside it (see `resolve_image_path`).
        max_pixels: width x height limit, checked from the header before any pixel data is decoded.

    Returns:
        A loaded `PIL.Image` in mode RGB, EXIF orientation applied, size (W, H).

    Raises:
        ImageError: missing, empty, unreadable, corrupt, truncated, too large, unsupported mode or escaping path.
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        name = "<bytes>"
    else:
        path = resolve_image_path(image_root, source) if image_root is not None else Path(source)
        name = os.fspath(source)
        data = _read_file(path, name)
    if not data:
        raise ImageError("zero-byte file", name)

    with warnings.catch_warnings():
        # Our own limit below is the one that decides; PIL's warning would only add noise for images near its limit.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        image = _decode(data, name, max_pixels)
    return to_rgb(image, name)


def _read_file(path: Path, name: str) -> bytes:
    if not path.exists():
        raise ImageError("file not found", name)
    if not path.is_file():
        raise ImageError("not a regular file", name)
    try:
        return path.read_bytes()
    except OSError as error:
        raise ImageError("unreadable file", f"{name}: {error}") from error


def _decode(data: bytes, name: str, max_pixels: int) -> Image.Image:
    try:
        # Image.open parses only the header, so the size check runs before any pixel is decompressed.
        with Image.open(io.BytesIO(data)) as probe:
            width, height = probe.size
            if width * height > max_pixels:
                raise ImageError(
                    "decompression bomb", f"{name}: {width}x{height} = {width * height} pixels > limit {max_pixels}"
                )
            # verify() checks chunk CRCs and structure that a plain decode skips; it leaves the image unusable.
            probe.verify()
        image = Image.open(io.BytesIO(data))
        image.load()  # full decode: truncated data raises here, not later in a worker
    except ImageError:
        raise
    except UnidentifiedImageError as error:
        raise ImageError("not a recognised image format", name) from error
    except Image.DecompressionBombError as error:
        raise ImageError("decompression bomb", f"{name}: {error}") from error
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError) as error:
        # PIL reports damage through several exception types, depending on the plugin and where the damage lies.
        raise ImageError("corrupt or truncated image", f"{name}: {error}") from error
    return image


def to_rgb(image: Image.Image, name: str = "<image>") -> Image.Image:
    """Apply EXIF orientation and convert any supported mode to RGB.

    Transparent pixels are composited onto white. 16-bit greyscale is scaled down (a plain `convert` would clip
    everything above 255 to white).
    """
    if image.mode not in SUPPORTED_MODES:
        raise ImageError("unsupported image mode", f"{name}: {image.mode}")
    try:
        image = ImageOps.exif_transpose(image)
    except (OSError, SyntaxError, ValueError, KeyError, TypeError) as error:
        raise ImageError("corrupt EXIF data", f"{name}: {error}") from error
    if image.mode == "P":
        image = image.convert("RGBA") if "transparency" in image.info else image.convert("RGB")
    if image.mode in _ALPHA_MODES:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, _BACKGROUND + (255,))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if image.mode in _HIGH_BIT_DEPTH_MODES:
        values = np.asarray(image, dtype=np.int64)  # [H, W]
        eight_bit = (np.clip(values, 0, 65535) // 257).astype(np.uint8)  # [H, W]
        return Image.fromarray(eight_bit, mode="L").convert("RGB")
    return image.convert("RGB")


def decode_base64_image(encoded: str, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Decode a base64 image (as in benchmark TSVs; a `data:image/...;base64,` prefix is accepted) to RGB."""
    if encoded.startswith("data:"):
        _, _, encoded = encoded.partition(",")
    try:
        data = base64.b64decode("".join(encoded.split()), validate=True)
    except (binascii.Error, ValueError) as error:
        raise ImageError("invalid base64", str(error)) from error
    return open_image(data, max_pixels=max_pixels)


def encode_image_base64(image: Image.Image, format: str = "PNG") -> str:
    """Encode an image as base64 text. PNG output carries no timestamp, so equal images give equal strings."""
    buffer = io.BytesIO()
    image.save(buffer, format=format)
    return base64.b64encode(buffer.getvalue()).decode("ascii")
