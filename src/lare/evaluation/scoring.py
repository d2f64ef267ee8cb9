"""Score a predictions file against a benchmark's data files: what `lare eval score` runs."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from lare.evaluation.answer_extraction import extract_answer
from lare.evaluation.benchmarks import get_benchmark
from lare.evaluation.predictions import align_predictions, read_predictions

logger = logging.getLogger(__name__)


def score_predictions(
    benchmark: str,
    data_paths: Sequence[str | Path],
    predictions_path: str | Path,
    mode: str = "official",
    allow_missing: bool = False,
    answer_extraction: str = "none",
) -> dict[str, Any]:
    """Load the benchmark files (images are never decoded), match the predictions by id and score them.

    Args:
        benchmark: one of `BENCHMARK_NAMES`.
        data_paths: the benchmark's data file(s); POPE takes one per split.
        predictions_path: JSONL with one `{"id", "prediction", "tokens"?, "split"?}` line per sample.
        mode: "official" (default) or another harness's convention the benchmark supports ("lmms-eval").
        allow_missing: score items without a prediction as empty answers instead of failing.
        answer_extraction: "none" (the official rule reads the raw text), "final" (it reads the text from the
            last "The answer is" on: for chain-of-thought outputs) or "final_option" ("final", with an option
            named by its text turned into its letter); see `lare.evaluation.answer_extraction`.

    Returns:
        {"benchmark", "mode", **metrics}: fractions in [0, 1], `tokens_correct` null without token counts.
    """
    module = get_benchmark(benchmark)
    if mode not in module.MODES:
        raise ValueError(f"{benchmark} supports modes {module.MODES}, got {mode!r}")
    items = module.load(data_paths)
    predictions = align_predictions(items, read_predictions(predictions_path), predictions_path, allow_missing)
    predictions = [replace(p, prediction=extract_answer(p.prediction, answer_extraction, item.options))
                   for item, p in zip(items, predictions)]
    metrics = module.score(items, predictions, mode)
    logger.info("scored %d %s items from %s (%s mode)", len(items), benchmark, predictions_path, mode)
    return {"benchmark": benchmark, "mode": mode, "answer_extraction": answer_extraction, **metrics}
