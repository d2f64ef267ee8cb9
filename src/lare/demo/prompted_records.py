"""Training records whose questions are worded exactly as the evaluation harness will ask them.

The synthetic generator writes each split twice: as LLaVA records (with rationale, answer and evidence boxes) and
in the benchmarks' official formats. Training on the harness's prompts (the lmms-eval template of the record's
benchmark plus the method's instruction) means the demo measures reasoning, not prompt-format transfer.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lare.data.synthetic import FAMILIES, BenchmarkExport
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


def write_prompted_records(joined: dict[str, list[tuple[BenchmarkItem, dict[str, Any]]]], method: str,
                           out_path: Path) -> Path:
    """Write LLaVA records whose human turn is `method`'s evaluation prompt; everything else is kept."""
    spec = get_method(method)
    prompted = []
    for family, pairs in joined.items():
        benchmark = get_benchmark(family)
        for item, record in pairs:
            human = f"<image>\n{spec.prompt(benchmark, item)}"
            prompted.append({**record, "conversations": [{"from": "human", "value": human},
                                                         record["conversations"][1]]})
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(prompted, ensure_ascii=False), encoding="utf-8")
    return out_path
