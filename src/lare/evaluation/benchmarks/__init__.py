"""The five benchmarks, each a module with a loader for its official format and its official scorer.

Every benchmark module provides:
  NAME, MODES                      registry name; scoring modes ("official" first, the default)
  DIRECT_INSTRUCTION               lmms-eval's post prompt for the benchmark
  load(paths, images) -> items     read the benchmark's own file format(s)
  question_prompt(item) -> str     lmms-eval's prompt body, without the method's instruction
  score(items, predictions, mode)  metrics as a JSON-ready dict
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from lare.evaluation.benchmarks.item import BenchmarkItem

BENCHMARK_NAMES = ("mmbench", "mmstar", "mmvp", "scienceqa", "pope")


class Benchmark(Protocol):
    NAME: str
    MODES: tuple[str, ...]
    DIRECT_INSTRUCTION: str

    def load(self, paths: Sequence[str | Path], images: str | Path | None = None) -> list[BenchmarkItem]: ...

    def question_prompt(self, item: BenchmarkItem) -> str: ...

    def score(self, items: Sequence[BenchmarkItem], predictions: Sequence[Any], mode: str = "official") -> dict: ...


def get_benchmark(name: str) -> Benchmark:
    """The benchmark module registered as `name` (one of `BENCHMARK_NAMES`)."""
    if name not in BENCHMARK_NAMES:
        raise ValueError(f"unknown benchmark {name!r}; choose one of {', '.join(BENCHMARK_NAMES)}")
    return importlib.import_module(f"lare.evaluation.benchmarks.{name}")  # type: ignore[return-value]
