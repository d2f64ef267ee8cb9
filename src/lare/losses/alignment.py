"""Symmetric InfoNCE alignment (the paper's Eq. 6) and the semantic-alignment module built on it.

Under ``torch.distributed`` the negatives are the *global* batch: each rank gathers the other ranks'
embeddings with gradients, so every sample is contrasted against every other sample in the step.
"""

from __future__ import annotations

import math

import torch
import torch.distributed as dist
import torch.distributed.nn.functional as dist_nn
import torch.nn.functional as F
from torch import nn

from lare.losses.pooling import HybridMeanMaxPool


def _world_size() -> int:
    """Number of ranks taking part, 1 outside an initialised process group."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return 1


def _global_count(local_count: int, device: torch.device) -> int:
    """Sum of ``local_count`` over all ranks (a collective under distributed, so every rank must call it)."""
    if _world_size() == 1:
        return local_count
    total = torch.tensor([local_count], device=device, dtype=torch.long)
    dist.all_reduce(total)
    return int(total.item())


def _gather_rows(x: torch.Tensor) -> tuple[torch.Tensor, int]:
    """All-gather the rows of ``x`` from every rank, keeping the autograd graph.

    Ranks may hold different numbers of rows (the alignment module drops samples without reasoning
    text), so the row counts are exchanged first and each rank's block is zero-padded to the largest
    one for the collective, then trimmed again.

    Args:
        x: ``[B_local, d]``.

    Returns:
        ``(x_global [B_global, d], offset)`` where ``x_global[offset : offset + B_local]`` are this rank's
        rows. Gradients flowing into other ranks' rows are sent back to them by the all-gather's backward
        (a sum over ranks).
    """
    world = _world_size()
    if world == 1:
        return x, 0
    rank = dist.get_rank()
    local = torch.tensor([x.shape[0]], device=x.device, dtype=torch.long)
    sizes_t = [torch.zeros_like(local) for _ in range(world)]
    dist.all_gather(sizes_t, local)
    sizes = [int(s.item()) for s in sizes_t]
    padded = F.pad(x, (0, 0, 0, max(sizes) - x.shape[0]))  # [B_max, d]
    blocks = dist_nn.all_gather(padded)  # world × [B_max, d], differentiable
    x_global = torch.cat([block[:n] for block, n in zip(blocks, sizes)], dim=0)  # [B_global, d]
    return x_global, sum(sizes[:rank])


def _check_temperature(temperature: float) -> None:
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)):
        raise ValueError(f"temperature must be a positive float, got {temperature!r}")
    if not math.isfinite(temperature) or temperature <= 0:
        raise ValueError(f"temperature must be a positive finite float, got {temperature!r}")


def _check_pair(a: torch.Tensor, b: torch.Tensor) -> None:
    if a.dim() != 2 or b.dim() != 2 or a.shape != b.shape:
        raise ValueError(f"a and b must both be [B, d] with the same shape, got {tuple(a.shape)} and {tuple(b.shape)}")


def info_nce_logits(a: torch.Tensor, b: torch.Tensor, temperature: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Similarity logits of this rank's ``a`` rows (queries) against every ``b`` row of the global batch.

    Both sides are L2-normalised (in float32), so the logits are cosine similarities divided by
    ``temperature``. Outside distributed (or with world size 1) the global batch is the local batch.

    Args:
        a: ``[B_local, d]`` queries.
        b: ``[B_local, d]`` keys; row ``i`` is the positive of ``a``'s row ``i``.
        temperature: ``τ > 0``.

    Returns:
        ``(logits [B_local, B_global], targets [B_local])``: ``targets[i] = rank_offset + i``, the column
        of ``a[i]``'s positive in the gathered ``b`` (``rank_offset`` = rows held by lower ranks,
        ``rank · B_local`` when every rank holds ``B_local`` rows).
    """
    _check_pair(a, b)
    _check_temperature(temperature)
    queries = F.normalize(a.float(), dim=-1)  # [B_local, d]
    keys_global, offset = _gather_rows(F.normalize(b.float(), dim=-1))  # [B_global, d]
    logits = queries @ keys_global.T / temperature  # [B_local, B_global]
    targets = torch.arange(a.shape[0], device=a.device) + offset  # [B_local]
    return logits, targets


