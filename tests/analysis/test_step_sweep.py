"""Step and halting sweeps: the metrics from planted answers, the halting rules on a real tiny model, the plot."""

from __future__ import annotations

import json

import pytest
import torch

import lare.analysis.step_sweep as step_sweep
from lare.analysis.refocus_generation import GeneratedAnswer
from lare.analysis.step_sweep import halting_rule, sweep_latent_steps, write_step_sweep
from tests.analysis.pngs import assert_png


def test_metrics_from_planted_answers(monkeypatch, tiny_model, samples):
    """With T correct answers at T = 1, 2 (tokens 10 and 20 each) the metrics are known exactly."""
    def planted(model, processor, chosen, batch_size, max_new_tokens, latent_steps):
        return [GeneratedAnswer(text="", n_tokens=10 * (i + 1), steps_taken=latent_steps, saliency=None,
                                windows=None, step_mask=None, correct=i < latent_steps)
                for i in range(len(chosen))]

    monkeypatch.setattr(step_sweep, "generate_with_refocus", planted)
    report = sweep_latent_steps(tiny_model, None, samples[:4], steps=(0, 1, 2), halting_rules=())
    assert [p.accuracy for p in report.steps] == [0.0, 0.25, 0.5]
    assert [p.tokens_correct for p in report.steps] == [None, 10.0, 15.0]
    assert [p.mean_steps_taken for p in report.steps] == [0.0, 1.0, 2.0]


def test_halting_rules_on_a_tiny_model(tiny_model, tiny_processor, samples, tmp_path):
    before = (tiny_model.config.halting, tiny_model.config.halting_threshold)
    # A threshold no latent change reaches halts every sample at the first check, after step 2.
    report = sweep_latent_steps(tiny_model, tiny_processor, samples[:3], steps=(0, 1), halting_rules=("none", "l2"),
                                halting_steps=3, halting_threshold=1e9, batch_size=3, max_new_tokens=2)
    assert (tiny_model.config.halting, tiny_model.config.halting_threshold) == before  # restored
    assert [p.mean_steps_taken for p in report.steps] == [0.0, 1.0]
    assert [(p.halting, p.mean_steps_taken) for p in report.halting] == [("none", 3.0), ("l2", 2.0)]
    assert report.halting[1].halting_threshold == 1e9
    for point in report.steps + report.halting:
        assert 0.0 <= point.accuracy <= 1.0 and point.n == 3
    paths = write_step_sweep(report, tmp_path)
    assert_png(paths["png"], (640, 400))
    assert json.loads(paths["json"].read_text())["halting_steps"] == 3
    assert "Table 4" in paths["markdown"].read_text()


def test_halting_rule_restores_the_config_on_error(tiny_model):
    with pytest.raises(RuntimeError), halting_rule(tiny_model, "cosine", 0.5):
        assert tiny_model.config.halting == "cosine"
        raise RuntimeError
    assert tiny_model.config.halting == "none"
    assert torch.is_tensor(torch.zeros(1))
