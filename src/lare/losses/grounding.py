"""Saliency grounding (an addition to the paper, off by default): steer each latent step's window onto the evidence.

The paper's windows come from a pretrained LLM's attention, which already looks at what the question names. A small
LLM trained from scratch (the demo's) attends almost uniformly from the latent positions, so the argmax window
rarely holds the evidence and the Extractor refocuses on the wrong cells. Where records carry evidence boxes, listed
in the order their reasoning visits them, step t of T is assigned box ⌊t·n/T⌋ of the sample's n boxes
(`evidence_per_step`), and the loss is the cross-entropy of "the saliency falls on that box": −log Σ_{its cells} s_t,
averaged over the steps that ran in samples with boxes. Optionally (`LaReConfig.evidence_windows_in_training`),
training also takes each step's window among those over its box (teacher-forced refocusing). Inference always
takes the plain argmax of the model's own saliency.
"""

from __future__ import annotations

import torch


def evidence_per_step(evidence_mask: torch.Tensor, steps: int) -> torch.Tensor:
    """evidence_mask [B, Nb, Nv] (per box; all-zero rows past a sample's boxes) → [B, T, Nv]: box ⌊t·n/T⌋ at t.

    Each of a sample's n boxes gets an equal share of the steps, in order; a sample without boxes gets all-zero rows.
    """
    n_boxes = evidence_mask.flatten(2).gt(0).any(dim=-1).sum(dim=-1)  # [B]
    step = torch.arange(steps, device=evidence_mask.device)[None]  # [1, T]
    index = torch.div(step * n_boxes[:, None], steps, rounding_mode="floor")  # [B, T]
    index = torch.minimum(index, (n_boxes - 1).clamp_min(0)[:, None])
    return evidence_mask.gather(1, index[..., None].expand(-1, -1, evidence_mask.shape[-1]))  # [B, T, Nv]


def saliency_grounding_loss(saliency: torch.Tensor, step_mask: torch.Tensor, step_evidence: torch.Tensor,
                            eps: float = 1e-6) -> torch.Tensor:
    """saliency [B, T, Nv] (each ran step sums to 1), step_mask [B, T] bool, step_evidence [B, T, Nv] → scalar.

    Steps with no evidence cells (samples without boxes) and steps that did not run (halted) are left out; with none
    left the loss is an exact zero that still depends on `saliency` (every DDP rank runs the same backward).
    """
    if saliency.shape != step_evidence.shape or saliency.shape[:2] != step_mask.shape:
        raise ValueError(f"saliency {tuple(saliency.shape)}, step_mask {tuple(step_mask.shape)} and step_evidence "
                         f"{tuple(step_evidence.shape)} must be [B, T, Nv], [B, T] and [B, T, Nv]")
    mass = (saliency.float() * step_evidence.float()).sum(dim=-1)  # [B, T]: the step's saliency on its box
    valid = step_mask.bool() & step_evidence.gt(0).any(dim=-1)  # [B, T]
    if not bool(valid.any()):
        return saliency.sum() * 0.0
    return -mass.clamp_min(eps).log()[valid].mean()
