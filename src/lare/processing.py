"""LaReProcessor: tokenizer + image processor + chat template + LaRe's special tokens."""

from __future__ import annotations

import logging
from typing import Any

from transformers import AutoTokenizer, BatchFeature, CLIPImageProcessorPil, ProcessorMixin

from lare.tokenization import (
    BEGIN_OF_THOUGHT_TOKEN,
    END_OF_THOUGHT_TOKEN,
    IMAGE_TOKEN,
    build_tiny_tokenizer,
)

logger = logging.getLogger(__name__)


def add_lare_special_tokens(tokenizer: Any) -> dict[str, int]:
    """Add `<image>`, `<bot>`, `<eot>` (and a pad token when missing) with `add_special_tokens`; return the ids."""
    wanted = [token for token in (IMAGE_TOKEN, BEGIN_OF_THOUGHT_TOKEN, END_OF_THOUGHT_TOKEN)
              if token not in tokenizer.get_vocab()]
    if wanted:
        tokenizer.add_special_tokens({"extra_special_tokens": wanted}, replace_extra_special_tokens=False)
    if tokenizer.pad_token is None:
        tokenizer.add_special_tokens({"pad_token": "<|pad|>"})
    tokenizer.padding_side = "left"
    return {
        "image": tokenizer.convert_tokens_to_ids(IMAGE_TOKEN),
        "bot": tokenizer.convert_tokens_to_ids(BEGIN_OF_THOUGHT_TOKEN),
        "eot": tokenizer.convert_tokens_to_ids(END_OF_THOUGHT_TOKEN),
        "pad": tokenizer.pad_token_id,
    }


class LaReProcessor(ProcessorMixin):
    """Turns (image, question) pairs into left-padded model inputs.

    Each question becomes one user turn of the tokenizer's chat template; its `<image>` marker (or one added
    in front) expands to `num_image_tokens` image tokens; the prompt ends with the assistant prefix, where the
    model appends `<bot>` and its latents.
    """

    attributes = ["image_processor", "tokenizer"]

    def __init__(self, image_processor=None, tokenizer=None, num_image_tokens: int = 256,
                 chat_template: str | None = None, **kwargs: Any) -> None:
        self.num_image_tokens = num_image_tokens
        super().__init__(image_processor, tokenizer, chat_template=chat_template, **kwargs)
        self.tokenizer.padding_side = "left"

    # Special tokens ---------------------------------------------------------------------------------------
    image_token = IMAGE_TOKEN
    bot_token = BEGIN_OF_THOUGHT_TOKEN
    eot_token = END_OF_THOUGHT_TOKEN

    @property
    def image_token_id(self) -> int:
        return self.tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)

    # Prompt construction ----------------------------------------------------------------------------------
    def format_prompt(self, question: str, has_image: bool = True) -> str:
        """Chat-formatted prompt text with the image marker expanded, ending with the assistant prefix."""
        n_markers = question.count(IMAGE_TOKEN)
        if has_image and n_markers == 0:
            question = f"{IMAGE_TOKEN}\n{question}"
        elif has_image and n_markers > 1:
            raise ValueError(f"the question holds {n_markers} {IMAGE_TOKEN} markers, but one image is given: "
                             f"{question[:80]!r}")
        elif not has_image and n_markers:
            raise ValueError(f"the question holds an {IMAGE_TOKEN} marker but no image is given: {question[:80]!r}")
        messages = [{"role": "user", "content": question}]
        template = self.chat_template or self.tokenizer.chat_template
        prompt = self.tokenizer.apply_chat_template(messages, chat_template=template, tokenize=False,
                                                    add_generation_prompt=True)
        return prompt.replace(IMAGE_TOKEN, IMAGE_TOKEN * self.num_image_tokens)

    def __call__(self, images: Any = None, text: str | list[str] | None = None, return_tensors: str = "pt",
                 **kwargs: Any) -> BatchFeature:
        """images (one per text, or None) and questions → `input_ids`, `attention_mask`, `pixel_values`."""
        if text is None:
            raise ValueError("LaReProcessor needs `text` (one question per image)")
        texts = [text] if isinstance(text, str) else list(text)
        if images is not None and not isinstance(images, (list, tuple)):
            images = [images]
        if images is not None and len(images) != len(texts):
            raise ValueError(f"got {len(images)} images for {len(texts)} texts: give exactly one image per text")
        prompts = [self.format_prompt(t, has_image=images is not None) for t in texts]
        encoded = self.tokenizer(prompts, padding=True, add_special_tokens=False, return_tensors=return_tensors)
        data = dict(encoded)
        if images is not None:
            data["pixel_values"] = self.image_processor(images, return_tensors=return_tensors)["pixel_values"]
        return BatchFeature(data=data, tensor_type=return_tensors)

    def batch_decode(self, *args: Any, **kwargs: Any) -> list[str]:
        return self.tokenizer.batch_decode(*args, **kwargs)

    def decode(self, *args: Any, **kwargs: Any) -> str:
        return self.tokenizer.decode(*args, **kwargs)

    # Constructors -----------------------------------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: Any, **kwargs: Any) -> LaReProcessor:
        """Load a saved processor (e.g. from a LaRe model directory)."""
        from lare.modeling.modeling_lare import register_auto_classes

        register_auto_classes()  # the directory's config.json says model_type "lare"
        return super().from_pretrained(pretrained_model_name_or_path, **kwargs)

    @classmethod
    def tiny(cls, extra_corpus: str = "") -> LaReProcessor:
        """The processor matching `LaReConfig.tiny()`: an offline byte-level BPE tokenizer and 64 px CLIP input."""
        from lare.modeling.configuration_lare import LaReConfig

        tokenizer = build_tiny_tokenizer(extra_corpus)
        config = LaReConfig.tiny()
        size = config.vision_config.image_size
        image_processor = CLIPImageProcessorPil(size={"shortest_edge": size}, crop_size={"height": size, "width": size})
        return cls(image_processor=image_processor, tokenizer=tokenizer, num_image_tokens=config.num_image_tokens)

    @classmethod
    def from_backbones(cls, vision: str, llm: str, num_image_tokens: int | None = None) -> LaReProcessor:
        """The processor for `LaReForConditionalGeneration.from_backbones(vision, llm)`.

        Uses the vision tower's image processor (the non-fast CLIP one) and the LLM's tokenizer plus LaRe's
        special tokens. The number of image tokens follows from the vision config when not given.
        """
        from transformers import AutoConfig

        tokenizer = AutoTokenizer.from_pretrained(llm)
        add_lare_special_tokens(tokenizer)
        image_processor = CLIPImageProcessorPil.from_pretrained(vision)
        if num_image_tokens is None:
            vision_config = AutoConfig.from_pretrained(vision)
            vision_config = getattr(vision_config, "vision_config", vision_config)
            num_image_tokens = (vision_config.image_size // vision_config.patch_size) ** 2
        return cls(image_processor=image_processor, tokenizer=tokenizer, num_image_tokens=num_image_tokens)
