"""Reconstruction from latents: the training target, PSNR, determinism and the crop | own | shuffled grid."""

from __future__ import annotations

import json
import math

import pytest
import torch

from lare.analysis.reconstruct import (
    CELL_HEIGHT,
    CELL_WIDTH,
    psnr,
    reconstruct_from_latents,
    write_reconstruction,
)
from lare.analysis.samples import model_inputs
from tests.analysis.pngs import assert_png


def test_psnr():
    assert psnr(4.0) == pytest.approx(0.0)  # range² / MSE = 1
    assert psnr(0.04) == pytest.approx(20.0)
    assert psnr(0.0) == math.inf


def test_reconstruct_and_write(tiny_model, tiny_processor, samples, tmp_path):
    chosen = samples[:3]
    report = reconstruct_from_latents(tiny_model, tiny_processor, chosen, batch_size=2, sampling_steps=2, seed=1,
                                      latent_steps=2)
    size = tiny_model.semantic_losses["image"].config.sample_size
    assert report.crops.shape == report.reconstructions.shape == report.shuffled.shape == (3, 3, size, size)
    assert report.target == "pixels"
    for i, entry in enumerate(report.entries):
        expected = (report.reconstructions[i] - report.crops[i]).pow(2).mean().item()
        assert entry.mse == pytest.approx(expected, rel=1e-5)
        assert entry.psnr == pytest.approx(psnr(expected), rel=1e-5)
    again = reconstruct_from_latents(tiny_model, tiny_processor, chosen, batch_size=2, sampling_steps=2, seed=1,
                                     latent_steps=2)
    torch.testing.assert_close(again.reconstructions, report.reconstructions)  # seeded noise
    # The shuffled baseline conditions on other samples' latents, so its images differ.
    assert not torch.allclose(report.shuffled, report.reconstructions)
    paths = write_reconstruction(report, tmp_path)
    assert_png(paths["png"], (round(3 * CELL_WIDTH * 100), round(3 * CELL_HEIGHT * 100)))
    saved = json.loads(paths["json"].read_text())
    assert saved["summary"]["mse"] == pytest.approx(sum(e.mse for e in report.entries) / 3)
    assert "shuffled" in paths["markdown"].read_text()


def test_shuffled_baseline_needs_two_samples(tiny_model, tiny_processor, samples):
    with pytest.raises(ValueError, match="at least 2 samples"):
        reconstruct_from_latents(tiny_model, tiny_processor, samples[:1], sampling_steps=1)
