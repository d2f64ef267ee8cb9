"""lare.data.images: orientation, mode conversion, damaged files, size limits, path containment, base64."""

from __future__ import annotations

import base64
import os

import numpy as np
import pytest
from PIL import Image

from lare.data.images import (
    ImageError,
    decode_base64_image,
    encode_image_base64,
    open_image,
    resolve_image_path,
)
from tests.data.image_files import bomb_png, encoded, noise_image, truncated, write

RED, BLUE, WHITE = (255, 0, 0), (0, 0, 255), (255, 255, 255)


def _pixel(image: Image.Image, xy: tuple[int, int]) -> tuple[int, ...]:
    return tuple(int(v) for v in image.getpixel(xy))


def test_exif_orientation_is_applied(tmp_path):
    # 20 wide, 10 tall: left half red, right half blue. Orientation 6 = "rotate 90 degrees clockwise to display".
    image = Image.new("RGB", (20, 10), BLUE)
    image.paste(RED, (0, 0, 10, 10))
    exif = Image.Exif()
    exif[0x0112] = 6
    path = write(tmp_path / "rotated.png", encoded(image, "PNG", exif=exif))

    opened = open_image(path)

    assert opened.size == (10, 20)
    assert _pixel(opened, (5, 2)) == RED  # the left half ends up on top
    assert _pixel(opened, (5, 17)) == BLUE


@pytest.mark.parametrize(
    ("mode", "value", "expected"),
    [
        ("RGBA", (255, 0, 0, 0), WHITE),  # fully transparent: composited onto white
        ("RGBA", (255, 0, 0, 255), RED),
        ("LA", (0, 0), WHITE),
        ("LA", (0, 255), (0, 0, 0)),
        ("L", 128, (128, 128, 128)),
        ("1", 1, WHITE),
        ("CMYK", (0, 0, 0, 0), WHITE),
        ("CMYK", (0, 255, 255, 0), RED),
    ],
)
def test_modes_convert_to_rgb(tmp_path, mode, value, expected):
    path = write(tmp_path / "image.tiff", encoded(Image.new(mode, (4, 4), value), "TIFF"))
    opened = open_image(path)
    assert opened.mode == "RGB"
    assert _pixel(opened, (1, 1)) == expected


def test_palette_modes_convert_to_rgb(tmp_path):
    palette_image = Image.new("RGB", (4, 4), BLUE).convert("P")
    assert _pixel(open_image(write(tmp_path / "p.png", encoded(palette_image, "PNG"))), (0, 0)) == BLUE

    # A palette image whose only colour is marked transparent becomes white, not its palette colour.
    transparent = Image.new("P", (4, 4), 0)
    transparent.putpalette([255, 0, 0] + [0, 0, 0] * 255)
    data = encoded(transparent, "PNG", transparency=0)
    assert _pixel(open_image(write(tmp_path / "pt.png", data)), (0, 0)) == WHITE


def test_sixteen_bit_greyscale_is_scaled_not_clipped(tmp_path):
    values = np.array([[0, 32896, 65535]], dtype=np.uint16)
    path = write(tmp_path / "deep.png", encoded(Image.fromarray(values), "PNG"))
    opened = open_image(path)
    assert [_pixel(opened, (x, 0))[0] for x in range(3)] == [0, 128, 255]


def test_unsupported_mode_is_rejected(tmp_path):
    path = write(tmp_path / "float.tiff", encoded(Image.new("F", (4, 4), 0.5), "TIFF"))
    with pytest.raises(ImageError, match="unsupported image mode") as error:
        open_image(path)
    assert error.value.reason == "unsupported image mode"


@pytest.mark.parametrize(
    ("name", "data", "reason"),
    [
        ("zero.png", b"", "zero-byte file"),
        ("trunc.png", truncated(encoded(noise_image(), "PNG")), "corrupt or truncated image"),
        ("trunc.jpg", truncated(encoded(noise_image(), "JPEG")), "corrupt or truncated image"),
        ("text.png", b"this is not an image", "not a recognised image format"),
        ("bomb.png", bomb_png(), "decompression bomb"),
    ],
)
def test_damaged_files_are_rejected_with_reason(tmp_path, name, data, reason):
    path = write(tmp_path / name, data)
    with pytest.raises(ImageError) as error:
        open_image(path)
    assert error.value.reason == reason
    with pytest.raises(ImageError):  # the same bytes, given directly
        open_image(data)


def test_corrupted_png_checksum_is_rejected(tmp_path):
    data = bytearray(encoded(noise_image(), "PNG"))
    data[-40] ^= 0xFF  # flip a byte inside the image data: the chunk CRC no longer matches
    with pytest.raises(ImageError, match="corrupt or truncated"):
        open_image(bytes(data))


def test_missing_file_is_rejected(tmp_path):
    with pytest.raises(ImageError) as error:
        open_image(tmp_path / "absent.png")
    assert error.value.reason == "file not found"


def test_pixel_limit_is_checked_before_decoding():
    data = encoded(noise_image((40, 30)), "PNG")
    assert open_image(data, max_pixels=40 * 30).size == (40, 30)
    with pytest.raises(ImageError, match="decompression bomb"):
        open_image(data, max_pixels=40 * 30 - 1)


def test_paths_escaping_the_root_are_rejected(tmp_path):
    root, outside = tmp_path / "root", tmp_path / "outside"
    write(root / "sub" / "good.png", encoded(noise_image((8, 8)), "PNG"))
    secret = write(outside / "secret.png", encoded(noise_image((8, 8)), "PNG"))
    os.symlink(secret, root / "link_out.png")
    os.symlink(root / "sub" / "good.png", root / "link_in.png")

    assert open_image("sub/good.png", image_root=root).size == (8, 8)
    assert open_image("sub/../sub/good.png", image_root=root).size == (8, 8)  # `..` that stays inside is fine
    assert open_image("link_in.png", image_root=root).size == (8, 8)
    assert resolve_image_path(root, "sub/good.png") == (root / "sub" / "good.png").resolve()

    for relative, reason in [
        ("../outside/secret.png", "path escapes image root"),
        ("sub/../../outside/secret.png", "path escapes image root"),
        ("link_out.png", "path escapes image root"),
        (str(secret), "absolute path not allowed"),
    ]:
        with pytest.raises(ImageError) as error:
            open_image(relative, image_root=root)
        assert error.value.reason == reason, relative


def test_base64_round_trip_and_data_url():
    image = noise_image((16, 12))
    encoded_text = encode_image_base64(image)
    assert encode_image_base64(image) == encoded_text  # deterministic
    assert np.array_equal(np.asarray(decode_base64_image(encoded_text)), np.asarray(image))
    decoded = decode_base64_image("data:image/png;base64," + encoded_text)
    assert np.array_equal(np.asarray(decoded), np.asarray(image))


def test_bad_base64_is_rejected():
    with pytest.raises(ImageError, match="invalid base64"):
        decode_base64_image("not base64 at all!")
    with pytest.raises(ImageError, match="decompression bomb"):
        decode_base64_image(base64.b64encode(bomb_png()).decode("ascii"))
