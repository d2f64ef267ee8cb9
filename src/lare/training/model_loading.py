"""Build the model and processor a stage starts from (`ModelSpec`), and apply the stage's loss settings."""

from __future__ import annotations

import copy
import logging
from pathlib import Path
from typing import Any

import torch

from lare.modeling.configuration_lare import LaReConfig
from lare.modeling.modeling_lare import LaReForConditionalGeneration
from lare.processing import LaReProcessor
from lare.training.config import LossSpec, ModelSpec

logger = logging.getLogger(__name__)


def build_model(spec: ModelSpec, seed: int) -> tuple[LaReForConditionalGeneration, LaReProcessor]:
    """The model and processor described by `spec`; random init is seeded with `seed`.

    Raises:
        ValueError: when the tokenizer has more tokens than the model's vocabulary.
    """
    torch.manual_seed(seed)
    if spec.path is not None:
        path = resolve_model_path(spec.path)
        model = LaReForConditionalGeneration.from_pretrained(path)
        processor = LaReProcessor.from_pretrained(path)
    elif spec.from_backbones is not None:
        model = LaReForConditionalGeneration.from_backbones(
            vision=spec.from_backbones.vision, llm=spec.from_backbones.llm, **spec.overrides)
        processor = LaReProcessor.from_backbones(spec.from_backbones.vision, spec.from_backbones.llm,
                                                 num_image_tokens=model.config.num_image_tokens)
    else:
        model, processor = _tiny(spec)
    n_tokens, vocab = len(processor.tokenizer), model.config.text_config.vocab_size
    if n_tokens > vocab:
        raise ValueError(f"the tokenizer has {n_tokens} tokens but the model's vocabulary only {vocab}")
    if processor.num_image_tokens != model.config.num_image_tokens:
        raise ValueError(f"the processor expands <image> to {processor.num_image_tokens} tokens, the model "
                         f"expects {model.config.num_image_tokens}")
    return model, processor


def resolve_model_path(path: str | Path) -> Path:
    """A saved model directory as given, or a training run directory resolved to its latest checkpoint."""
    from lare.training.checkpoint import latest_checkpoint

    path = Path(path)
    if (path / "config.json").is_file():
        return path
    checkpoint = latest_checkpoint(path)
    if checkpoint is None:
        raise FileNotFoundError(f"model.path {path}: neither a saved model (config.json) nor a run directory "
                                "with a checkpoint")
    return checkpoint


def _tiny(spec: ModelSpec) -> tuple[LaReForConditionalGeneration, LaReProcessor]:
    corpus = ""
    if spec.tokenizer_corpus == "synthetic":
        from lare.data.synthetic import vocabulary_corpus

        corpus = vocabulary_corpus()
    processor = LaReProcessor.tiny(extra_corpus=corpus)
    tokenizer = processor.tokenizer
    preset = LaReConfig.tiny()
    overrides: dict[str, Any] = copy.deepcopy(spec.overrides)
    # The tokenizer trained on a larger corpus has more tokens than the preset's default vocabulary.
    text = {**preset.text_config.to_dict(), "vocab_size": len(tokenizer),
            "pad_token_id": tokenizer.pad_token_id, "eos_token_id": tokenizer.eos_token_id,
            **overrides.pop("text_config", {})}
    vision = {**preset.vision_config.to_dict(), **overrides.pop("vision_config", {})}
    ids = dict(pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
               image_token_id=processor.image_token_id,
               bot_token_id=tokenizer.convert_tokens_to_ids(processor.bot_token),
               eot_token_id=tokenizer.convert_tokens_to_ids(processor.eot_token))
    config = LaReConfig.tiny(text_config=text, vision_config=vision, **{**ids, **overrides})
    if config.num_image_tokens != processor.num_image_tokens:
        # Overriding the vision geometry changes the number of visual tokens the prompt must hold.
        processor.num_image_tokens = config.num_image_tokens
        size = config.vision_config.image_size
        processor.image_processor.size = {"shortest_edge": size}
        processor.image_processor.crop_size = {"height": size, "width": size}
    return LaReForConditionalGeneration(config), processor


def apply_loss_spec(model: LaReForConditionalGeneration, loss: LossSpec) -> dict[str, Any]:
    """Write the stage's λs and P into the model config; return the resolved loss settings (T included).

    T is not written into the config: the stage passes it to `forward`, so a checkpoint keeps the model's own
    inference default (stage I trains with T = 0 but does not turn the model into a T = 0 model).
    """
    config = model.config
    for name in ("align_weight", "image_weight", "text_weight", "grounding_weight", "evidence_windows_in_training",
                 "prefix_tokens"):
        value = getattr(loss, name)
        if value is not None:
            setattr(config, name, value)
    latent_steps = config.latent_steps if loss.latent_steps is None else loss.latent_steps
    return {"latent_steps": latent_steps, "align_weight": config.align_weight,
            "image_weight": config.image_weight, "text_weight": config.text_weight,
            "grounding_weight": config.grounding_weight,
            "evidence_windows_in_training": config.evidence_windows_in_training, "prefix_tokens": config.prefix_tokens}
