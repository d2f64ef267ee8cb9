"""Benchmark-independent metrics: accuracy by group, and the two "tokens per correct answer" definitions."""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SampleOutcome:
    """One scored generation: was it right, and how many tokens did the model generate for it (None: unknown)."""

    correct: bool
    tokens: int | None


def accuracy(hits: Sequence[bool]) -> float | None:
    """Fraction of True in `hits`, in [0, 1]; None for an empty sequence (nothing to score)."""
    return sum(hits) / len(hits) if hits else None


def accuracy_by(labels: Iterable[str | None], hits: Iterable[bool]) -> dict[str, float]:
    """Accuracy per label, sorted by label; samples whose label is None are left out."""
    groups: dict[str, list[bool]] = defaultdict(list)
    for label, hit in zip(labels, hits, strict=True):
        if label is not None:
            groups[label].append(hit)
    return {label: sum(values) / len(values) for label, values in sorted(groups.items())}


def tokens_correct(outcomes: Sequence[SampleOutcome]) -> float | None:
    """The paper's "# Tokens": mean generated tokens over the correctly answered samples.

    None when no sample carries a token count, or when nothing was answered correctly.
    """
    if not _all_counted(outcomes):
        return None
    counts = [outcome.tokens for outcome in outcomes if outcome.correct]
    return sum(counts) / len(counts) if counts else None


def lmms_eval_tokens_per_correct_answer(outcomes: Sequence[SampleOutcome]) -> float | None:
    """lmms-eval's `tokens_per_correct_answer`: all output tokens (right and wrong answers) / number correct."""
    if not _all_counted(outcomes):
        return None
    n_correct = sum(outcome.correct for outcome in outcomes)
    return sum(outcome.tokens for outcome in outcomes) / n_correct if n_correct else None


def token_metrics(outcomes: Sequence[SampleOutcome]) -> dict[str, float | None]:
    """Both token metrics under their report keys."""
    return {
        "tokens_correct": tokens_correct(outcomes),
        "lmms_eval_tokens_per_correct_answer": lmms_eval_tokens_per_correct_answer(outcomes),
    }


def _all_counted(outcomes: Sequence[SampleOutcome]) -> bool:
    counted = sum(outcome.tokens is not None for outcome in outcomes)
    if 0 < counted < len(outcomes):
        # A mean over the counted subset would silently describe a different sample set; report nothing instead.
        logger.warning("%d of %d predictions lack a token count; token metrics are null", len(outcomes) - counted,
                       len(outcomes))
    return bool(outcomes) and counted == len(outcomes)
