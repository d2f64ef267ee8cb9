"""MMBench: VLMEvalKit's TSV, and its circular evaluation with VLMEvalKit's exact-matching rule.

Format: one row per question with `index, question, hint, A, B, C, D, answer, category, l2-category, image` (base64).
The circular copies of question i (its options rotated) are rows `i + k * 1_000_000`; their `answer` is already
rotated. An `image` cell that is short holds the `index` of the row whose image to reuse, as VLMEvalKit writes it.

Scoring (official = VLMEvalKit `exact_matching`): a row is right when `infer_option` (letter, then option text;
known refusals are wrong) gives its answer. A question counts for circular accuracy only if every rotation is right.
Vanilla accuracy is VLMEvalKit's `vanilla_0`: the original rows (`index < 1_000_000`) alone; `vanilla_all_accuracy`
scores every row on its own. lmms-eval scores MMBench with a GPT judge, so there is no lmms-eval mode here.
"""

from __future__ import annotations

import logging
import string
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lare.evaluation.benchmarks.item import BenchmarkItem, ImageSource
from lare.evaluation.benchmarks.option_matching import infer_option
from lare.evaluation.benchmarks.table_file import RowReader, read_rows
from lare.evaluation.metrics import SampleOutcome, accuracy, accuracy_by, token_metrics
from lare.evaluation.predictions import Prediction

logger = logging.getLogger(__name__)

NAME = "mmbench"
MODES = ("official",)
CIRCULAR_OFFSET = 1_000_000
# VLMEvalKit treats an image cell of at most this many characters as a reference to another row's index.
_IMAGE_REFERENCE_MAX_LENGTH = 64
# lmms-eval's mmbench_en template: options under a header, then the post prompt.
_OPTIONS_HEADER = "There are several options:"
DIRECT_INSTRUCTION = "Answer with the option's letter from the given choices directly."


def load(paths: Sequence[str | Path], images: str | Path | None = None) -> list[BenchmarkItem]:
    """Read MMBench TSV (or parquet) files into items, resolving image references between rows.

    Raises:
        BenchmarkFormatError: missing index/question/answer, fewer than two options, an answer that is not one of
            the row's options, a duplicate index, or an image reference to an unknown row.
    """
    items: list[BenchmarkItem] = []
    seen: set[int] = set()
    for path in map(Path, paths):
        rows = read_rows(path)
        readers = [RowReader(path, f"row {number}", row) for number, row in enumerate(rows, start=2)]
        image_cells = {reader.require_int("index"): reader.get("image") for reader in readers}
        for reader in readers:
            index = reader.require_int("index")
            if index in seen:
                raise reader.error("index", f"duplicate index {index}")
            seen.add(index)
            options = {letter: reader.require_text(letter) for letter in string.ascii_uppercase if reader.get(letter)}
            if len(options) < 2:
                raise reader.error("A", f"index {index}: expected at least two options, found {sorted(options)}")
            answer = reader.require_text("answer").upper()
            if answer not in options:
                raise reader.error("answer", f"index {index}: answer {answer!r} is not one of {sorted(options)}")
            items.append(
                BenchmarkItem(
                    benchmark=NAME,
                    id=index,
                    question=reader.require_text("question"),
                    options=options,
                    answer=answer,
                    image=_image(reader, image_cells, path.parent if images is None else Path(images)),
                    hint=reader.text("hint"),
                    category=reader.text("category"),
                    l2_category=reader.text("l2-category"),
                    group=index % CIRCULAR_OFFSET,
                )
            )
    logger.info("MMBench: %d rows, %d questions", len(items), sum(item.id == item.group for item in items))
    return items


def _image(reader: RowReader, image_cells: dict[int, Any], root: Path) -> ImageSource | None:
    cell = reader.get("image")
    if isinstance(cell, str) and len(cell.strip()) <= _IMAGE_REFERENCE_MAX_LENGTH:
        reference = cell.strip()
        if not reference.lstrip("-").isdigit() or int(reference) not in image_cells:
            raise reader.error("image", f"short image cell {reference!r} is not the index of another row")
        cell = image_cells[int(reference)]
    return ImageSource.from_cell(cell, root, text_is="base64")


def question_prompt(item: BenchmarkItem) -> str:
    """lmms-eval's MMBench prompt body: `{hint} {question} There are several options:\\nA. ...`."""
    options = "\n".join(f"{letter}. {text}" for letter, text in item.options.items())
    body = f"{item.question} {_OPTIONS_HEADER}\n{options}"
    return f"{item.hint} {body}" if item.hint else body


def row_hit(item: BenchmarkItem, prediction: str) -> bool:
    """VLMEvalKit exact matching for one row."""
    return infer_option(prediction, item.options) == item.answer


def score(items: Sequence[BenchmarkItem], predictions: Sequence[Prediction], mode: str = "official") -> dict[str, Any]:
    """Circular and vanilla accuracy, overall and per category / l2 category, plus the token metrics.

    Args:
        items: every row (originals and circular copies).
        predictions: the prediction for each item, in the same order.
        mode: only "official".

    Returns:
        {"circular_accuracy", "vanilla_accuracy", "vanilla_all_accuracy", "n_questions", "n_rows",
         "tokens_correct", "lmms_eval_tokens_per_correct_answer", "by_category", "by_category_vanilla"}, fractions in
        [0, 1]. Token metrics count every row as a sample.
    """
    if mode not in MODES:
        raise ValueError(f"MMBench has no '{mode}' mode: lmms-eval scores it with a GPT judge; use 'official'")
    hits = [row_hit(item, prediction.prediction) for item, prediction in zip(items, predictions, strict=True)]
    rows_by_group: dict[int, list[bool]] = {}
    for item, hit in zip(items, hits):
        rows_by_group.setdefault(item.group, []).append(hit)
    # As in VLMEvalKit, a circular question is one whose original row is present; copies without it are not scored.
    main = [(item, hit) for item, hit in zip(items, hits) if item.id == item.group]
    circular_hits = [all(rows_by_group[item.group]) for item, _ in main]
    vanilla_hits = [hit for _, hit in main]
    main_items = [item for item, _ in main]
    outcomes = [SampleOutcome(hit, prediction.tokens) for hit, prediction in zip(hits, predictions)]
    return {
        "circular_accuracy": accuracy(circular_hits),
        "vanilla_accuracy": accuracy(vanilla_hits),
        "vanilla_all_accuracy": accuracy(hits),
        "n_questions": len(main),
        "n_rows": len(items),
        **token_metrics(outcomes),
        "by_category": _by_category(main_items, circular_hits),
        "by_category_vanilla": _by_category(main_items, vanilla_hits),
    }


def _by_category(items: Sequence[BenchmarkItem], hits: Sequence[bool]) -> dict[str, dict[str, float]]:
    return {
        "category": accuracy_by((item.category for item in items), hits),
        "l2_category": accuracy_by((item.l2_category for item in items), hits),
    }

