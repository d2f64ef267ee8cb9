"""Write benchmark files in their official formats, with real (tiny) images."""

from __future__ import annotations

import base64
import csv
import io
import json
from pathlib import Path

from PIL import Image


def png_bytes(color: tuple[int, int, int], size: int = 8) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (size, size), color).save(buffer, format="PNG")
    return buffer.getvalue()


def png_base64(color: tuple[int, int, int]) -> str:
    return base64.b64encode(png_bytes(color)).decode("ascii")


def write_table(path: Path, header: list[str], rows: list[list[object]], delimiter: str = "\t") -> Path:
    """Write a table the way pandas' to_csv does (minimal quoting), as VLMEvalKit ships its TSVs."""
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, delimiter=delimiter, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(["" if cell is None else cell for cell in row] for row in rows)
    return path


def write_predictions(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(record) + "\n" for record in records), encoding="utf-8")
    return path
