"""Saliency capture and the sliding window.

Saliency is the attention of the reasoning state (the last k query rows) over the visual keys. It is captured by
an attention function registered through transformers' `AttentionInterface`: it runs SDPA as usual and, only when a
`SaliencyRecorder` is passed down the forward call, also computes softmax(q·Kᵀ·scale + mask) for the last k query
rows (O(k·N) per head). Full attention matrices are never materialised and the model never switches to eager.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

SALIENCY_ATTENTION = "lare_sdpa"


class SaliencyRecorder:
    """Collects, for selected layers, the last `rows` query rows' attention over the visual keys.

    `visual_positions` [B, Nv] holds each sample's visual-token indices on the key axis (they differ per sample
    under left padding). The recorded map is averaged over heads, rows and layers.
    """

    def __init__(self, rows: int, layers: list[int], visual_positions: torch.Tensor) -> None:
        self.rows = rows
        self.layers = frozenset(layers)
        self.visual_positions = visual_positions  # [B, Nv]
        self._per_layer: list[torch.Tensor] = []

    def record(self, query: torch.Tensor, key: torch.Tensor, attention_mask: torch.Tensor | None,
               scaling: float) -> None:
        """query [B, H, q, d], key [B, Hkv, n, d], mask bool/additive [B, 1, q, n] or None (causal)."""
        batch, num_heads, q_len, head_dim = query.shape
        num_kv_heads, kv_len = key.shape[1], key.shape[2]
        rows = min(self.rows, q_len)
        # Heads h = g·n_rep + r share kv head g (transformers' repeat_kv layout), so grouping avoids copying K.
        q_last = query[:, :, -rows:].reshape(batch, num_kv_heads, -1, head_dim).float()  # [B, Hkv, n_rep·k, d]
        scores = q_last @ key.float().transpose(-1, -2) * scaling  # [B, Hkv, n_rep·k, n]
        scores = scores.view(batch, num_kv_heads, -1, rows, kv_len)  # [B, Hkv, n_rep, k, n]
        if attention_mask is None:
            # Lower-right aligned causal mask: query i sits at absolute position n - q + i.
            query_pos = torch.arange(kv_len - rows, kv_len, device=query.device)
            allowed = torch.arange(kv_len, device=query.device)[None, :] <= query_pos[:, None]  # [k, n]
            scores = scores.masked_fill(~allowed, float("-inf"))
        else:
            mask_rows = attention_mask[:, :, -rows:, :kv_len].unsqueeze(1)  # [B, 1, 1|H, k, n]
            if mask_rows.dtype == torch.bool:
                scores = scores.masked_fill(~mask_rows, float("-inf"))
            else:
                scores = scores + mask_rows.float()
        probs = scores.softmax(dim=-1)  # [B, Hkv, n_rep, k, n]
        index = self.visual_positions[:, None, None, None, :].expand(*probs.shape[:-1], -1)
        visual = probs.gather(-1, index)  # [B, Hkv, n_rep, k, Nv]
        self._per_layer.append(visual.mean(dim=(1, 2, 3)))  # [B, Nv]

    def attention_mass(self) -> torch.Tensor:
        """[B, Nv]: attention probability on each visual token, averaged over heads, rows and recorded layers."""
        if not self._per_layer:
            raise RuntimeError("SaliencyRecorder recorded nothing: is the model's attention implementation "
                               f"'{SALIENCY_ATTENTION}'?")
        return torch.stack(self._per_layer).mean(dim=0)  # [B, Nv]

    def saliency(self) -> torch.Tensor:
        """[B, Nv]: the attention mass renormalised to sum to 1 over the visual tokens."""
        mass = self.attention_mass()  # [B, Nv]
        return mass / mass.sum(dim=-1, keepdim=True).clamp_min(torch.finfo(mass.dtype).tiny)


def saliency_sdpa_attention(module, query, key, value, attention_mask, scaling=None, saliency_recorder=None,
                            **kwargs):
    """SDPA, plus the last-k-rows attention over visual keys when a `SaliencyRecorder` asks for this layer."""
    output = sdpa_attention_forward(module, query, key, value, attention_mask, scaling=scaling, **kwargs)
    if saliency_recorder is not None and module.layer_idx in saliency_recorder.layers:
        scale = scaling if scaling is not None else query.shape[-1] ** -0.5
        saliency_recorder.record(query, key, attention_mask, scale)
    return output


def register_saliency_attention() -> None:
    """Register the attention function and its (SDPA) mask builder; idempotent."""
    AttentionInterface.register(SALIENCY_ATTENTION, saliency_sdpa_attention)
    AttentionMaskInterface.register(SALIENCY_ATTENTION, sdpa_mask)


def select_window(saliency: torch.Tensor, window: int, allowed_cells: torch.Tensor | None = None) -> torch.Tensor:
    """Sum-pool a window×window box (stride 1) over the saliency grid and take the argmax.

    saliency [B, gh, gw] → windows [B, 4] as (row0, col0, row1, col1), end-exclusive. Ties go to the first
    box in raster order. `allowed_cells` [B, gh, gw] (training with evidence windows): a sample with any allowed
    cell only takes windows that contain one; a sample with none is unrestricted.
    """
    pooled = F.avg_pool2d(saliency[:, None], kernel_size=window, stride=1)[:, 0]  # [B, gh-w+1, gw-w+1]
    if allowed_cells is not None:
        touches = F.max_pool2d(allowed_cells.float()[:, None], kernel_size=window, stride=1)[:, 0] > 0
        restricted = allowed_cells.flatten(1).gt(0).any(dim=-1)[:, None, None]  # [B, 1, 1]
        pooled = pooled.masked_fill(restricted & ~touches, float("-inf"))
    best = pooled.flatten(1).argmax(dim=-1)  # [B]
    row0 = torch.div(best, pooled.shape[-1], rounding_mode="floor")
    col0 = best % pooled.shape[-1]
    return torch.stack([row0, col0, row0 + window, col0 + window], dim=-1)  # [B, 4]


def gather_window(features: torch.Tensor, windows: torch.Tensor, window: int, grid_width: int) -> torch.Tensor:
    """features [B, gh·gw, D] in raster order, windows [B, 4] of side `window` → window features [B, w·w, D]."""
    offsets = torch.arange(window, device=features.device)
    rows = windows[:, 0:1] + offsets  # [B, w]
    cols = windows[:, 1:2] + offsets  # [B, w]
    index = (rows[:, :, None] * grid_width + cols[:, None, :]).flatten(1)  # [B, w·w]
    return features.gather(1, index[:, :, None].expand(-1, -1, features.shape[-1]))  # [B, w·w, D]
