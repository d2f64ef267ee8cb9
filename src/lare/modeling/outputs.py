"""Typed outputs of the LaRe model."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers.cache_utils import Cache
from transformers.generation.utils import GenerateDecoderOnlyOutput
from transformers.utils import ModelOutput


@dataclass
class LatentReasoningOutput(ModelOutput):
    """What the latent loop produced.

    latents [B, T, k, D]; saliency [B, T, gh, gw] (each valid step sums to 1); windows [B, T, 4] as
    (row0, col0, row1, col1) end-exclusive (−1 for steps a halted sample skipped); step_mask [B, T] bool;
    latent_steps_taken [B]; attention_mask [B, L] over the prompt, `<bot>` and every latent slot; `cache` holds
    all of them but the last step's latents, which are `pending_embeds` [B, k, D] (cached path only).
    """

    latents: torch.Tensor | None = None
    saliency: torch.Tensor | None = None
    windows: torch.Tensor | None = None
    step_mask: torch.Tensor | None = None
    latent_steps_taken: torch.Tensor | None = None
    attention_mask: torch.Tensor | None = None
    cache: Cache | None = None
    pending_embeds: torch.Tensor | None = None
    visual_features: torch.Tensor | None = None


@dataclass
class LaReOutput(ModelOutput):
    """`forward`'s output: total loss, per-loss floats, logits and the latent loop's fields."""

    loss: torch.Tensor | None = None
    losses: dict[str, float] | None = None
    logits: torch.Tensor | None = None
    cache: Cache | None = None
    latents: torch.Tensor | None = None
    saliency: torch.Tensor | None = None
    windows: torch.Tensor | None = None
    latent_steps_taken: torch.Tensor | None = None


@dataclass
class LaReGenerateOutput(GenerateDecoderOnlyOutput):
    """`generate(..., return_dict_in_generate=True)`: new tokens only, plus the latent loop's fields."""

    latents: torch.Tensor | None = None
    saliency: torch.Tensor | None = None
    windows: torch.Tensor | None = None
    latent_steps_taken: torch.Tensor | None = None
