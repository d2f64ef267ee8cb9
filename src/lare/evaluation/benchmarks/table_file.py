"""Read the row-shaped files benchmarks ship as: TSV, CSV, parquet, JSON and JSONL.

Rows come back as plain dicts of column -> value. Table cells that are empty (pandas' NaN when VLMEvalKit wrote the
TSV) come back as None, so "missing" has one spelling for every loader.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import sys
from pathlib import Path
from typing import Any

from lare.evaluation.benchmarks.format_error import BenchmarkFormatError

logger = logging.getLogger(__name__)

TABLE_SUFFIXES = (".tsv", ".csv", ".parquet", ".json", ".jsonl")


def read_rows(path: str | Path) -> list[dict[str, Any]]:
    """Read every row of a benchmark file, choosing the reader from the suffix.

    Returns:
        One dict per row, keyed by column name; empty table cells and NaN are None.

    Raises:
        BenchmarkFormatError: unknown suffix, unreadable JSON, or a JSON file that is not a list of objects.
        ImportError: a parquet file without `pyarrow` installed.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in (".tsv", ".csv"):
        return _read_delimited(path, "\t" if suffix == ".tsv" else ",")
    if suffix == ".parquet":
        return _read_parquet(path)
    if suffix == ".jsonl":
        return _read_jsonl(path)
    if suffix == ".json":
        return _read_json(path)
    raise BenchmarkFormatError(path, "file", None, f"unknown file type '{suffix}', expected one of {TABLE_SUFFIXES}")


def blank_to_none(value: Any) -> Any:
    """Map the spellings of "no value" (None, "", NaN) to None."""
    if value is None:
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, str) and value.strip() == "":
        return None
    return value


def _read_delimited(path: Path, delimiter: str) -> list[dict[str, Any]]:
    # Base64 images are far longer than csv's 128 KiB default cell limit; the limit is process-wide, so only raise it.
    if csv.field_size_limit() < sys.maxsize // 2:
        csv.field_size_limit(sys.maxsize // 2)
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle, delimiter=delimiter)
        if reader.fieldnames is None:
            raise BenchmarkFormatError(path, "row 1", None, "empty file: no header row")
        rows = []
        for row_number, row in enumerate(reader, start=2):
            if None in row:
                raise BenchmarkFormatError(path, f"row {row_number}", None, "more cells than header columns")
            rows.append({key: blank_to_none(value) for key, value in row.items()})
    return rows


def _read_parquet(path: Path) -> list[dict[str, Any]]:
    try:
        import pyarrow.parquet as pq
    except ImportError as error:
        raise ImportError(
            f"reading {path} needs pyarrow, which is not installed: `pip install pyarrow`, or convert the file to TSV"
        ) from error
    table = pq.read_table(path)
    return [{key: blank_to_none(value) for key, value in row.items()} for row in table.to_pylist()]


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    rows = []
    with path.open(encoding="utf-8") as handle:
        for line_number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                raise BenchmarkFormatError(path, f"line {line_number}", None, f"invalid JSON: {error}") from error
            if not isinstance(row, dict):
                raise BenchmarkFormatError(path, f"line {line_number}", None, "expected a JSON object")
            rows.append(row)
    return rows


def _read_json(path: Path) -> list[dict[str, Any]]:
    text = path.read_text(encoding="utf-8")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        # POPE's official `coco_pope_*.json` files are JSON lines despite the suffix.
        if error.msg == "Extra data":
            return _read_jsonl(path)
        raise BenchmarkFormatError(path, "file", None, f"invalid JSON: {error}") from error
    if isinstance(data, dict):
        if data and all(isinstance(value, dict) for value in data.values()):
            # ScienceQA's problems.json style: {id: record}. Keep the id the mapping gives.
            data = [{"id": key, **value} for key, value in data.items()]
        else:
            data = [data]  # a one-line JSONL file (e.g. a POPE split cut to one question)
    if not isinstance(data, list) or not all(isinstance(row, dict) for row in data):
        raise BenchmarkFormatError(path, "file", None, "expected a JSON list of objects")
    return data


class RowReader:
    """Typed access to one row's fields, with errors that name the file, the row and the field.

    Column names are matched case-insensitively and with '-' and '_' treated alike, because the same benchmark ships
    `l2-category` (VLMEvalKit TSV), `L2-category` (lmms-lab parquet) and `l2_category` (MMStar parquet).
    """

    def __init__(self, path: Path, where: str, row: dict[str, Any]) -> None:
        self.path = path
        self.where = where
        self._row = row
        self._columns = {_normalise_column(name): name for name in row}

    def get(self, *names: str) -> Any:
        """The first of `names` present with a value, else None."""
        for name in names:
            column = self._columns.get(_normalise_column(name))
            if column is not None and blank_to_none(self._row[column]) is not None:
                return self._row[column]
        return None

    def text(self, *names: str) -> str | None:
        value = self.get(*names)
        return None if value is None else str(value).strip()

    def require_text(self, *names: str) -> str:
        value = self.text(*names)
        if value is None:
            raise self.error(names[0], "missing or empty")
        return value

    def require_int(self, *names: str) -> int:
        value = self.get(*names)
        if value is None:
            raise self.error(names[0], "missing or empty")
        try:
            number = float(value)
        except (TypeError, ValueError) as error:
            raise self.error(names[0], f"expected an integer, got {value!r}") from error
        if not number.is_integer():
            raise self.error(names[0], f"expected an integer, got {value!r}")
        return int(number)

    def has(self, name: str) -> bool:
        return _normalise_column(name) in self._columns

    def error(self, field: str | None, problem: str) -> BenchmarkFormatError:
        return BenchmarkFormatError(self.path, self.where, field, problem)


def _normalise_column(name: str) -> str:
    return str(name).strip().lower().replace("-", "_")
