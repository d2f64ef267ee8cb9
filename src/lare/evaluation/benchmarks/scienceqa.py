"""ScienceQA-IMG: LLaVA's `llava_test_CQM-A.json` (plus the image folder), or lmms-eval's fields.

Formats:
  * LLaVA: `[{"id", "image": "4/image.png", "conversations": [{"from": "human", "value": "<image>\\nContext: ...
    Options: (A) ... (B) ..."}, {"from": "gpt", "value": "The answer is A."}]}]`. The human turn is the prompt as
    LLaVA runs it; the gpt turn holds the answer. Only questions with an image are kept (ScienceQA-IMG).
  * lmms-eval (lmms-lab/ScienceQA, config ScienceQA-IMG): `hint, question, choices, answer (index), image`, as JSON,
    JSONL or parquet; every row is an image question. Without an `id` column the id is the row number (0-based).

Official rule (LLaVA `eval_science_qa.py`): the prediction is exactly a letter A-E, or starts with "X. ", or contains
exactly one match of `The answer is X.` (the dot matching any character); the letter must be one of the question's
choices. Anything else is a failure. `lmms-eval` mode is lmms-eval 0.7.3's `sqa_process_results`.
"""

from __future__ import annotations

import json
import logging
import re
import string
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lare.evaluation.benchmarks.item import BenchmarkItem, ImageSource
from lare.evaluation.benchmarks.table_file import RowReader, read_rows
from lare.evaluation.metrics import SampleOutcome, accuracy, accuracy_by, token_metrics
from lare.evaluation.predictions import Prediction

logger = logging.getLogger(__name__)

NAME = "scienceqa"
MODES = ("official", "lmms-eval")
DIRECT_INSTRUCTION = "Answer with the option's letter from the given choices directly."
_LLAVA_OPTIONS = list("ABCDE")  # eval_science_qa.py's --options default
_ANSWER_IS = re.compile(r"The answer is ([A-Z]).")
_PAREN_OPTION = re.compile(r"\(([A-Z])\)\s*(.*?)(?=\s+\([A-Z]\)\s|$)")
_LINE_OPTION = re.compile(r"^([A-Z])\.\s+(.*)$", re.MULTILINE)
_GOLD_LETTER = re.compile(r"^(?:The answer is\s+)?\(?([A-Z])\)?(?:[.\s]|$)")


def load(paths: Sequence[str | Path], images: str | Path | None = None) -> list[BenchmarkItem]:
    """Read ScienceQA files (LLaVA conversations or lmms-eval fields) and keep the image questions.

    Raises:
        BenchmarkFormatError: missing fields, options or answer that cannot be read, a duplicate id.
    """
    items: list[BenchmarkItem] = []
    seen: set[str] = set()
    for path in map(Path, paths):
        root = Path(images) if images is not None else path.parent
        rows = read_rows(path)
        skipped = 0
        for position, row in enumerate(rows):
            reader = RowReader(path, f"record {position + 1}", row)
            if reader.has("conversations"):
                item = _llava_item(reader, row, root)
            else:
                item = _lmms_eval_item(reader, position, root, path.suffix.lower() == ".parquet")
            if item is None:
                skipped += 1
                continue
            if str(item.id) in seen:
                raise reader.error("id", f"duplicate id {item.id!r}")
            seen.add(str(item.id))
            items.append(item)
        if skipped:
            logger.info("%s: kept %d image questions, skipped %d without an image", path, len(rows) - skipped, skipped)
    return items


def _llava_item(reader: RowReader, row: dict[str, Any], root: Path) -> BenchmarkItem | None:
    item_id = reader.require_text("id")
    image = reader.text("image")
    if image is None:
        return None  # a text-only question: not part of ScienceQA-IMG
    turns = row["conversations"]
    if not isinstance(turns, list) or len(turns) < 2 or not all(isinstance(turn, dict) for turn in turns[:2]):
        raise reader.error("conversations", f"id {item_id}: expected a human turn and a gpt turn")
    human, gpt = (str(turn.get("value", "")) for turn in turns[:2])
    prompt = human.replace("<image>", "").strip()
    options = _parse_options(prompt)
    if len(options) < 2:
        raise reader.error("conversations", f"id {item_id}: cannot find the options in the human turn")
    match = _GOLD_LETTER.match(gpt.strip())
    if match is None or match.group(1) not in options:
        raise reader.error("conversations", f"id {item_id}: gpt turn {gpt!r} does not name one of {sorted(options)}")
    return BenchmarkItem(
        benchmark=NAME,
        id=item_id,
        question=prompt,
        options=options,
        answer=match.group(1),
        image=ImageSource("path", image, root),
        prompt=prompt,
    )