def symmetric_info_nce(a: torch.Tensor, b: torch.Tensor, temperature: float) -> torch.Tensor:
    """Symmetric InfoNCE: the mean of the a→b and b→a cross-entropies, positives on the diagonal.

    Single process: with ``â = a/‖a‖``, ``b̂ = b/‖b‖`` and ``S = â b̂ᵀ / τ`` (``[B, B]``), the loss is
    ``½ (CE(S, arange(B)) + CE(Sᵀ, arange(B)))`` with token-mean cross-entropy.

    Distributed (process group initialised, world size ``W > 1``): both sides are all-gathered with
    gradients (``torch.distributed.nn.functional.all_gather``), so the negatives are the global batch of
    ``N`` pairs. Each rank uses its local rows as queries against the global batch in both directions
    and returns ``l_r = W / N · ½ Σ_{i local} (CE_i(a→b) + CE_i(b→a))`` — with equal local batches
    ``B``, simply the mean over its ``B`` rows. Hence:

    * ``Σ_r l_r = W · L`` where ``L`` is the single-process loss over the global batch, i.e. the mean of
      the per-rank values is ``L``;
    * because the all-gather's backward sums the gradients that every rank's loss sends to each rank's
      rows, averaging gradients across ranks (what DDP does) yields exactly the single-process gradient
      ``∇L``. Ranks may hold different (even zero) numbers of rows; ``N`` must be at least 1.

    Every rank must call this function the same number of times (it runs collectives).

    Args:
        a: ``[B_local, d]``.
        b: ``[B_local, d]``; row ``i`` pairs with ``a``'s row ``i``.
        temperature: ``τ > 0``; lower values sharpen the softmax.

    Returns:
        A 0-dim float32 tensor.

    Raises:
        ValueError: on mismatched shapes, a non-positive temperature, or an empty global batch.
    """
    logits_ab, targets = info_nce_logits(a, b, temperature)  # [B_local, N], [B_local]
    logits_ba, _ = info_nce_logits(b, a, temperature)  # [B_local, N]
    num_global = logits_ab.shape[1]
    if num_global == 0:
        raise ValueError("symmetric_info_nce needs at least one (a, b) pair in the (global) batch")
    summed = F.cross_entropy(logits_ab, targets, reduction="sum") + F.cross_entropy(
        logits_ba, targets, reduction="sum"
    )  # []
    # Scaling by W / N (not 1 / B_local) is what makes DDP's gradient average equal the
    # single-process gradient even when ranks hold different numbers of rows.
    return 0.5 * summed * (_world_size() / num_global)


class SemanticAlignment(nn.Module):
    """The alignment loss: InfoNCE(latents, reasoning text) + InfoNCE(latents, vision).

    Three :class:`HybridMeanMaxPool` heads map the latents, the hidden states of the explicit reasoning
    text and the visual features into one shared space of size ``shared_dim``.

    Args:
        hidden_size: ``D``, the feature size of the latents and the text hidden states.
        shared_dim: size of the shared embedding space (paper: 256).
        visual_dim: feature size of the visual tokens; ``None`` means ``hidden_size`` (projected visual
            features, which live in the LLM's embedding space).
    """

    def __init__(self, hidden_size: int, shared_dim: int = 256, visual_dim: int | None = None) -> None:
        super().__init__()
        visual_dim = hidden_size if visual_dim is None else visual_dim
        # HybridMeanMaxPool validates the sizes and names the bad one.
        self.latent_pool = HybridMeanMaxPool(hidden_size, shared_dim)
        self.text_pool = HybridMeanMaxPool(hidden_size, shared_dim)
        self.visual_pool = HybridMeanMaxPool(visual_dim, shared_dim)

    def forward(
        self,
        latents: torch.Tensor,
        latent_mask: torch.Tensor,
        text_hidden: torch.Tensor,
        text_mask: torch.Tensor,
        visual: torch.Tensor,
        visual_mask: torch.Tensor | None = None,
        temperature: float = 0.07,
    ) -> torch.Tensor:
        """Alignment loss of one batch.

        Args:
            latents: ``[B, M, D]`` all latent tokens of a sample (``M = T·k``).
            latent_mask: ``[B, M]``; every sample needs at least one valid latent.
            text_hidden: ``[B, L, D]`` LLM hidden states over the explicit reasoning text.
            text_mask: ``[B, L]``; a sample whose row is all zero has no reasoning text and is left out
                of the text term. If fewer than 2 samples with text remain (in the global batch under
                distributed), the text term is skipped: one pair has no negative to contrast with.
            visual: ``[B, N, Dv]`` visual features.
            visual_mask: ``[B, N]`` or ``None`` (all visual tokens valid).
            temperature: InfoNCE temperature ``τ``.

        Returns:
            A 0-dim float32 tensor ``InfoNCE(z, text) + InfoNCE(z, vision)``.
        """
        if visual_mask is None:
            visual_mask = torch.ones(visual.shape[:2], dtype=torch.bool, device=visual.device)  # [B, N]
        z = self.latent_pool(latents, latent_mask)  # [B, S]
        v = self.visual_pool(visual, visual_mask)  # [B, S]
        loss = symmetric_info_nce(z, v, temperature)

        has_text = text_mask.bool().any(dim=-1)  # [B]
        if _global_count(int(has_text.sum().item()), text_mask.device) >= 2:
            t = self.text_pool(text_hidden[has_text], text_mask[has_text])  # [B_text, S]
            loss = loss + symmetric_info_nce(z[has_text], t, temperature)
        else:
            # Keep text_pool in the graph with zero gradient: DDP without find_unused_parameters
            # fails on parameters that received no gradient in a step.
            loss = loss + 0.0 * sum(p.sum() for p in self.text_pool.parameters())
        return loss
