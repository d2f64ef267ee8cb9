"""The samples every analysis runs on: validated LLaVA-format records with their images decoded.

The analyses read the same files as training and evaluation (`lare.data.records`), e.g. the synthetic benchmark's
`test.json`, whose records carry `answer`, `options`, `rationale`, `family` and the evidence `boxes`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from PIL import Image

from lare.data.images import open_image
from lare.data.records import IMAGE_MARKER, load_records

logger = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass
class AnalysisSample:
    """One (image, question) with what the analyses score or plot it against.

    Attributes:
        id: record id.
        image: RGB image, size (W, H).
        question: the first human turn, with its `<image>` marker (what the processor formats into a prompt).
        target: the first gpt turn.
        answer: the ground-truth option letter or word, if the record has one.
        options: option texts in letter order, if any.
        rationale: explicit reasoning text, if any.
        family: question family (synthetic benchmark), if any.
        boxes: evidence boxes `[x0, y0, x1, y1]` in pixels of `image`, if any.
    """

    id: str
    image: Image.Image
    question: str
    target: str
    answer: str | None = None
    options: list[str] | None = None
    rationale: str | None = None
    family: str | None = None
    boxes: list[list[float]] | None = None

    @property
    def short_question(self) -> str:
        """The question's first line of text without the image marker (for titles and tables)."""
        lines = [line.strip() for line in self.question.replace(IMAGE_MARKER, "").split("\n") if line.strip()]
        return lines[0] if lines else ""


def default_image_root(data_path: str | os.PathLike) -> Path:
    """`<data dir>/images` when it exists (the synthetic benchmark's layout), else the data file's directory."""
    folder = Path(data_path).parent
    return folder / "images" if (folder / "images").is_dir() else folder


def load_samples(data_path: str | os.PathLike, image_root: str | os.PathLike | None = None,
                 limit: int | None = None) -> list[AnalysisSample]:
    """Read, validate and decode the records of a LLaVA-format JSON/JSONL file.

    Bad records are rejected with their id and reason by `load_records` (logged and counted); records without an
    image are skipped with a warning, since every analysis needs one.

    Args:
        data_path: the records file.
        image_root: folder the records' image paths are relative to (default: `default_image_root`).
        limit: keep only the first `limit` usable records.
    """
    root = Path(image_root) if image_root is not None else default_image_root(data_path)
    records, summary = load_records(data_path, root, on_bad="skip")
    with_image = [record for record in records if record.image is not None]
    if len(with_image) < len(records):
        logger.warning("%s: %d of %d records have no image and are left out of the analysis", data_path,
                       len(records) - len(with_image), len(records))
    if limit is not None:
        with_image = with_image[:limit]
    samples = [
        AnalysisSample(
            id=record.id, image=open_image(record.image, image_root=root), question=record.question,
            target=record.target, answer=record.answer, options=record.options, rationale=record.rationale,
            family=record.family, boxes=record.boxes,
        )
        for record in with_image
    ]
    logger.info("analysis samples: %d from %s (%d rejected while loading)", len(samples), data_path,
                summary.n_rejected)
    return samples


def batched(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    """Consecutive slices of at most `size` items."""
    if size < 1:
        raise ValueError(f"batch size must be >= 1, got {size}")
    for start in range(0, len(items), size):
        yield items[start:start + size]


def model_inputs(processor: Any, samples: Sequence[AnalysisSample], device: Any) -> Any:
    """Left-padded `input_ids`, `attention_mask` and `pixel_values` for a batch, on `device`."""
    return processor(images=[s.image for s in samples], text=[s.question for s in samples],
                     return_tensors="pt").to(device)
