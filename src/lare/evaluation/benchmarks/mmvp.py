"""MMVP: the original `Questions.csv` plus its image folder, or VLMEvalKit's MMVP TSV.

Formats:
  * `Questions.csv`: `Index, Question, Options, Correct Answer` with Options "(a) Open (b) Closed" and the answer
    "(a)"; the image of question i is `{i}.jpg` in the image folder (default: "MMVP Images" next to the CSV, else the
    CSV's folder).
  * TSV: `index, question, A, B, answer, image` (base64), VLMEvalKit's form.

Questions come in pairs (1, 2), (3, 4), ...: the same question on two images with different answers. Official
scoring: per-question accuracy, and pair accuracy, where a pair counts only if both of its questions are right. An
answer names an option by its letter ("B", "(b)", "b.") or by its text ("a dog" for "(b) a dog"). `lmms-eval` mode is
lmms-eval 0.7.3's answer-letter regexes. (lmms-eval 0.7.3 fixes the swapped answers of Index 99/100 and 279/280 in its
copy of the data, lmms-lab-eval/MMVP, not in code; score against that file to get its numbers.)
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lare.evaluation.benchmarks.item import BenchmarkItem, ImageSource
from lare.evaluation.benchmarks.option_matching import REFUSAL_OPTION, infer_option
from lare.evaluation.benchmarks.table_file import RowReader, read_rows
from lare.evaluation.metrics import SampleOutcome, accuracy, accuracy_by, token_metrics
from lare.evaluation.predictions import Prediction

logger = logging.getLogger(__name__)

NAME = "mmvp"
MODES = ("official", "lmms-eval")
DIRECT_INSTRUCTION = "Answer with the option's letter from the given choices directly."
_IMAGE_FOLDER = "MMVP Images"
_OPTION_PATTERN = re.compile(r"\(([a-z])\)\s*(.*?)(?=\s*\([a-z]\)|$)", re.IGNORECASE | re.DOTALL)
_MARKER_PATTERN = re.compile(r"\(([a-z])\)", re.IGNORECASE)
_BARE_LETTER_PATTERN = re.compile(r"^\W*([a-z])\W*$", re.IGNORECASE)
# lmms-eval's answer-letter patterns, tried in order, case-insensitive.
_LMMS_EVAL_PATTERNS = tuple(
    re.compile(pattern, re.IGNORECASE)
    for pattern in (
        r"^\s*\(?([AB])\)?\.?\s*$",
        r"^\s*\(?([AB])\)?[\.\s]",
        r"answer\s+is\s+\(?([AB])\)?",
        r"option\s+\(?([AB])\)?",
        r"\(?([AB])\)?(?:\s|$)",
    )
)


def load(paths: Sequence[str | Path], images: str | Path | None = None) -> list[BenchmarkItem]:
    """Read MMVP `Questions.csv` or TSV files.

    Raises:
        BenchmarkFormatError: missing fields, unparsable options, an answer that is not an option, a duplicate
            index.
    """
    items: list[BenchmarkItem] = []
    seen: set[int] = set()
    for path in map(Path, paths):
        rows = read_rows(path)
        is_tsv = path.suffix.lower() != ".csv"
        root = Path(images) if images is not None else _default_image_root(path)
        for position, row in enumerate(rows):
            reader = RowReader(path, f"row {position + 2}", row)
            item = _tsv_item(reader, position, root) if is_tsv else _csv_item(reader, root)
            if item.id in seen:
                raise reader.error("index", f"duplicate index {item.id}")
            seen.add(item.id)
            items.append(item)
    return items


def _default_image_root(path: Path) -> Path:
    folder = path.parent / _IMAGE_FOLDER
    return folder if folder.is_dir() else path.parent


def _csv_item(reader: RowReader, root: Path) -> BenchmarkItem:
    index = reader.require_int("Index")
    options_text = reader.require_text("Options")
    options = {letter.upper(): text.strip() for letter, text in _OPTION_PATTERN.findall(options_text)}
    if len(options) < 2:
        raise reader.error("Options", f"Index {index}: expected '(a) ... (b) ...', got {options_text!r}")
    answer = _parse_answer(reader, "Correct Answer", options, index)
    return BenchmarkItem(
        benchmark=NAME,
        id=index,
        question=reader.require_text("Question"),
        options=options,
        answer=answer,
        image=ImageSource("path", f"{index}.jpg", root),
        # The official pairs are Index (1, 2), (3, 4), ...
        group=(index - 1) // 2,
    )


def _tsv_item(reader: RowReader, position: int, root: Path) -> BenchmarkItem:
    index = reader.require_int("index")
    options = {letter: reader.require_text(letter) for letter in "ABCDEFGH" if reader.get(letter)}
    if len(options) < 2:
        raise reader.error("A", f"index {index}: expected at least options A and B")
    return BenchmarkItem(
        benchmark=NAME,
        id=index,
        question=reader.require_text("question"),
        options=options,
        answer=_parse_answer(reader, "answer", options, index),
        image=ImageSource.from_cell(reader.get("image"), root, text_is="base64"),
        category=reader.text("category"),
        # VLMEvalKit pairs consecutive rows of the TSV.
        group=position // 2,
    )


def _parse_answer(reader: RowReader, field: str, options: dict[str, str], index: int) -> str:
    raw = reader.require_text(field)
    match = _BARE_LETTER_PATTERN.match(raw)
    answer = match.group(1).upper() if match else ""
    if answer not in options:
        raise reader.error(field, f"Index {index}: answer {raw!r} is not one of the options {sorted(options)}")
    return answer


def question_prompt(item: BenchmarkItem) -> str:
    """lmms-eval's MMVP prompt body: the question, then one "A. option" line per option."""
    options = "\n".join(f"{letter}. {text}" for letter, text in item.options.items())
    return f"{item.question}\n{options}"


