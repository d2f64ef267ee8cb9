"""lare.losses.grounding: the per-step evidence assignment and the saliency grounding loss (hand-computed)."""

from __future__ import annotations

import math

import pytest
import torch

from lare.losses.grounding import evidence_per_step, saliency_grounding_loss


def test_each_box_gets_an_equal_share_of_the_steps_in_order():
    masks = torch.zeros(3, 2, 4)
    masks[0, 0, 0] = masks[0, 1, 3] = 1.0  # two boxes
    masks[1, 0, 2] = 1.0  # one box
    per_step = evidence_per_step(masks, 4)  # sample 2 has no boxes
    assert per_step.shape == (3, 4, 4)
    assert per_step[0].argmax(-1).tolist() == [0, 0, 3, 3]
    assert per_step[1].argmax(-1).tolist() == [2, 2, 2, 2]
    assert per_step[2].eq(0).all()
    assert evidence_per_step(masks, 3)[0].argmax(-1).tolist() == [0, 0, 3]  # ⌊t·2/3⌋ = 0, 0, 1


def test_loss_is_the_mean_negative_log_mass_on_each_steps_box():
    saliency = torch.tensor([[[0.5, 0.25, 0.25, 0.0], [0.1, 0.1, 0.4, 0.4]],
                             [[0.25, 0.25, 0.25, 0.25], [0.25, 0.25, 0.25, 0.25]]])  # [B=2, T=2, Nv=4]
    evidence = torch.tensor([[[1.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0]],
                             [[0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]]])  # sample 1 has no boxes
    steps = torch.ones(2, 2, dtype=torch.bool)
    expected = -(math.log(0.75) + math.log(0.4)) / 2
    assert saliency_grounding_loss(saliency, steps, evidence).item() == pytest.approx(expected, rel=1e-6)
    steps[0, 1] = False  # a step that did not run (halted) is left out
    assert saliency_grounding_loss(saliency, steps, evidence).item() == pytest.approx(-math.log(0.75), rel=1e-6)


def test_no_evidence_gives_a_zero_that_still_backpropagates():
    saliency = torch.full((2, 3, 4), 0.25, requires_grad=True)
    loss = saliency_grounding_loss(saliency, torch.ones(2, 3, dtype=torch.bool), torch.zeros(2, 3, 4))
    assert loss.item() == 0.0
    loss.backward()
    assert saliency.grad is not None and saliency.grad.eq(0).all()


def test_a_gradient_step_moves_saliency_onto_the_evidence():
    logits = torch.zeros(1, 1, 4, requires_grad=True)
    evidence = torch.tensor([[[0.0, 0.0, 1.0, 0.0]]])
    before = logits.softmax(-1)[0, 0, 2].item()
    saliency_grounding_loss(logits.softmax(-1), torch.ones(1, 1, dtype=torch.bool), evidence).backward()
    with torch.no_grad():
        logits -= 1.0 * logits.grad
    assert logits.softmax(-1)[0, 0, 2].item() > before


def test_shape_mismatch_raises():
    with pytest.raises(ValueError, match="must be"):
        saliency_grounding_loss(torch.rand(2, 3, 4), torch.ones(2, 3, dtype=torch.bool), torch.ones(2, 3, 5))
