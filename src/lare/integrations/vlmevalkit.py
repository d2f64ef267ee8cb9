"""LaRe as a VLMEvalKit model: register `LaReVLMEvalKit` in `vlmeval.config.supported_VLM`, e.g.
`supported_VLM["lare"] = functools.partial(LaReVLMEvalKit, model_path="runs/model")`, then `run.py --model lare`.

Written against VLMEvalKit's `vlmeval.vlm.base.BaseModel`: `generate(message, dataset)` validates the message and
calls `generate_inner`, where `message` is a list of `{"type": "text" | "image", "value": str}` (image values are
file paths). VLMEvalKit builds the benchmark prompt itself, so `use_custom_prompt` stays False. The token count of
the last answer is kept in `last_token_count` (VLMEvalKit's interface returns text only).

This module imports VLMEvalKit at import time (the class must subclass its base class); nothing else in `lare`
imports this module, so VLMEvalKit stays an optional dependency.
"""

from __future__ import annotations

import logging
from typing import Any

import torch

try:
    from vlmeval.vlm.base import BaseModel
except ImportError as error:  # pragma: no cover - depends on the environment
    raise ImportError("lare.integrations.vlmevalkit needs VLMEvalKit (the `vlmeval` package)") from error

from lare.evaluation.generation import generate_answers
from lare.evaluation.methods import get_method

logger = logging.getLogger(__name__)

_COT_SUFFIX = "\nThink step by step before giving the final answer."


class LaReVLMEvalKit(BaseModel):
    """VLMEvalKit wrapper around `LaReForConditionalGeneration`.

    Args:
        model_path: model directory written by `save_pretrained` (model and processor).
        method: "lare" (configured latent steps), "direct" (no latents) or "cot" (no latents, reasoning asked).
        latent_ablation: "none", "zero", "shuffle" (needs batches, so not available here) or "noise".
        max_new_tokens: generation budget; default the method's.
        device: torch device; default cuda when available.
    """

    INTERLEAVE = False

    def __init__(self, model_path: str, method: str = "lare", latent_ablation: str = "none",
                 max_new_tokens: int | None = None, device: str | None = None, **kwargs: Any) -> None:
        super().__init__()
        from lare import LaReForConditionalGeneration, LaReProcessor

        if latent_ablation == "shuffle":
            raise ValueError("latent_ablation='shuffle' needs a batch; VLMEvalKit asks one question at a time")
        if kwargs:
            logger.warning("LaReVLMEvalKit ignores unknown arguments: %s", sorted(kwargs))
        self.method = get_method(method)
        self.latent_ablation = latent_ablation
        self.max_new_tokens = max_new_tokens or self.method.default_max_new_tokens
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model = LaReForConditionalGeneration.from_pretrained(model_path).to(self.device).eval()
        self.processor = LaReProcessor.from_pretrained(model_path)
        self._generator = torch.Generator(device=self.device).manual_seed(0)
        self.last_token_count: int | None = None

    def generate_inner(self, message: list[dict[str, str]], dataset: str | None = None) -> str:
        """Answer one VLMEvalKit message: the texts joined by newlines, and the first image."""
        from lare.data.images import open_image

        texts = [part["value"] for part in message if part["type"] == "text"]
        image_paths = [part["value"] for part in message if part["type"] == "image"]
        if len(image_paths) > 1:
            logger.warning("%s: %d images in one message; LaRe reads the first", dataset, len(image_paths))
        prompt = "\n".join(texts) + (_COT_SUFFIX if self.method.name == "cot" else "")
        images = [open_image(image_paths[0])] if image_paths else None
        [(text, n_tokens)] = generate_answers(
            self.model, self.processor, images, [prompt], max_new_tokens=self.max_new_tokens,
            latent_steps=self.method.latent_steps, latent_ablation=self.latent_ablation, generator=self._generator,
        )
        self.last_token_count = n_tokens
        return text
