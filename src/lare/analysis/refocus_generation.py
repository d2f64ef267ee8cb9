"""Batched greedy generation that keeps each sample's refocus trace: saliency, windows and steps taken."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from lare.analysis.answer_match import is_correct
from lare.analysis.samples import AnalysisSample, batched, model_inputs
from lare.evaluation.generation import count_generated_tokens, eos_token_ids


@dataclass
class GeneratedAnswer:
    """One sample's answer and the latent loop behind it.

    Attributes:
        text: decoded answer, special tokens removed, stripped.
        n_tokens: generated ids up to and including the first eos (the "# Tokens" count).
        steps_taken: latent steps this sample ran (0 for T = 0).
        saliency: [T, gh, gw] per-step saliency (zeros for halted steps), or None for T = 0.
        windows: [T, 4] (row0, col0, row1, col1), −1 for halted steps, or None for T = 0.
        step_mask: [T] bool, the steps that ran, or None for T = 0.
        correct: whether the answer matches the sample's ground truth (None without one).
    """

    text: str
    n_tokens: int
    steps_taken: int
    saliency: torch.Tensor | None
    windows: torch.Tensor | None
    step_mask: torch.Tensor | None
    correct: bool | None


@torch.no_grad()
def generate_with_refocus(model: Any, processor: Any, samples: Sequence[AnalysisSample], batch_size: int = 8,
                          max_new_tokens: int = 32, latent_steps: int | None = None) -> list[GeneratedAnswer]:
    """Greedy answers for `samples` in batches, each with its refocus trace (on CPU).

    Args:
        latent_steps: T; None runs the model's configured steps, 0 the plain model.
    """
    eos_ids = eos_token_ids(model, processor)
    answers: list[GeneratedAnswer] = []
    for chunk in batched(samples, batch_size):
        inputs = model_inputs(processor, chunk, model.device)
        out = model.generate(**inputs, latent_steps=latent_steps, max_new_tokens=max_new_tokens, do_sample=False,
                             eos_token_id=eos_ids, return_dict_in_generate=True)
        for row, sample in enumerate(chunk):
            n_tokens = count_generated_tokens(out.sequences[row], eos_ids)
            text = processor.batch_decode(out.sequences[row:row + 1, :n_tokens], skip_special_tokens=True)[0].strip()
            has_loop = out.windows is not None
            windows = out.windows[row].cpu() if has_loop else None  # [T, 4]
            answers.append(GeneratedAnswer(
                text=text,
                n_tokens=n_tokens,
                steps_taken=int(out.latent_steps_taken[row]),
                saliency=out.saliency[row].float().cpu() if has_loop else None,  # [T, gh, gw]
                windows=windows,
                step_mask=windows[:, 0] >= 0 if has_loop else None,  # [T]; halted steps carry window −1
                correct=is_correct(text, sample.answer, sample.options) if sample.answer is not None else None,
            ))
    return answers
