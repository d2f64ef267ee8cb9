"""Training records whose questions are worded exactly as the evaluation harness will ask them.

The synthetic generator writes each split twice: as LLaVA records (with rationale, answer and evidence boxes) and
in the benchmarks' official formats. Training on the harness's prompts (the lmms-eval template of the record's
benchmark plus the method's instruction) means the demo measures reasoning, not prompt-format transfer.
Multiple-choice answers are given by the option's text (`answer_by_option_text`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lare.data.collate import answer_text
from lare.data.synthetic import FAMILIES, LETTERS, BenchmarkExport
from lare.evaluation.benchmarks import get_benchmark
from lare.evaluation.benchmarks.item import BenchmarkItem
from lare.evaluation.methods import get_method


def join_items_to_records(family: str, items: list[BenchmarkItem], records: list[dict[str, Any]]
                          ) -> list[tuple[BenchmarkItem, dict[str, Any]]]:
    """Pair each exported item with the LLaVA record it was written from.

    POPE and ScienceQA carry the record id in their files (image name, id); the table formats (MMBench, MMStar,
    MMVP) keep the records' order. Every pair is checked to have the same answer.
    """
    if len(items) != len(records):
        raise ValueError(f"{family}: {len(items)} exported items but {len(records)} records")
    by_id = {record["id"]: record for record in records}
    pairs = []
    if family == "pope":
        pairs = [(item, by_id[Path(str(item.image.value)).stem]) for item in items]
    elif family == "scienceqa":
        pairs = [(item, by_id[str(item.id)]) for item in items]
    else:
        pairs = list(zip(sorted(items, key=lambda item: int(item.id)), records))
    for item, record in pairs:
        if str(item.answer).strip().lower() != str(record["answer"]).strip().lower():
            raise ValueError(f"{family}: exported item {item.id} answers {item.answer!r} but record {record['id']} "
                             f"answers {record['answer']!r}: the export and the records do not line up")
    return pairs


def load_joined(exports: dict[str, BenchmarkExport], records_path: Path
                ) -> dict[str, list[tuple[BenchmarkItem, dict[str, Any]]]]:
    """Every family's (item, record) pairs for one split."""
    records = json.loads(Path(records_path).read_text(encoding="utf-8"))
    joined = {}
    for family in FAMILIES:
        benchmark = get_benchmark(family)
        export = exports[family]
        items = benchmark.load(export.files, export.images)
        joined[family] = join_items_to_records(family, items, [r for r in records if r["family"] == family])
    return joined


def answer_by_option_text(record: dict[str, Any]) -> dict[str, Any]:
    """The record with a multiple-choice answer given as its option's text ("circle", not "B").

    The letter is a lookup across the prompt that the tiny LLM does not learn within the demo's budget (measured on
    a CoT model trained with letters: the value its rationale stated was right 52% / 43% / 96% of the time on MMBench
    / MMStar / MMVP, the letter it then wrote 28% / 24% / 59%). Answering with the option's text leaves that lookup
    out of every method alike; the harness maps the text back to its letter before the official rule reads it
    (`answer_extraction="final_option"`, VLMEvalKit's option-text matching).
    """
    options = record.get("options")
    if not options or record.get("answer") not in LETTERS[: len(options)]:
        return record
    value = options[LETTERS.index(record["answer"])]
    gpt = f"{record['rationale']} {answer_text(value)}" if record.get("rationale") else answer_text(value)
    return {**record, "answer": value,
            "conversations": [*record["conversations"][:-1], {"from": "gpt", "value": gpt}]}


def write_prompted_records(joined: dict[str, list[tuple[BenchmarkItem, dict[str, Any]]]], method: str,
                           out_path: Path) -> Path:
    """Write LLaVA records whose human turn is `method`'s evaluation prompt, answering by option text."""
    spec = get_method(method)
    prompted = []
    for family, pairs in joined.items():
        benchmark = get_benchmark(family)
        for item, record in pairs:
            human = f"<image>\n{spec.prompt(benchmark, item)}"
            record = answer_by_option_text(record)
            prompted.append({**record, "conversations": [{"from": "human", "value": human},
                                                         record["conversations"][1]]})
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(prompted, ensure_ascii=False), encoding="utf-8")
    return out_path
