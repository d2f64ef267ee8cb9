"""POPE: one JSONL file per split (`{question_id, image, text, label}`) plus the COCO image folder.

The official split files number their questions 1..N each, so the split is part of every key: it comes from a
`category` field, else from the file name (`coco_pope_random.json` -> "random"). lmms-eval's parquet
(`question_id, question, answer, image, category`) loads too.

Official rule (POPE `evaluate.py`, identical in LLaVA's `eval_pope.py`): keep the text before the first ".", drop
commas, split on spaces; the answer is "no" if "No", "not" or "no" is one of the words, else "yes". Accuracy,
precision, recall, F1 and yes-ratio (the share of "yes" predictions) per split, and their mean over the splits.
Where the official script divides by zero (no "yes" predicted) the metric is reported as 0.

`lmms-eval` mode is lmms-eval 0.7.3's: the lowercased, stripped answer must equal the label exactly, and its
yes-ratio is the share of "yes" *labels* (lmms-eval's definition).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lare.evaluation.benchmarks.format_error import BenchmarkFormatError
from lare.evaluation.benchmarks.item import BenchmarkItem, ImageSource
from lare.evaluation.benchmarks.table_file import RowReader, read_rows
from lare.evaluation.metrics import SampleOutcome, token_metrics
from lare.evaluation.predictions import Prediction

logger = logging.getLogger(__name__)

NAME = "pope"
MODES = ("official", "lmms-eval")
SPLITS = ("random", "popular", "adversarial")
DIRECT_INSTRUCTION = "Answer the question using a single word or phrase."
_NO_WORDS = ("No", "not", "no")


def load(paths: Sequence[str | Path], images: str | Path | None = None) -> list[BenchmarkItem]:
    """Read POPE split files; several may be given (one per split).

    Raises:
        BenchmarkFormatError: missing question_id/text/label, a label other than yes/no, a split that can be told
            neither from `category` nor from the file name, or a (split, question_id) given twice.
    """
    items: list[BenchmarkItem] = []
    seen: set[tuple[str, str]] = set()
    for path in map(Path, paths):
        file_split = next((split for split in SPLITS if split in path.name.lower()), None)
        root = Path(images) if images is not None else path.parent
        for number, row in enumerate(read_rows(path), start=1):
            reader = RowReader(path, f"record {number}", row)
            question_id = reader.get("question_id")
            if question_id is None:
                raise reader.error("question_id", "missing")
            split = reader.text("category") or file_split
            if split is None:
                raise reader.error("category", f"no split: add a 'category' field or name the file after one of "
                                               f"{SPLITS}")
            label = reader.require_text("label", "answer").lower()
            if label not in ("yes", "no"):
                raise reader.error("label", f"question_id {question_id}: expected 'yes' or 'no', got {label!r}")
            item = BenchmarkItem(
                benchmark=NAME,
                id=question_id,
                question=reader.require_text("text", "question"),
                answer=label,
                image=ImageSource.from_cell(reader.get("image"), root, text_is="path"),
                split=split,
                category=split,
            )
            if item.key in seen:
                raise reader.error("question_id", f"duplicate question_id {question_id} in split {split!r}")
            seen.add(item.key)
            items.append(item)
    if not items:
        raise BenchmarkFormatError(paths[0] if paths else "<none>", "file", None, "no POPE questions found")
    return items


def question_prompt(item: BenchmarkItem) -> str:
    """lmms-eval's POPE prompt body: the question."""
    return item.question.strip()


def official_answer(prediction: str) -> str:
    """POPE `evaluate.py`: "yes" or "no"."""
    text = prediction.split(".")[0] if "." in prediction else prediction
    words = text.replace(",", "").split(" ")
    return "no" if any(word in words for word in _NO_WORDS) else "yes"


def binary_metrics(predicted: Sequence[str], labels: Sequence[str], yes_ratio_of: str = "predictions") -> dict:
    """Accuracy, precision, recall, F1 (positive class "yes") and yes-ratio of `predictions` or `labels`."""
    pairs = list(zip(predicted, labels, strict=True))
    tp = sum(p == "yes" and t == "yes" for p, t in pairs)
    fp = sum(p == "yes" and t == "no" for p, t in pairs)
    tn = sum(p == "no" and t == "no" for p, t in pairs)
    fn = sum(p == "no" and t == "yes" for p, t in pairs)
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    reference = predicted if yes_ratio_of == "predictions" else labels
    return {
        # lmms-eval's accuracy is exact equality, so an answer that is neither "yes" nor "no" is wrong there.
        "accuracy": sum(p == t for p, t in pairs) / len(pairs),
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "yes_ratio": sum(value == "yes" for value in reference) / len(reference),
    }


def score(items: Sequence[BenchmarkItem], predictions: Sequence[Prediction], mode: str = "official") -> dict[str, Any]:
    """Per-split and mean metrics.

    Returns:
        {"random"|"popular"|"adversarial": {"accuracy", "precision", "recall", "f1", "yes_ratio", "n"}, "mean": {...},
         "tokens_correct", "lmms_eval_tokens_per_correct_answer", "by_category": {"split": {split: accuracy}}}.
    """
    if mode not in MODES:
        raise ValueError(f"POPE modes are {MODES}, got {mode!r}")
    if mode == "official":
        answers = [official_answer(prediction.prediction) for prediction in predictions]
    else:
        answers = [prediction.prediction.lower().strip() for prediction in predictions]
    splits = sorted({item.split for item in items}, key=lambda s: (SPLITS.index(s) if s in SPLITS else len(SPLITS), s))
    result: dict[str, Any] = {}
    for split in splits:
        members = [index for index, item in enumerate(items) if item.split == split]
        metrics = binary_metrics([answers[i] for i in members], [items[i].answer for i in members],
                                 yes_ratio_of="predictions" if mode == "official" else "labels")
        result[split] = {**metrics, "n": len(members)}
    names = ("accuracy", "precision", "recall", "f1", "yes_ratio")
    result["mean"] = {name: sum(result[split][name] for split in splits) / len(splits) for name in names}
    hits = [answer == item.answer for answer, item in zip(answers, items, strict=True)]
    result.update(token_metrics([SampleOutcome(hit, prediction.tokens) for hit, prediction in zip(hits, predictions)]))
    result["by_category"] = {"split": {split: result[split]["accuracy"] for split in splits}}
    return result
