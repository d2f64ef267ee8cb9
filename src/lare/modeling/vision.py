"""The vision side: a Hugging Face vision tower and the 2-layer GELU MLP projector into the LLM's embedding space."""

from __future__ import annotations

import torch
from torch import nn
from transformers import AutoModel, PreTrainedConfig
from transformers.activations import ACT2FN


class VisionTower(nn.Module):
    """Any HF vision encoder (CLIP, SigLIP, …) built from its config; returns patch features.

    With `select_strategy="default"` the leading CLS token is dropped (CLIP); "full" keeps every token (SigLIP).
    """

    def __init__(self, vision_config: PreTrainedConfig, select_strategy: str) -> None:
        super().__init__()
        self.encoder = AutoModel.from_config(vision_config, attn_implementation="sdpa")
        self.select_strategy = select_strategy

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W] → [B, Nv, Dv] patch features in raster order."""
        hidden = self.encoder(pixel_values=pixel_values).last_hidden_state  # [B, (1+)Nv, Dv]
        if self.select_strategy == "default":
            hidden = hidden[:, 1:]  # [B, Nv, Dv]
        return hidden


class MultiModalProjector(nn.Module):
    """LLaVA-1.5's `mlp2x_gelu`: Linear → GELU → Linear, vision width → LLM width."""

    def __init__(self, vision_hidden_size: int, text_hidden_size: int, activation: str) -> None:
        super().__init__()
        self.linear_1 = nn.Linear(vision_hidden_size, text_hidden_size)
        self.act = ACT2FN[activation]
        self.linear_2 = nn.Linear(text_hidden_size, text_hidden_size)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """[B, Nv, Dv] → [B, Nv, D]."""
        return self.linear_2(self.act(self.linear_1(features)))
