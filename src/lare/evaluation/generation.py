"""One batched `generate` call from (image, prompt) pairs to (answer text, generated token count) pairs.

Shared by the benchmark runner and the lmms-eval / VLMEvalKit adapters, so every harness counts tokens the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch


def count_generated_tokens(sequence: torch.Tensor, eos_token_ids: Sequence[int]) -> int:
    """Generated ids up to and including the first eos; all of them when there is none.

    Args:
        sequence: [n_new] new token ids of one sample (padded after its eos).
    """
    is_eos = torch.isin(sequence, torch.tensor(list(eos_token_ids), device=sequence.device))  # [n_new]
    if bool(is_eos.any()):
        return int(is_eos.nonzero()[0, 0]) + 1
    return int(sequence.shape[0])


def eos_token_ids(model: Any, processor: Any) -> list[int]:
    """Every id that ends an answer: the model's generation-config eos id(s) and the tokenizer's."""
    ids = model.generation_config.eos_token_id
    ids = [] if ids is None else [ids] if isinstance(ids, int) else list(ids)
    if processor.tokenizer.eos_token_id is not None:
        ids.append(processor.tokenizer.eos_token_id)
    if not ids:
        raise ValueError("neither the model's generation config nor the tokenizer defines an eos token")
    return sorted(set(ids))


def generate_answers(
    model: Any,
    processor: Any,
    images: Sequence[Any] | None,
    prompts: Sequence[str],
    max_new_tokens: int,
    latent_steps: int | None = None,
    latent_ablation: str = "none",
    generator: torch.Generator | None = None,
    do_sample: bool = False,
    **generate_kwargs: Any,
) -> list[tuple[str, int]]:
    """Greedy (by default) answers for a batch.

    Args:
        model / processor: a `LaReForConditionalGeneration` and its `LaReProcessor`.
        images: one RGB image per prompt, or None for a text-only batch.
        prompts: the question prompts (the processor applies the chat template and the image marker).
        max_new_tokens: generation budget.
        latent_steps: None runs the model's configured latent steps; 0 runs the plain model.
        latent_ablation: "none", "zero", "shuffle" or "noise" latents.
        generator: random source of the "noise" ablation.

    Returns:
        (answer text with surrounding whitespace stripped, generated token count) per prompt.
    """
    device = next(model.parameters()).device
    inputs = processor(images=list(images) if images is not None else None, text=list(prompts),
                       return_tensors="pt").to(device)
    eos_ids = eos_token_ids(model, processor)
    kwargs: dict[str, Any] = dict(max_new_tokens=max_new_tokens, do_sample=do_sample, eos_token_id=eos_ids,
                                  return_dict_in_generate=True, **generate_kwargs)
    if latent_steps is not None:
        kwargs["latent_steps"] = latent_steps
    if latent_ablation != "none":
        kwargs.update(latent_ablation=latent_ablation, generator=generator)
    with torch.no_grad():
        sequences = model.generate(**inputs, **kwargs).sequences  # [B, n_new]
    answers = []
    for row in sequences:
        n_tokens = count_generated_tokens(row, eos_ids)
        text = processor.batch_decode(row[None, :n_tokens], skip_special_tokens=True)[0].strip()
        answers.append((text, n_tokens))
    return answers
