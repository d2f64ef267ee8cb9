"""The Extractor: a small transformer that turns the reasoning state into latent tokens by refocusing on F_t."""

from __future__ import annotations

import torch
from torch import nn


class ExtractorLayer(nn.Module):
    """Linear in → self-attention over the k latent queries → cross-attention over the window → FFN (pre-norm)."""

    def __init__(self, hidden_size: int, num_heads: int, ffn_multiplier: int) -> None:
        super().__init__()
        self.linear_in = nn.Linear(hidden_size, hidden_size)
        self.self_norm = nn.LayerNorm(hidden_size)
        self.self_attn = nn.MultiheadAttention(hidden_size, num_heads, batch_first=True)
        self.cross_norm = nn.LayerNorm(hidden_size)
        self.cross_attn = nn.MultiheadAttention(hidden_size, num_heads, batch_first=True)
        self.ffn_norm = nn.LayerNorm(hidden_size)
        self.ffn = nn.Sequential(
            nn.Linear(hidden_size, hidden_size * ffn_multiplier),
            nn.GELU(),
            nn.Linear(hidden_size * ffn_multiplier, hidden_size),
        )

    def forward(self, queries: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        """queries [B, k, H], features [B, M, H] → [B, k, H]."""
        x = self.linear_in(queries)  # [B, k, H]
        h = self.self_norm(x)
        x = x + self.self_attn(h, h, h, need_weights=False)[0]  # [B, k, H]
        h = self.cross_norm(x)
        x = x + self.cross_attn(h, features, features, need_weights=False)[0]  # [B, k, H]
        return x + self.ffn(self.ffn_norm(x))  # [B, k, H]


class Extractor(nn.Module):
    """Z_t = Extractor(S_t, F_t): L refocusing layers, then a GLU and an FFN back to the LLM width.

    The output goes through an RMS norm whose gain starts at the token-embedding RMS, so latents enter the LLM
    at the scale of ordinary input embeddings (`match_embedding_scale`).
    """

    def __init__(self, model_size: int, hidden_size: int, num_layers: int, num_heads: int,
                 ffn_multiplier: int, norm_eps: float) -> None:
        super().__init__()
        self.state_in = nn.Linear(model_size, hidden_size)
        self.feature_in = nn.Linear(model_size, hidden_size)
        self.layers = nn.ModuleList(
            ExtractorLayer(hidden_size, num_heads, ffn_multiplier) for _ in range(num_layers)
        )
        self.glu = nn.Linear(hidden_size, 2 * hidden_size)
        self.head = nn.Sequential(
            nn.LayerNorm(hidden_size),
            nn.Linear(hidden_size, hidden_size * ffn_multiplier),
            nn.GELU(),
            nn.Linear(hidden_size * ffn_multiplier, model_size),
        )
        self.output_norm = nn.RMSNorm(model_size, eps=norm_eps)

    def forward(self, state: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        """state [B, k, D], features [B, M, D] → latents [B, k, D]."""
        x = self.state_in(state)  # [B, k, H]
        memory = self.feature_in(features)  # [B, M, H]
        for layer in self.layers:
            x = layer(x, memory)  # [B, k, H]
        x = nn.functional.glu(self.glu(x), dim=-1)  # [B, k, H]
        return self.output_norm(self.head(x))  # [B, k, D]

    @torch.no_grad()
    def match_embedding_scale(self, embedding_weight: torch.Tensor) -> None:
        """Set the output gain to the RMS of the token embeddings (skipped on the meta device: weights load later)."""
        if embedding_weight.is_meta or self.output_norm.weight.is_meta:
            return
        rms = embedding_weight.float().pow(2).mean().sqrt()
        self.output_norm.weight.fill_(rms.item())
