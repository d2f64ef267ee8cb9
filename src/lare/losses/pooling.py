"""Hybrid mean-max pooling: the paper's pooling for the alignment loss (masked mean ‖ masked max → Linear)."""

from __future__ import annotations

import torch
from torch import nn


class HybridMeanMaxPool(nn.Module):
    """Pool a padded token sequence into one vector: ``Linear([masked mean ‖ masked max])``.

    The mean keeps the overall content of the sequence and the max keeps its strongest features; the
    linear layer maps their concatenation into a shared space (the alignment loss's embedding space).

    Args:
        in_dim: feature size ``D`` of the tokens.
        out_dim: size of the pooled, projected vector.

    Shapes:
        ``forward(tokens [B, N, D], mask [B, N]) -> [B, out_dim]``.
    """

    def __init__(self, in_dim: int, out_dim: int) -> None:
        super().__init__()
        for name, value in (("in_dim", in_dim), ("out_dim", out_dim)):
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"HybridMeanMaxPool: {name} must be a positive int, got {value!r}")
        self.in_dim = in_dim
        self.out_dim = out_dim
        self.proj = nn.Linear(2 * in_dim, out_dim)

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Pool the valid tokens of each row.

        Args:
            tokens: ``[B, N, D]`` token features.
            mask: ``[B, N]`` bool or 0/1; true/1 marks a valid token. Padded tokens take no part in
                either the mean or the max.

        Returns:
            ``[B, out_dim]``.

        Raises:
            ValueError: on shape mismatch, or if a row has no valid token (its mean and max are
                undefined). Callers drop such rows before pooling.
        """
        if tokens.dim() != 3 or tokens.shape[-1] != self.in_dim:
            raise ValueError(f"tokens must be [B, N, {self.in_dim}], got shape {tuple(tokens.shape)}")
        if mask.shape != tokens.shape[:2]:
            raise ValueError(f"mask shape {tuple(mask.shape)} does not match tokens' [B, N] = {tuple(tokens.shape[:2])}")
        valid = mask.bool()  # [B, N]
        counts = valid.sum(dim=1)  # [B]
        # This check syncs with the device; it is worth it, because an empty row would otherwise turn
        # into a silent NaN (mean) or -inf-derived garbage (max) that poisons the whole batch's loss.
        empty = (counts == 0).nonzero().flatten()
        if empty.numel() > 0:
            raise ValueError(
                f"HybridMeanMaxPool: rows {empty.tolist()} have an all-zero mask; filter them out before pooling"
            )

        weights = valid.unsqueeze(-1).to(tokens.dtype)  # [B, N, 1]
        mean = (tokens * weights).sum(dim=1) / counts.unsqueeze(-1).to(tokens.dtype)  # [B, D]
        # finfo.min rather than -inf: a masked entry can never win the max because each row has a valid
        # token, and a finite fill keeps fp16 arithmetic free of inf - inf.
        filled = tokens.masked_fill(~valid.unsqueeze(-1), torch.finfo(tokens.dtype).min)  # [B, N, D]
        maximum = filled.amax(dim=1)  # [B, D]
        return self.proj(torch.cat([mean, maximum], dim=-1))  # [B, out_dim]