def _parse_options(prompt: str) -> dict[str, str]:
    for line in prompt.splitlines():
        if line.startswith("Options:"):
            return {letter: text.strip() for letter, text in _PAREN_OPTION.findall(line[len("Options:"):].strip())}
    return {letter: text.strip() for letter, text in _LINE_OPTION.findall(prompt)}


def _lmms_eval_item(reader: RowReader, position: int, root: Path, is_parquet: bool) -> BenchmarkItem:
    choices = reader.get("choices")
    if isinstance(choices, str):
        try:
            choices = json.loads(choices)
        except json.JSONDecodeError as error:
            raise reader.error("choices", f"expected a list of strings, got {choices!r}") from error
    if not isinstance(choices, list) or len(choices) < 2:
        raise reader.error("choices", f"expected a list of at least two choices, got {choices!r}")
    options = {string.ascii_uppercase[number]: str(choice) for number, choice in enumerate(choices)}
    answer_index = reader.require_int("answer")
    if not 0 <= answer_index < len(choices):
        raise reader.error("answer", f"answer index {answer_index} outside the {len(choices)} choices")
    item_id = reader.get("id")
    return BenchmarkItem(
        benchmark=NAME,
        id=item_id if item_id is not None else position,
        question=reader.require_text("question"),
        options=options,
        answer=string.ascii_uppercase[answer_index],
        image=ImageSource.from_cell(reader.get("image"), root, text_is="path" if not is_parquet else "base64"),
        hint=reader.text("hint"),
        category=reader.text("subject"),
    )


def question_prompt(item: BenchmarkItem) -> str:
    """LLaVA's own prompt when the file has one, else lmms-eval's: `Context: {hint}\\n{question}\\nA. ...`."""
    if item.prompt is not None:
        return item.prompt
    options = "\n".join(f"{letter}. {text}" for letter, text in item.options.items())
    context = f"Context: {item.hint}\n" if item.hint else ""
    return f"{context}{item.question}\n{options}"


def official_letter(prediction: str, n_choices: int) -> str | None:
    """LLaVA `eval_science_qa.py`: the answered letter, or None for a failure."""
    valid = _LLAVA_OPTIONS[:n_choices]
    if prediction in _LLAVA_OPTIONS:
        letter = prediction
    elif len(prediction) >= 3 and prediction[0] in _LLAVA_OPTIONS and prediction[1:3] == ". ":
        letter = prediction[0]
    else:
        found = _ANSWER_IS.findall(prediction)
        letter = found[0] if len(found) == 1 else None
    return letter if letter in valid else None


def lmms_eval_hit(prediction: str, answer: str) -> bool:
    """lmms-eval 0.7.3 `sqa_process_results`."""
    target = answer.strip().lower()
    pred = prediction.strip()
    if pred.lower() == target:
        return True
    return len(pred) >= 2 and pred[0].isupper() and pred[1] == "." and pred[0].lower() == target


def score(items: Sequence[BenchmarkItem], predictions: Sequence[Prediction], mode: str = "official") -> dict[str, Any]:
    """Accuracy over the image questions.

    Returns:
        {"accuracy", "n", "tokens_correct", "lmms_eval_tokens_per_correct_answer", "by_category"} with accuracy
        per subject when the file has subjects.
    """
    if mode not in MODES:
        raise ValueError(f"ScienceQA modes are {MODES}, got {mode!r}")
    hits = []
    for item, prediction in zip(items, predictions, strict=True):
        if mode == "official":
            hits.append(official_letter(prediction.prediction, len(item.options)) == item.answer)
        else:
            hits.append(lmms_eval_hit(prediction.prediction, item.answer))
    outcomes = [SampleOutcome(hit, prediction.tokens) for hit, prediction in zip(hits, predictions)]
    by_category = {}
    if any(item.category for item in items):
        by_category["subject"] = accuracy_by((item.category for item in items), hits)
    return {"accuracy": accuracy(hits), "n": len(items), **token_metrics(outcomes), "by_category": by_category}
