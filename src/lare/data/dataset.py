"""`LaReDataset`: validated records as a torch Dataset of `Sample`s, with images opened lazily."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass

from PIL import Image
from torch.utils.data import Dataset

from lare.data.images import DEFAULT_MAX_PIXELS, open_image
from lare.data.records import Record

logger = logging.getLogger(__name__)


@dataclass
class Sample:
    """One training/evaluation example as the collator sees it.

    Attributes:
        id: record id.
        image: the RGB image, or None for a text-only record.
        question: the first human turn, including its `<image>` marker.
        target: the first gpt turn (used as the target when there is no rationale).
        rationale: explicit reasoning text, if any.
        answer: answer letter or word, if any.
        family: question family, if any.
        boxes: evidence boxes `[x0, y0, x1, y1]` in image pixels, if any.
    """

    id: str
    image: Image.Image | None
    question: str
    target: str
    rationale: str | None = None
    answer: str | None = None
    family: str | None = None
    boxes: list[list[float]] | None = None


class LaReDataset(Dataset):
    """Records (already validated by `load_records`) served as `Sample`s.

    Images are opened on access, not up front, so a large corpus costs no memory until it is iterated. Only the
    first human/gpt exchange of a record is used; multi-turn records are counted and logged once.
    """

    def __init__(
        self,
        records: Sequence[Record],
        image_root: str | os.PathLike | None,
        max_pixels: int = DEFAULT_MAX_PIXELS,
    ) -> None:
        self.records = list(records)
        self.image_root = image_root
        self.max_pixels = max_pixels
        n_multi_turn = sum(len(record.conversations) > 2 for record in self.records)
        if n_multi_turn:
            logger.warning("%d of %d records have several turns; only the first exchange is used", n_multi_turn,
                           len(self.records))

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> Sample:
        record = self.records[index]
        image = None
        if record.image is not None:
            image = open_image(record.image, image_root=self.image_root, max_pixels=self.max_pixels)
        return Sample(
            id=record.id,
            image=image,
            question=record.question,
            target=record.target,
            rationale=record.rationale,
            answer=record.answer,
            family=record.family,
            boxes=record.boxes,
        )
