"""LaReConfig: the vision tower, the LLM and everything LaRe adds (projector, Extractor, refocus loop, losses)."""

from __future__ import annotations

import copy
from typing import Any, Literal

from huggingface_hub.dataclasses import strict
from transformers import AutoConfig, CLIPVisionConfig, PreTrainedConfig, Qwen2Config
from transformers.configuration_utils import SubConfigSpec
from transformers.image_utils import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD

from lare.tokenization import tiny_tokenizer_layout

HALTING_RULES = ("none", "cosine", "l1", "l2")
REFOCUS_MODES = ("extractor", "feedback")
STATE_LAYER_MODES = ("mix", "last")
FEATURE_SELECT_STRATEGIES = ("default", "full")


@strict
class LaReConfig(PreTrainedConfig):
    r"""Configuration of a LaRe model (vision encoder → MLP projector → causal LLM, plus the latent refocusing loop).

    Refocus settings:
        latent_steps (T): latent iterations before answering; 0 gives a plain LLaVA-style model.
        latent_tokens (k): latent embeddings fed back per iteration; the state is the last k positions.
        window: side of the square sum-pool window over the patch grid, in patches.
        use_window: False cross-attends over every visual token instead of the argmax window.
        refocus: "extractor" (the paper) or "feedback" (the last hidden states are fed back, Coconut-style).
        state_layers: "mix" (learned softmax mix of every layer's hidden states) or "last".
        saliency_layers: indices of the LLM layers whose attention builds the saliency map; None = the last half.
        halting / halting_threshold: per-sample adaptive stop when consecutive latents move less than the threshold.
    Loss settings (used by `forward` when `labels` are given): the λ weights, InfoNCE temperature, alignment
    dimension, prefix length P, and the image reconstructor's settings (a dict, see `ReconstructorConfig`);
    `image_mean` / `image_std` are the processor's pixel normalisation (CLIP's by default). Saliency grounding
    (not in the paper, off by default; `lare.losses.grounding`), for records with evidence boxes:
    `grounding_weight` weights the loss pulling each step's saliency onto its evidence box, and
    `evidence_windows_in_training` takes each training step's window over that box (inference never does).
    """

    model_type = "lare"
    sub_configs_defaults = {
        "vision_config": SubConfigSpec(config_class=AutoConfig, model_type="clip_vision_model"),
        "text_config": SubConfigSpec(config_class=AutoConfig, model_type="qwen2"),
    }

    vision_config: dict | PreTrainedConfig | None = None
    text_config: dict | PreTrainedConfig | None = None
    projector_hidden_act: str = "gelu"
    vision_feature_select_strategy: Literal["default", "full"] = "default"
    extractor_layers: int = 2
    extractor_heads: int = 12
    extractor_hidden_size: int = 1536
    extractor_ffn_multiplier: int = 4
    latent_steps: int = 4
    latent_tokens: int = 4
    window: int = 8
    use_window: bool = True
    refocus: str = "extractor"
    state_layers: str = "mix"
    saliency_layers: list[int] | None = None
    halting: str = "none"
    halting_threshold: float = 0.01
    image_token_id: int | None = None
    bot_token_id: int | None = None
    eot_token_id: int | None = None
    pad_token_id: int | None = None
    align_weight: float = 0.1
    image_weight: float = 0.1
    text_weight: float = 0.5
    grounding_weight: float = 0.0
    evidence_windows_in_training: bool = False
    align_temperature: float = 0.07
    align_dim: int = 256
    prefix_tokens: int = 32
    reconstructor: dict | None = None
    image_mean: list[float] | None = None
    image_std: list[float] | None = None
    tie_word_embeddings: bool = False

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        # The processor's pixel normalisation, undone to give the reconstruction target in [-1, 1].
        if self.image_mean is None:
            self.image_mean = list(OPENAI_CLIP_MEAN)
        if self.image_std is None:
            self.image_std = list(OPENAI_CLIP_STD)
        for name in ("image_mean", "image_std"):
            if len(getattr(self, name)) != 3:
                raise ValueError(f"LaReConfig.{name} must hold 3 values (RGB), got {getattr(self, name)}")
        self._check_choices("refocus", self.refocus, REFOCUS_MODES)
        self._check_choices("state_layers", self.state_layers, STATE_LAYER_MODES)
        self._check_choices("halting", self.halting, HALTING_RULES)
        self._check_choices("vision_feature_select_strategy", self.vision_feature_select_strategy,
                            FEATURE_SELECT_STRATEGIES)
        for name in ("extractor_layers", "extractor_heads", "extractor_hidden_size", "extractor_ffn_multiplier",
                     "latent_tokens", "window", "align_dim", "prefix_tokens"):
            if getattr(self, name) < 1:
                raise ValueError(f"LaReConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.latent_steps < 0:
            raise ValueError(f"LaReConfig.latent_steps must be >= 0, got {self.latent_steps}")
        if self.extractor_hidden_size % self.extractor_heads:
            raise ValueError(
                f"LaReConfig.extractor_hidden_size ({self.extractor_hidden_size}) must be divisible by "
                f"extractor_heads ({self.extractor_heads})"
            )
        if self.halting_threshold < 0:
            raise ValueError(f"LaReConfig.halting_threshold must be >= 0, got {self.halting_threshold}")
        if self.align_temperature <= 0:
            raise ValueError(f"LaReConfig.align_temperature must be > 0, got {self.align_temperature}")
        for name in ("align_weight", "image_weight", "text_weight", "grounding_weight"):
            if getattr(self, name) < 0:
                raise ValueError(f"LaReConfig.{name} must be >= 0, got {getattr(self, name)}")
        side = self.grid_size
        if self.window > side:
            raise ValueError(f"LaReConfig.window ({self.window}) is larger than the patch grid side ({side})")
        if self.saliency_layers is not None:
            n_layers = self.text_config.num_hidden_layers
            bad = [i for i in self.saliency_layers if not 0 <= i < n_layers]
            if bad or not self.saliency_layers:
                raise ValueError(
                    f"LaReConfig.saliency_layers must be a non-empty list of layer indices in [0, {n_layers}), "
                    f"got {self.saliency_layers}"
                )

    @staticmethod
    def _check_choices(field: str, value: Any, choices: tuple[str, ...]) -> None:
        if value not in choices:
            raise ValueError(f"LaReConfig.{field} must be one of {list(choices)}, got {value!r}")

    # Derived geometry -------------------------------------------------------------------------------------
    @property
    def grid_size(self) -> int:
        """Side of the square patch grid the vision tower produces."""
        return self.vision_config.image_size // self.vision_config.patch_size

    @property
    def num_image_tokens(self) -> int:
        """Visual tokens per image (CLS dropped with the "default" strategy)."""
        return self.grid_size**2

    @property
    def saliency_layer_indices(self) -> list[int]:
        """Layers whose attention is averaged into the saliency map (default: the last half)."""
        if self.saliency_layers is not None:
            return list(self.saliency_layers)
        n_layers = self.text_config.num_hidden_layers
        return list(range(n_layers // 2, n_layers))

    def copy_with(self, **overrides: Any) -> LaReConfig:
        """A deep copy with fields replaced (sub-configs are copied too, so models built from it stay independent)."""
        data = copy.deepcopy(self.to_dict())
        data.update(overrides)
        return LaReConfig(**data)

    # Presets ----------------------------------------------------------------------------------------------
    @classmethod
    def tiny(cls, **overrides: Any) -> LaReConfig:
        """A CPU-sized preset: 64 px images with 8 px patches (8×8 grid), a 4-layer Qwen2 LLM, random init.

        The vocabulary size and special-token ids are read from the tokenizer `LaReProcessor.tiny()` uses.
        """
        vocab_size, ids = tiny_tokenizer_layout()
        vision = CLIPVisionConfig(
            hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
            image_size=64, patch_size=8, projection_dim=64,
        )
        text = Qwen2Config(
            vocab_size=vocab_size, hidden_size=128, intermediate_size=256, num_hidden_layers=4,
            num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
            tie_word_embeddings=False, pad_token_id=ids["pad"], eos_token_id=ids["eos"], bos_token_id=None,
        )
        settings: dict[str, Any] = dict(
            vision_config=vision.to_dict(), text_config=text.to_dict(),
            extractor_layers=2, extractor_heads=4, extractor_hidden_size=128,
            latent_steps=4, latent_tokens=2, window=4,
            pad_token_id=ids["pad"], image_token_id=ids["image"], bot_token_id=ids["bot"], eot_token_id=ids["eot"],
            eos_token_id=ids["eos"],
            align_dim=64, prefix_tokens=8,
        )
        settings.update(overrides)
        return cls(**settings)
