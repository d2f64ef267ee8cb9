"""lare.analysis.latent_use: own vs another sample's latents, teacher-forced."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from lare.analysis.latent_use import latent_use_batches, latent_use_markdown, measure_latent_use
from lare.data.collate import LaReCollator
from lare.data.dataset import Sample
from tests.conftest import random_image

RATIONALES = ("Find the red object. It is in row 1, column 2. It is a small red circle. Its shape is circle.",
              "Look at row 3, column 4. The object there is a large blue square. Its colour is blue.")


def _sample(index: int, image: Image.Image) -> Sample:
    question = "<image>\nWhat shape is the red object?" if index == 0 else "<image>\nWhat colour is the object?"
    answer = ("circle", "blue")[index]
    return Sample(id=str(index), image=image, question=question, target=f"The answer is {answer}.",
                  rationale=RATIONALES[index], answer=answer)


def _batch(processor, model, samples):
    return LaReCollator(processor, target="lare", prefix_tokens=model.config.prefix_tokens)(samples)


def test_own_latents_give_the_training_forwards_ntp_and_prefix_losses(tiny_model, tiny_processor):
    batch = _batch(tiny_processor, tiny_model, [_sample(0, random_image(1)), _sample(1, random_image(2))])
    report = measure_latent_use(tiny_model, [batch])
    with torch.no_grad():
        losses = tiny_model(**batch).losses
    assert report.target_ce["own"] == pytest.approx(losses["ntp"], abs=1e-5)
    assert report.prefix_ce["own"] == pytest.approx(losses["text"], abs=1e-5)
    assert report.n_samples == 2
    assert report.n_prefix_tokens == int(batch["rationale_mask"][:, :tiny_model.config.prefix_tokens].sum())
    assert report.n_target_tokens == int((batch["labels"] != -100).sum())
    # Different samples: another sample's latents decode this sample's text differently.
    assert report.prefix_ce["shuffled"] != pytest.approx(report.prefix_ce["own"], abs=1e-4)
    assert report.target_ce["shuffled"] != pytest.approx(report.target_ce["own"], abs=1e-4)


def test_identical_samples_cost_the_same_with_each_others_latents(tiny_model, tiny_processor):
    image = random_image(3)
    batch = _batch(tiny_processor, tiny_model, [_sample(0, image), _sample(0, image)])
    report = measure_latent_use(tiny_model, [batch, batch])
    assert report.n_samples == 4
    assert report.prefix_ce["shuffled"] == pytest.approx(report.prefix_ce["own"], abs=1e-5)
    assert report.target_ce["shuffled"] == pytest.approx(report.target_ce["own"], abs=1e-5)
    table = latent_use_markdown(report)
    assert f"{report.prefix_ce['own']:.3f}" in table and f"{report.target_ce['own']:.3f}" in table


def test_a_single_sample_batch_or_a_batch_without_rationales_is_rejected(tiny_model, tiny_processor):
    batch = _batch(tiny_processor, tiny_model, [_sample(0, random_image(1))])
    with pytest.raises(ValueError, match="batch 0 holds 1 sample"):
        measure_latent_use(tiny_model, [batch])
    pair = _batch(tiny_processor, tiny_model, [_sample(0, random_image(1)), _sample(1, random_image(2))])
    del pair["rationale_ids"]
    with pytest.raises(ValueError, match="batch 0 lacks \\['rationale_ids'\\]"):
        measure_latent_use(tiny_model, [pair])


def test_batches_never_leave_a_single_sample_alone(tiny_model, tiny_processor):
    samples = [_sample(i % 2, random_image(i)) for i in range(5)]
    batches = list(latent_use_batches(samples, tiny_processor, tiny_model.config.prefix_tokens, batch_size=2))
    assert [batch["input_ids"].shape[0] for batch in batches] == [2, 3]
    assert all("rationale_ids" in batch for batch in batches)
    with pytest.raises(ValueError, match="batch_size must be >= 2, got 1"):
        next(latent_use_batches(samples, tiny_processor, 8, batch_size=1))
