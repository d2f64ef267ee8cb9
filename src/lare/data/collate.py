"""`LaReCollator`: a list of `Sample`s to model-ready tensors.

Prompts are left-padded so that, in a batch, every sample's `<bot>` and latent slots sit at the same positions (the
latent loop appends them after the prompt). Targets, the text after `<eot>`, are right-padded with -100.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any, Literal

import torch
from PIL import Image

from lare.data.dataset import Sample
from lare.data.evidence import evidence_cells

logger = logging.getLogger(__name__)

IGNORE_INDEX = -100
TARGET_MODES = ("lare", "cot", "direct")
LATENT_REPLACES = ("prefix", "all", "none")

# Stand-in pixels for text-only samples, which have no image tokens: `pixel_values` stays one tensor per batch.
_BLANK_IMAGE_SIDE = 32
_BLANK_IMAGE_COLOUR = (255, 255, 255)


def answer_text(answer: str) -> str:
    """The sentence that states the final answer in every target."""
    return f"The answer is {answer}."


class LaReCollator:
    """Batch `Sample`s into prompts, pixels, targets and explicit-rationale tokens.

    Targets (the text after `<eot>`), for samples with both a rationale and an answer:
        - "cot": rationale + " The answer is X."
        - "direct": "The answer is X."
        - "lare" with `latent_replaces="prefix"`: the rationale minus its first `prefix_tokens` tokens (the part the
          latents replace), then " The answer is X."
        - "lare" with `latent_replaces="all"`: "The answer is X."
        - "lare" with `latent_replaces="none"`: the whole rationale, then " The answer is X." The latents precede
          it and replace nothing: the first stage of a Coconut-style curriculum, where the LLM learns the task
          with latent slots in place before a later stage drops the rationale's beginning.
    Samples without a rationale or an answer (captions, instructions) use their gpt turn in every mode. Each target
    ends with the tokenizer's eos token.

    Args:
        processor: a `LaReProcessor` (tokenizer, image_processor, format_prompt).
        target: "lare", "cot" or "direct".
        latent_replaces: "prefix", "all" or "none" (only used with target="lare").
        prefix_tokens: P, the number of rationale tokens the latents replace.
        max_target_tokens: when set, targets (eos included) are cut to this many tokens.
    """

    def __init__(
        self,
        processor: Any,
        target: Literal["lare", "cot", "direct"] = "lare",
        latent_replaces: Literal["prefix", "all", "none"] = "prefix",
        prefix_tokens: int = 32,
        max_target_tokens: int | None = None,
    ) -> None:
        if target not in TARGET_MODES:
            raise ValueError(f"target must be one of {TARGET_MODES}, got {target!r}")
        if latent_replaces not in LATENT_REPLACES:
            raise ValueError(f"latent_replaces must be one of {LATENT_REPLACES}, got {latent_replaces!r}")
        if prefix_tokens < 0:
            raise ValueError(f"prefix_tokens must be >= 0, got {prefix_tokens}")
        if max_target_tokens is not None and max_target_tokens < 1:
            raise ValueError(f"max_target_tokens must be >= 1 or None, got {max_target_tokens}")
        self.processor = processor
        self.tokenizer = processor.tokenizer
        if self.tokenizer.pad_token_id is None or self.tokenizer.eos_token_id is None:
            raise ValueError("the tokenizer needs both a pad token and an eos token")
        self.target = target
        self.latent_replaces = latent_replaces
        self.prefix_tokens = prefix_tokens
        self.max_target_tokens = max_target_tokens
        # The visual tokens form a square patch grid (LaReConfig.grid_size); evidence boxes are mapped onto it.
        self.grid_side = math.isqrt(processor.num_image_tokens)
        if self.grid_side ** 2 != processor.num_image_tokens:
            raise ValueError(f"processor.num_image_tokens ({processor.num_image_tokens}) is not a square patch grid")
        self.centre_crop = bool(getattr(processor.image_processor, "do_center_crop", True))

    def _encode(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def target_ids(self, sample: Sample) -> list[int]:
        """Token ids of the text after `<eot>` for one sample, ending with eos (before any truncation)."""
        if sample.rationale is None or sample.answer is None:
            ids = self._encode(sample.target)
        elif self.target == "direct" or (self.target == "lare" and self.latent_replaces == "all"):
            ids = self._encode(answer_text(sample.answer))
        else:
            rationale = self._encode(sample.rationale)
            if self.target == "lare" and self.latent_replaces == "prefix":
                rationale = rationale[self.prefix_tokens :]
            # The answer follows the rationale after a space, as it does in the plain CoT text.
            ids = rationale + self._encode(" " + answer_text(sample.answer))
        ids = ids + [self.tokenizer.eos_token_id]
        if self.max_target_tokens is not None:
            ids = ids[: self.max_target_tokens]
        return ids

    def __call__(self, samples: Sequence[Sample]) -> dict[str, torch.Tensor]:
        """Collate a batch.

        Returns:
            input_ids [B, Lp], attention_mask [B, Lp]: left-padded prompts (chat template applied; text-only
                samples get no image tokens).
            pixel_values [B, 3, H, W] (a blank image for text-only samples).
            labels [B, Lt]: target ids right-padded with -100.
            rationale_ids [B, Lr], rationale_mask [B, Lr]: explicit-rationale tokens right-padded with the pad id;
                the mask is all zero for samples without a rationale.
            evidence_mask [B, Nb, Nv]: per evidence box, in the record's order, 1 on the patch-grid cells that
                hold it (raster order, `lare.data.evidence`); rows past a sample's boxes (and samples without
                boxes) are all zero. Read only by the optional saliency grounding (`LaReConfig.grounding_weight`).
        """
        if not samples:
            raise ValueError("cannot collate an empty batch")
        pad_id = self.tokenizer.pad_token_id
        prompts = [
            self._encode(self.processor.format_prompt(sample.question, has_image=sample.image is not None))
            for sample in samples
        ]
        input_ids, attention_mask = _pad(prompts, pad_id, side="left")  # [B, Lp]
        labels, _ = _pad([self.target_ids(sample) for sample in samples], IGNORE_INDEX, side="right")  # [B, Lt]
        rationales = [self._encode(s.rationale) if s.rationale is not None else [] for s in samples]
        rationale_ids, rationale_mask = _pad(rationales, pad_id, side="right")  # [B, Lr]
        images = [
            sample.image
            if sample.image is not None
            else Image.new("RGB", (_BLANK_IMAGE_SIDE, _BLANK_IMAGE_SIDE), _BLANK_IMAGE_COLOUR)
            for sample in samples
        ]
        pixel_values = self.processor.image_processor(images, return_tensors="pt")["pixel_values"]  # [B, 3, H, W]
        grid = (self.grid_side, self.grid_side)
        per_sample = [
            evidence_cells(sample.boxes if sample.image is not None else None,
                           sample.image.size if sample.image is not None else (1, 1), grid, self.centre_crop)
            for sample in samples
        ]  # each [n_boxes, Nv]
        evidence_mask = torch.zeros(len(samples), max(1, max(len(cells) for cells in per_sample)),
                                    self.grid_side ** 2)  # [B, Nb, Nv]
        for row, cells in enumerate(per_sample):
            evidence_mask[row, : len(cells)] = cells
        return {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "pixel_values": pixel_values,
            "labels": labels,
            "rationale_ids": rationale_ids,
            "rationale_mask": rationale_mask,
            "evidence_mask": evidence_mask,
        }


def _pad(
    sequences: Sequence[list[int]], value: int, side: Literal["left", "right"]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad id lists to one length. Returns (ids [B, L], mask [B, L]); L is at least 1 so tensors are never empty."""
    length = max(1, max(len(sequence) for sequence in sequences))
    ids = torch.full((len(sequences), length), value, dtype=torch.long)  # [B, L]
    mask = torch.zeros((len(sequences), length), dtype=torch.long)  # [B, L]
    for row, sequence in enumerate(sequences):
        if not sequence:
            continue
        span = slice(length - len(sequence), length) if side == "left" else slice(0, len(sequence))
        ids[row, span] = torch.tensor(sequence, dtype=torch.long)
        mask[row, span] = 1
    return ids, mask
