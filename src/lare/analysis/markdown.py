"""Markdown tables for the analysis reports (GitHub-flavoured pipe tables)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any


def format_cell(value: Any, digits: int = 3) -> str:
    """One cell: floats to `digits` decimals, None and NaN as "–", everything else through `str`.

    Pipes are escaped so that free text (questions, decoded answers) cannot break the table.
    """
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value).replace("|", "\\|").replace("\n", " ")


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]], digits: int = 3) -> str:
    """A pipe table: a header row, a separator and one line per row (numbers right-aligned).

    Raises:
        ValueError: when a row has a different number of cells than the header.
    """
    for index, row in enumerate(rows):
        if len(row) != len(header):
            raise ValueError(f"markdown_table: row {index} has {len(row)} cells, the header has {len(header)}")
    numeric = [bool(rows) and all(isinstance(row[col], (int, float)) and not isinstance(row[col], bool)
                                  for row in rows if row[col] is not None) for col in range(len(header))]
    lines = ["| " + " | ".join(format_cell(name) for name in header) + " |",
             "|" + "|".join("---:" if is_number else "---" for is_number in numeric) + "|"]
    lines += ["| " + " | ".join(format_cell(cell, digits) for cell in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"
