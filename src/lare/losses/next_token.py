"""Next-token prediction (NTP) loss: cross-entropy on already-aligned logits and labels."""

from __future__ import annotations

import torch
import torch.nn.functional as F

IGNORE_INDEX = -100


def next_token_loss(logits: torch.Tensor, labels: torch.Tensor, ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """Mean cross-entropy over the supervised tokens.

    **No shifting happens here.** ``logits[:, i]`` must already be the prediction for ``labels[:, i]``;
    the caller aligns them (for a causal LM: ``logits[:, :-1]`` with ``labels[:, 1:]``, or labels built
    shifted). Keeping the shift out of the loss lets the same function serve sequences whose
    prediction positions are not simply "the previous token" (e.g. the text after ``<eot>``).

    Args:
        logits: ``[B, L, V]`` unnormalised scores, any float dtype.
        labels: ``[B, L]`` integer targets; positions equal to ``ignore_index`` are not supervised.
        ignore_index: the label value that marks an unsupervised position (``-100``, as in transformers).

    Returns:
        A 0-dim float32 tensor: the sum of per-token cross-entropies divided by the number of supervised
        tokens in the batch (a token mean, not a mean of per-sample means).

        **A batch with no supervised token returns an exact 0 that is still connected to ``logits``'
        graph**, rather than raising. Such a batch is legitimate (truncation can cut every target of a
        small batch) and, under DDP, raising or skipping backward on one rank would leave the other ranks
        waiting in the gradient all-reduce forever; a graph-connected zero contributes zero gradient and
        keeps every rank in step.

    Raises:
        ValueError: if the shapes do not match ``[B, L, V]`` / ``[B, L]`` or ``labels`` is not integer.
    """
    if logits.dim() != 3:
        raise ValueError(f"logits must be [B, L, V], got shape {tuple(logits.shape)}")
    if labels.shape != logits.shape[:2]:
        raise ValueError(
            f"labels shape {tuple(labels.shape)} does not match logits' [B, L] = {tuple(logits.shape[:2])}; "
            "logits and labels must already be aligned (no shifting happens inside next_token_loss)"
        )
    if labels.dtype.is_floating_point or labels.dtype == torch.bool:
        raise ValueError(f"labels must be an integer tensor, got dtype {labels.dtype}")

    flat_logits = logits.reshape(-1, logits.shape[-1])  # [B*L, V]
    flat_labels = labels.reshape(-1)  # [B*L]
    supervised = flat_labels != ignore_index  # [B*L]
    num_supervised = supervised.sum()
    # float32 log-softmax: in fp16/bf16 the log-sum-exp over a large vocabulary loses precision.
    summed = F.cross_entropy(
        flat_logits.float(), flat_labels.long(), ignore_index=ignore_index, reduction="sum"
    )  # [] (0 when nothing is supervised, still on the graph)
    return summed / num_supervised.clamp(min=1)
