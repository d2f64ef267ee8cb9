"""Text-prefix reconstruction (the paper's Eq. 8): decode the first P reasoning tokens from the latents alone."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

DEFAULT_PREFIX_LENGTH = 32
"""The paper's P: how many explicit-reasoning tokens the latents must reconstruct (Appendix C sweeps 2-128)."""


def prefix_reconstruction_loss(
    language_model: nn.Module,
    input_embeddings: nn.Embedding,
    lm_head: nn.Module,
    latents: torch.Tensor,
    latent_mask: torch.Tensor,
    prefix_ids: torch.Tensor,
    prefix_mask: torch.Tensor,
) -> torch.Tensor:
    """Cross-entropy of the first reasoning tokens, decoded with only the latents as context.

    The causal LM sees ``[latents ; embed(prefix_ids)]`` and nothing else — no image, no question, no
    chat template — so the loss can only be low if the latents themselves carry the reasoning. It is
    teacher-forced: the hidden state at the last valid position before each valid prefix token predicts
    that token (the last valid latent predicts the first prefix token).

    The caller passes ``prefix_ids`` already truncated to the prefix length ``P``
    (:data:`DEFAULT_PREFIX_LENGTH` = 32 by default); this function does not cut anything.

    Masking: the attention mask is ``[latent_mask ; prefix_mask]`` and the position ids are
    ``mask.cumsum(-1) - 1`` clamped at 0, so masked latent slots (halted steps) and pad tokens (left or
    right) change neither the positions nor the attention of the valid tokens: the loss is independent
    of padding. Samples whose ``prefix_mask`` is all zero (no reasoning text) are left out; if none
    remains the result is an exact 0 still connected to ``latents``' graph (so every DDP rank runs
    backward).

    Args:
        language_model: a transformers base model (e.g. ``Qwen2Model``) called as
            ``language_model(inputs_embeds=..., attention_mask=..., position_ids=..., use_cache=False)``
            and returning ``.last_hidden_state``.
        input_embeddings: the LM's token embedding (``[V, D]``).
        lm_head: maps hidden states ``[..., D]`` to logits ``[..., V]``.
        latents: ``[B, M, D]`` latent tokens, already at the scale of the token embeddings.
        latent_mask: ``[B, M]``; 1 = valid latent. A sample with reasoning text needs at least one.
        prefix_ids: ``[B, P]`` token ids of the first ``P`` reasoning tokens (padding ids arbitrary but
            in the vocabulary).
        prefix_mask: ``[B, P]``; 1 = real token.

    Returns:
        A 0-dim float32 tensor: the mean cross-entropy over all valid prefix tokens of the batch.

    Raises:
        ValueError: on shape mismatch, or a sample with reasoning text but no valid latent.
    """
    if latents.dim() != 3:
        raise ValueError(f"latents must be [B, M, D], got shape {tuple(latents.shape)}")
    if latent_mask.shape != latents.shape[:2]:
        raise ValueError(f"latent_mask shape {tuple(latent_mask.shape)} does not match latents' [B, M] = {tuple(latents.shape[:2])}")
    if prefix_ids.dim() != 2 or prefix_ids.shape[0] != latents.shape[0]:
        raise ValueError(f"prefix_ids must be [{latents.shape[0]}, P], got shape {tuple(prefix_ids.shape)}")
    if prefix_mask.shape != prefix_ids.shape:
        raise ValueError(f"prefix_mask shape {tuple(prefix_mask.shape)} does not match prefix_ids' {tuple(prefix_ids.shape)}")

    keep = prefix_mask.bool().any(dim=-1)  # [B]
    if not keep.any():
        return latents.sum().float() * 0.0
    latents, latent_mask = latents[keep], latent_mask[keep].bool()  # [B', M, D], [B', M]
    prefix_ids, prefix_mask = prefix_ids[keep], prefix_mask[keep].bool()  # [B', P], [B', P]
    no_latent = (~latent_mask.any(dim=-1)).nonzero().flatten()
    if no_latent.numel() > 0:
        raise ValueError(
            f"prefix_reconstruction_loss: samples {no_latent.tolist()} (after dropping those without prefix) have "
            "reasoning text but no valid latent to decode it from"
        )

    num_latents = latents.shape[1]
    token_embeds = input_embeddings(prefix_ids)  # [B', P, D]
    inputs_embeds = torch.cat([latents.to(token_embeds.dtype), token_embeds], dim=1)  # [B', M+P, D]
    mask = torch.cat([latent_mask, prefix_mask], dim=1)  # [B', M+P]
    mask_long = mask.long()  # [B', M+P]
    position_ids = (mask_long.cumsum(dim=-1) - 1).clamp(min=0)  # [B', M+P]
    # use_cache=False: this is a training-only forward; building a KV cache would only cost memory.
    hidden = language_model(
        inputs_embeds=inputs_embeds, attention_mask=mask_long, position_ids=position_ids, use_cache=False
    ).last_hidden_state  # [B', M+P, D]

    # The predictor of a token is the last *valid* position before it, which is not simply j-1 when
    # masked latent slots or left padding sit in between.
    seq_len = mask.shape[1]
    index = torch.arange(seq_len, device=mask.device).expand_as(mask)  # [B', M+P]
    last_valid = torch.where(mask, index, torch.full_like(index, -1)).cummax(dim=-1).values  # [B', M+P]
    prev_valid = torch.cat([torch.full_like(last_valid[:, :1], -1), last_valid[:, :-1]], dim=1)  # [B', M+P]

    rows, cols = prefix_mask.nonzero(as_tuple=True)  # [N_tok] each
    predictor = prev_valid[rows, num_latents + cols]  # [N_tok], >= 0 since every sample has a valid latent
    logits = lm_head(hidden[rows, predictor])  # [N_tok, V]; only the needed rows go through the head
    return F.cross_entropy(logits.float(), prefix_ids[rows, cols].long())
