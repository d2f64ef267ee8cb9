"""The one error every benchmark loader raises for malformed input."""

from __future__ import annotations

from pathlib import Path


class BenchmarkFormatError(ValueError):
    """A benchmark or prediction file that does not follow its format.

    The message always names the file, the row (1-based, counting the header as row 1 for tables) or the id, and
    the field, so a bad line in a 10k-row TSV can be found without a debugger.
    """

    def __init__(self, path: str | Path, where: str, field: str | None, problem: str) -> None:
        self.path = Path(path)
        self.where = where
        self.field = field
        self.problem = problem
        location = f"{self.path}, {where}" + (f", field '{field}'" if field else "")
        super().__init__(f"{location}: {problem}")
