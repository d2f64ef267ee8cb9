"""The predictions file: one JSON line per sample, written as the run goes, read back to resume and to score.

A line is `{"id": ..., "prediction": "...", "tokens": 12, "latency_s": 0.41}`, plus `"split"` for POPE, whose split
files reuse question ids. `id` is the benchmark's own id; `tokens` and `latency_s` may be absent for predictions
made by other tools.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from lare.evaluation.benchmarks.format_error import BenchmarkFormatError
from lare.evaluation.benchmarks.item import BenchmarkItem, prediction_key

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Prediction:
    """One model answer. `tokens` counts generated ids up to and including the first eos."""

    id: int | str
    prediction: str
    tokens: int | None = None
    latency_s: float | None = None
    split: str | None = None

    @property
    def key(self) -> tuple[str, str]:
        return prediction_key(self.id, self.split)

    def to_json(self) -> str:
        record: dict[str, Any] = {"id": self.id}
        if self.split is not None:
            record["split"] = self.split
        record.update(prediction=self.prediction, tokens=self.tokens, latency_s=self.latency_s)
        return json.dumps(record, ensure_ascii=False)


def read_predictions(path: str | Path, tolerate_partial_last_line: bool = False) -> dict[tuple[str, str], Prediction]:
    """Read a predictions JSONL file into {key: Prediction}.

    Args:
        path: the JSONL file.
        tolerate_partial_last_line: skip a last line cut short by an interrupted write (the resume case). When
            False such a line is an error, since scoring must not silently drop a sample.

    Raises:
        BenchmarkFormatError: invalid JSON, missing or mistyped `id`/`prediction`, or an id given twice.
    """
    path = Path(path)
    predictions: dict[tuple[str, str], Prediction] = {}
    with path.open(encoding="utf-8") as handle:
        lines = handle.read().split("\n")
    for line_number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            is_last = line_number == len(lines)  # no trailing newline: the write was interrupted
            if tolerate_partial_last_line and is_last:
                logger.warning("%s: ignoring the unfinished last line %d", path, line_number)
                continue
            raise BenchmarkFormatError(path, f"line {line_number}", None, f"invalid JSON: {error}") from error
        prediction = _parse_record(record, path, line_number)
        if prediction.key in predictions:
            raise BenchmarkFormatError(path, f"line {line_number}", "id",
                                       f"duplicate prediction for id {prediction.id!r}"
                                       + (f" in split {prediction.split!r}" if prediction.split else ""))
        predictions[prediction.key] = prediction
    return predictions


def _parse_record(record: Any, path: Path, line_number: int) -> Prediction:
    where = f"line {line_number}"
    if not isinstance(record, dict):
        raise BenchmarkFormatError(path, where, None, "expected a JSON object")
    for name in ("id", "prediction"):
        if name not in record:
            raise BenchmarkFormatError(path, where, name, "missing")
    if not isinstance(record["id"], (int, str)) or isinstance(record["id"], bool):
        raise BenchmarkFormatError(path, where, "id", f"expected an int or a string, got {record['id']!r}")
    if not isinstance(record["prediction"], str):
        raise BenchmarkFormatError(path, where, "prediction", f"expected a string, got {record['prediction']!r}")
    tokens = record.get("tokens")
    if tokens is not None and (not isinstance(tokens, int) or isinstance(tokens, bool) or tokens < 0):
        raise BenchmarkFormatError(path, where, "tokens", f"expected a non-negative int, got {tokens!r}")
    latency = record.get("latency_s")
    if latency is not None and not isinstance(latency, (int, float)):
        raise BenchmarkFormatError(path, where, "latency_s", f"expected a number, got {latency!r}")
    split = record.get("split")
    if split is not None and not isinstance(split, str):
        raise BenchmarkFormatError(path, where, "split", f"expected a string, got {split!r}")
    return Prediction(id=record["id"], prediction=record["prediction"], tokens=tokens, latency_s=latency, split=split)


def align_predictions(
    items: Sequence[BenchmarkItem],
    predictions: dict[tuple[str, str], Prediction],
    source: str | Path,
    allow_missing: bool = False,
) -> list[Prediction]:
    """The prediction for each item, in item order.

    Args:
        items: the benchmark questions to score.
        predictions: as returned by `read_predictions`.
        source: the predictions file, for error messages.
        allow_missing: score an item without a prediction as an empty answer (every official rule counts that
            as wrong, except POPE's, which reads it as "yes"). When False a missing prediction is an error.

    Raises:
        BenchmarkFormatError: a prediction whose id is not in the benchmark (wrong file or wrong split), or, unless
            `allow_missing`, an item with no prediction.
    """
    item_keys = {item.key for item in items}
    unknown = [key for key in predictions if key not in item_keys]
    if unknown:
        shown = ", ".join(_describe(key) for key in unknown[:5])
        raise BenchmarkFormatError(source, f"{len(unknown)} predictions", "id",
                                   f"ids not in the benchmark data: {shown}")
    aligned = []
    missing = []
    for item in items:
        prediction = predictions.get(item.key)
        if prediction is None:
            missing.append(item.key)
            prediction = Prediction(id=item.id, prediction="", split=item.split)
        aligned.append(prediction)
    if missing:
        shown = ", ".join(_describe(key) for key in missing[:5])
        if not allow_missing:
            raise BenchmarkFormatError(source, f"{len(missing)} of {len(items)} items", "id",
                                       f"no prediction for ids {shown} (use allow_missing to score them as wrong)")
        logger.warning("%d of %d items have no prediction and are scored as empty answers: %s", len(missing),
                       len(items), shown)
    return aligned


def _describe(key: tuple[str, str]) -> str:
    split, item_id = key
    return f"{split}/{item_id}" if split else item_id


class PredictionWriter:
    """Appends prediction lines to a JSONL file, flushing and fsync-ing each so an interrupted run loses nothing.

    A last line cut short by an earlier crash is removed first, so the file stays valid JSONL.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        _drop_partial_last_line(self.path)
        self._handle: IO[str] = self.path.open("a", encoding="utf-8")

    def write(self, predictions: Iterable[Prediction]) -> None:
        for prediction in predictions:
            self._handle.write(prediction.to_json() + "\n")
        self._handle.flush()
        os.fsync(self._handle.fileno())

    def close(self) -> None:
        self._handle.close()

    def __enter__(self) -> PredictionWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _drop_partial_last_line(path: Path) -> None:
    if not path.exists():
        return
    data = path.read_bytes()
    if not data or data.endswith(b"\n"):
        return
    keep = data.rfind(b"\n") + 1
    logger.warning("%s: removing an unfinished last line left by an interrupted run", path)
    with path.open("r+b") as handle:
        handle.truncate(keep)
