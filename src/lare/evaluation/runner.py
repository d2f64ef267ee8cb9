"""Batched, resumable benchmark runs: questions in, one predictions JSONL line per question out.

The predictions file is the run's only state. Each finished batch is appended and fsync-ed; a rerun reads the file,
skips the ids already there and continues, so an interrupted run resumed any number of times holds each id once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from lare.evaluation.benchmarks import get_benchmark
from lare.evaluation.benchmarks.item import BenchmarkItem
from lare.evaluation.generation import generate_answers
from lare.evaluation.methods import get_method
from lare.evaluation.predictions import Prediction, PredictionWriter, read_predictions

logger = logging.getLogger(__name__)

LATENT_ABLATIONS = ("none", "zero", "shuffle", "noise")


def run_benchmark(
    model: Any,
    processor: Any,
    items: Sequence[BenchmarkItem],
    method: str,
    out_path: str | Path,
    batch_size: int = 8,
    max_new_tokens: int | None = None,
    latent_ablation: str = "none",
    seed: int = 0,
    show_progress: bool = True,
) -> Path:
    """Generate an answer for every item not yet in `out_path` and append it there.

    Args:
        model: a `LaReForConditionalGeneration` (in eval mode, on its device).
        processor: the matching `LaReProcessor`.
        items: questions of one benchmark, from its loader.
        method: "lare", "cot" or "direct" (see `lare.evaluation.methods`).
        out_path: predictions JSONL; created, or resumed when it exists.
        batch_size: questions per `generate` call (left-padded together).
        max_new_tokens: generation budget; None uses the method's default.
        latent_ablation: "none", or "zero" / "shuffle" / "noise" latents (LaRe only) to test their use.
        seed: seeds the "noise" ablation, so an ablated run is reproducible.
        show_progress: draw a tqdm bar.

    Returns:
        `out_path`, holding one line per item: id (+ split), prediction, tokens, latency_s. `latency_s` is the
        batch's wall time divided by its size.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if latent_ablation not in LATENT_ABLATIONS:
        raise ValueError(f"latent_ablation must be one of {LATENT_ABLATIONS}, got {latent_ablation!r}")
    spec = get_method(method)
    if latent_ablation != "none" and spec.latent_steps == 0:
        raise ValueError(f"latent_ablation={latent_ablation!r} needs latents; method {method!r} runs none")
    out_path = Path(out_path)
    keys = [item.key for item in items]
    if len(set(keys)) != len(keys):
        raise ValueError("items hold duplicate ids; load each benchmark file once")
    if not items:
        return out_path
    benchmark = get_benchmark(items[0].benchmark)
    done = set(read_predictions(out_path, tolerate_partial_last_line=True)) if out_path.exists() else set()
    todo = [item for item in items if item.key not in done]
    if done:
        logger.info("%s: %d of %d questions already answered, %d to go", out_path, len(items) - len(todo), len(items),
                    len(todo))
    budget = spec.default_max_new_tokens if max_new_tokens is None else max_new_tokens
    device = next(model.parameters()).device
    generator = torch.Generator(device=device).manual_seed(seed)
    with PredictionWriter(out_path) as writer, tqdm(total=len(todo), desc=f"{benchmark.NAME} {method}", unit="q",
                                                    disable=not show_progress) as bar:
        for start in range(0, len(todo), batch_size):
            batch = todo[start:start + batch_size]
            # Shuffling needs another sample's latents: a lone last question borrows a partner whose answer is dropped.
            partners = _partner(items, batch) if latent_ablation == "shuffle" and len(batch) == 1 else []
            begin = time.perf_counter()
            answers = _answer(model, processor, benchmark, spec, batch + partners, budget, latent_ablation,
                              generator)[:len(batch)]
            latency = (time.perf_counter() - begin) / len(batch)
            writer.write(Prediction(id=item.id, split=item.split, prediction=text, tokens=tokens, latency_s=latency)
                         for item, (text, tokens) in zip(batch, answers))
            bar.update(len(batch))
    return out_path


def _answer(model, processor, benchmark, spec, batch, max_new_tokens, latent_ablation, generator):
    images = []
    for item in batch:
        if item.image is None:
            raise ValueError(f"{benchmark.NAME} question {item.id}: the data file carries no image (is --images set?)")
        try:
            images.append(item.image.load())
        except ValueError as error:
            raise ValueError(f"{benchmark.NAME} question {item.id}: {error}") from error
    prompts = [spec.prompt(benchmark, item) for item in batch]
    return generate_answers(model, processor, images, prompts, max_new_tokens, latent_steps=spec.latent_steps,
                            latent_ablation=latent_ablation, generator=generator)


def _partner(items: Sequence[BenchmarkItem], batch: Sequence[BenchmarkItem]) -> list[BenchmarkItem]:
    for item in items:
        if item.key != batch[0].key:
            return [item]
    raise ValueError("latent_ablation='shuffle' needs at least two questions")


def run_from_directory(
    model_dir: str | Path,
    benchmark: str,
    data_paths: Sequence[str | Path],
    out_path: str | Path,
    method: str = "lare",
    images: str | Path | None = None,
    latent_ablation: str = "none",
    batch_size: int = 8,
    max_new_tokens: int | None = None,
    limit: int | None = None,
    device: str | None = None,
) -> Path:
    """Load a saved model and a benchmark's files, then `run_benchmark`: what `lare eval run` does."""
    from lare import LaReForConditionalGeneration, LaReProcessor

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    items = get_benchmark(benchmark).load(data_paths, images)
    if limit is not None:
        items = items[:limit]
    model = LaReForConditionalGeneration.from_pretrained(model_dir).to(device).eval()
    processor = LaReProcessor.from_pretrained(model_dir)
    return run_benchmark(model, processor, items, method, out_path, batch_size=batch_size,
                         max_new_tokens=max_new_tokens, latent_ablation=latent_ablation)