def official_choice(prediction: str, options: dict[str, str]) -> str | None:
    """The option a prediction names: an "(a)" marker, a bare letter, else VLMEvalKit's letter/text rule."""
    markers = {letter.upper() for letter in _MARKER_PATTERN.findall(prediction)} & set(options)
    if len(markers) == 1:
        return markers.pop()
    if len(markers) > 1:
        return None
    bare = _BARE_LETTER_PATTERN.match(prediction)
    if bare and bare.group(1).upper() in options:
        return bare.group(1).upper()
    choice = infer_option(prediction, options)
    return None if choice == REFUSAL_OPTION else choice


def lmms_eval_choice(prediction: str) -> str:
    """lmms-eval 0.7.3 `_extract_answer_letter`: A or B, or "" when none is found."""
    text = prediction.strip()
    for pattern in _LMMS_EVAL_PATTERNS:
        match = pattern.search(text)
        if match:
            return match.group(1).upper()
    return text[0].upper() if text and text[0].upper() in "AB" else ""


def score(items: Sequence[BenchmarkItem], predictions: Sequence[Prediction], mode: str = "official") -> dict[str, Any]:
    """Per-question and pair accuracy.

    Returns:
        {"accuracy", "pair_accuracy", "n", "n_pairs", "tokens_correct", "lmms_eval_tokens_per_correct_answer",
         "by_category"}, fractions in [0, 1]. A pair missing one of its questions is left out of pair accuracy.
    """
    if mode not in MODES:
        raise ValueError(f"MMVP modes are {MODES}, got {mode!r}")
    hits = []
    for item, prediction in zip(items, predictions, strict=True):
        if mode == "official":
            hits.append(official_choice(prediction.prediction, item.options) == item.answer)
        else:
            hits.append(lmms_eval_choice(prediction.prediction) == item.answer)
    pairs: dict[int, list[bool]] = {}
    for item, hit in zip(items, hits):
        pairs.setdefault(item.group, []).append(hit)
    incomplete = [group for group, members in pairs.items() if len(members) != 2]
    if incomplete:
        logger.warning("MMVP: %d pairs do not have exactly two questions and are left out of pair accuracy",
                       len(incomplete))
    pair_hits = [all(members) for members in pairs.values() if len(members) == 2]
    outcomes = [SampleOutcome(hit, prediction.tokens) for hit, prediction in zip(hits, predictions)]
    by_category: dict[str, dict[str, float]] = {}
    if any(item.category for item in items):
        by_category["category"] = accuracy_by((item.category for item in items), hits)
    return {
        "accuracy": accuracy(hits),
        "pair_accuracy": accuracy(pair_hits),
        "n": len(items),
        "n_pairs": len(pair_hits),
        **token_metrics(outcomes),
        "by_category": by_category,
    }
