"""One benchmark question, as every loader returns it and every scorer and the runner consume it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from PIL import Image


@dataclass(frozen=True)
class ImageSource:
    """Where a question's image lives, decoded only when `load` is called.

    Scoring never touches images, so a benchmark file whose image column is empty still loads and scores; only the
    runner calls `load`.

    Attributes:
        kind: "base64" (TSV cell), "bytes" (parquet struct) or "path" (an image folder on disk).
        value: the base64 text, the encoded bytes, or the path relative to `root`.
        root: the image folder a relative path must stay inside (None for base64 and bytes).
    """

    kind: Literal["base64", "bytes", "path"]
    value: str | bytes
    root: Path | None = None

    @classmethod
    def from_cell(cls, value: object, root: Path | None, text_is: Literal["base64", "path"]) -> ImageSource | None:
        """Interpret an image cell: a parquet struct or bytes is encoded data; text is base64 or a file name.

        Args:
            value: the cell (None, text, bytes, or {"bytes": ..., "path": ...}).
            root: the image folder that file names are relative to.
            text_is: what a text cell holds in this format: "base64" (VLMEvalKit TSV) or "path" (JSON, CSV).
        """
        if value is None:
            return None
        if isinstance(value, dict):  # Hugging Face `Image` feature as parquet stores it: {"bytes": ..., "path": ...}
            if value.get("bytes"):
                return cls("bytes", bytes(value["bytes"]))
            if value.get("path"):
                return cls("path", str(value["path"]), root)
            return None
        if isinstance(value, (bytes, bytearray)):
            return cls("bytes", bytes(value))
        text = str(value).strip()
        if not text:
            return None
        if text_is == "base64":
            return cls("base64", text)
        return cls("path", text, root)

    def load(self) -> Image.Image:
        """Decode to an RGB `PIL.Image`, raising `lare.data.images.ImageError` when the image is unusable."""
        from lare.data.images import decode_base64_image, open_image  # PIL work only when an image is needed

        if self.kind == "base64":
            return decode_base64_image(str(self.value))
        if self.kind == "bytes":
            return open_image(bytes(self.value))
        return open_image(str(self.value), image_root=self.root)


@dataclass(frozen=True)
class BenchmarkItem:
    """One question of one benchmark, in the benchmark's own terms.

    Attributes:
        benchmark: registry name ("mmbench", "mmstar", "mmvp", "scienceqa", "pope").
        id: the benchmark's own id (MMBench/MMStar `index`, POPE `question_id`, MMVP `Index`, ScienceQA `id`).
        question: the question text as the file gives it (MMStar and ScienceQA-LLaVA already list the options in it).
        options: option letter -> option text, in letter order; empty for POPE's yes/no questions.
        answer: the ground truth: an option letter, or "yes"/"no" for POPE.
        image: the question's image, or None when the file carries none.
        hint: MMBench/ScienceQA context text, or None.
        split: POPE's split ("random", "popular", "adversarial"); None elsewhere. Part of the key because POPE's
            split files reuse question ids.
        category / l2_category: the benchmark's ability labels, when it has them.
        group: items scored together: the MMBench circular group (`index % 1_000_000`) and the MMVP pair.
        prompt: a ready question prompt from the file itself (ScienceQA's LLaVA conversation), used instead of the
            lmms-eval template when set.
    """

    benchmark: str
    id: int | str
    question: str
    answer: str
    options: dict[str, str] = field(default_factory=dict)
    image: ImageSource | None = None
    hint: str | None = None
    split: str | None = None
    category: str | None = None
    l2_category: str | None = None
    group: int | None = None
    prompt: str | None = None

    @property
    def key(self) -> tuple[str, str]:
        """(split or "", id as text): unique within one scoring run, and the key predictions are matched on."""
        return prediction_key(self.id, self.split)


def prediction_key(item_id: int | str, split: str | None = None) -> tuple[str, str]:
    """Normalise an id (int or str, as JSON gives it back) and optional split to the matching key."""
    return (split or "", str(item_id))
