"""LaRe: multimodal reasoning via latent refocusing."""

from lare.modeling.configuration_lare import LaReConfig
from lare.modeling.modeling_lare import LaReForConditionalGeneration
from lare.processing import LaReProcessor

__all__ = ["LaReConfig", "LaReForConditionalGeneration", "LaReProcessor"]
