"""MMStar: TSV (VLMEvalKit) or parquet (Lin-Chen/MMStar), scored with the rule of MMStar's own `mmstar.py`.

Format: `index, question, answer, category, l2_category, image`; the options are written inside `question`
("Options: A: ..., B: ..."). VLMEvalKit's TSV may also carry `A`-`D` columns; they are kept when present.

Official rule: lowercase and strip the prediction p (newlines become spaces); a hit when p[0] is the answer, or p is
"(x..." with x the answer, or starts with "option " or "the answer is " followed by the answer. Overall score is the
micro average (the official script divides by its fixed 1500 = the number of questions), per category and per l2
category the share of hits. `lmms-eval` mode is lmms-eval 0.7.3's: its MCQ letter extraction, and the mean over l2
categories of their accuracy.
"""

from __future__ import annotations

import logging
import string
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lare.evaluation.benchmarks.item import BenchmarkItem, ImageSource
from lare.evaluation.benchmarks.lmms_eval_mcq import extract_mcq_letter
from lare.evaluation.benchmarks.table_file import RowReader, read_rows
from lare.evaluation.metrics import SampleOutcome, accuracy, accuracy_by, token_metrics
from lare.evaluation.predictions import Prediction

logger = logging.getLogger(__name__)

NAME = "mmstar"
MODES = ("official", "lmms-eval")
# lmms-eval's MMStar post prompt has no final full stop.
DIRECT_INSTRUCTION = "Answer with the option's letter from the given choices directly"
_LETTERS = "ABCD"
_PREFIXES = ("option ", "the answer is ")


def load(paths: Sequence[str | Path], images: str | Path | None = None) -> list[BenchmarkItem]:
    """Read MMStar TSV / parquet files.

    Raises:
        BenchmarkFormatError: missing index/question/answer/category/l2_category, an answer that is not a single
            option letter, or a duplicate index.
    """
    items: list[BenchmarkItem] = []
    seen: set[int] = set()
    for path in map(Path, paths):
        for number, row in enumerate(read_rows(path), start=2):
            reader = RowReader(path, f"row {number}", row)
            index = reader.require_int("index")
            if index in seen:
                raise reader.error("index", f"duplicate index {index}")
            seen.add(index)
            answer = reader.require_text("answer").upper()
            if answer not in _LETTERS:
                raise reader.error("answer", f"index {index}: expected one of {list(_LETTERS)}, got {answer!r}")
            options = {letter: reader.require_text(letter) for letter in string.ascii_uppercase if reader.get(letter)}
            items.append(
                BenchmarkItem(
                    benchmark=NAME,
                    id=index,
                    question=reader.require_text("question"),
                    options=options,
                    answer=answer,
                    image=ImageSource.from_cell(reader.get("image"), Path(images or path.parent), text_is="base64"),
                    category=reader.require_text("category"),
                    l2_category=reader.require_text("l2_category"),
                )
            )
    return items


def question_prompt(item: BenchmarkItem) -> str:
    """lmms-eval's MMStar prompt body: the question as given (it already lists the options)."""
    return item.question.strip()


def official_hit(prediction: str, answer: str) -> bool:
    """MMStar `mmstar.py`: does the lowercased prediction start with the answer letter in an accepted form?"""
    predict = prediction.lower().strip().replace("\n", " ")
    answer = answer.lower().strip().replace("\n", " ")
    if predict[:1] == answer:
        return True
    if predict[:1] == "(":
        return predict[1:2] == answer
    return any(predict.startswith(prefix) and predict[len(prefix):len(prefix) + 1] == answer for prefix in _PREFIXES)


def lmms_eval_hit(prediction: str, answer: str) -> bool:
    """lmms-eval 0.7.3 `exact_match`: the extracted letter equals the answer."""
    return extract_mcq_letter(prediction, tuple(_LETTERS)) == answer.strip().upper()


def score(items: Sequence[BenchmarkItem], predictions: Sequence[Prediction], mode: str = "official") -> dict[str, Any]:
    """Accuracy (official: micro average; lmms-eval: mean over l2 categories), per category and l2 category.

    Returns:
        {"accuracy", "n", "tokens_correct", "lmms_eval_tokens_per_correct_answer",
         "by_category": {"category": {...}, "l2_category": {...}}}, fractions in [0, 1].
    """
    if mode not in MODES:
        raise ValueError(f"MMStar modes are {MODES}, got {mode!r}")
    hit_rule = official_hit if mode == "official" else lmms_eval_hit
    hits = [hit_rule(prediction.prediction, item.answer) for item, prediction in zip(items, predictions, strict=True)]
    by_l2 = accuracy_by((item.l2_category for item in items), hits)
    if mode == "official":
        overall = accuracy(hits)
        by_category = accuracy_by((item.category for item in items), hits)
    else:
        overall = sum(by_l2.values()) / len(by_l2) if by_l2 else None
        by_category = _macro_by_category(items, hits)
    outcomes = [SampleOutcome(hit, prediction.tokens) for hit, prediction in zip(hits, predictions)]
    return {
        "accuracy": overall,
        "n": len(items),
        **token_metrics(outcomes),
        "by_category": {"category": by_category, "l2_category": by_l2},
    }


def _macro_by_category(items: Sequence[BenchmarkItem], hits: Sequence[bool]) -> dict[str, float]:
    """lmms-eval's per-category metric: the mean of the category's l2-category accuracies."""
    l2_hits: dict[str, dict[str, list[bool]]] = defaultdict(lambda: defaultdict(list))
    for item, hit in zip(items, hits):
        l2_hits[item.category][item.l2_category].append(hit)
    return {
        category: sum(sum(values) / len(values) for values in l2s.values()) / len(l2s)
        for category, l2s in sorted(l2_hits.items())
    }
