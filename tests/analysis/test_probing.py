"""Probing: pair planning, the two probes on planted features (separable → ≥ 95 %, random → 45–55 %) and the
model path with and without the Extractor."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from lare.analysis.probing import (
    PAIR_KINDS,
    _window_mask,
    image_key,
    plan_probe_pairs,
    probe_extractor_ablation,
    question_key,
    run_probe,
    write_probe,
)


def _planted_records(seed: int = 0, n_images: int = 200, n_questions: int = 40, n_records: int = 600):
    """Records as (image, question) ids: many share an image, many share a question."""
    rng = np.random.default_rng(seed)
    pairs = list(dict.fromkeys((int(rng.integers(n_images)), int(rng.integers(n_questions)))
                               for _ in range(n_records)))
    image = np.array([a for a, _ in pairs])
    question = np.array([b for _, b in pairs])
    return image, question


@pytest.fixture(scope="module")
def planted():
    image, question = _planted_records()
    plan = plan_probe_pairs([f"i{a}" for a in image], [f"q{b}" for b in question], n_pairs=1000, n_positive=500)
    return image, question, plan


def test_plan_follows_the_protocol(planted):
    image, question, plan = planted
    assert plan.counts() == {"positive": 500, "same_image": 167, "same_question": 167, "random": 166}
    positive = plan.kind == "positive"
    assert len(set(plan.latent[positive].tolist())) == 500  # distinct records
    assert (plan.image_source[positive] == plan.latent[positive]).all()
    assert (plan.label == positive).all()
    same_image = plan.kind == "same_image"  # anchor: this image, another question
    assert (image[plan.image_source[same_image]] == image[plan.latent[same_image]]).all()
    assert (question[plan.question_source[same_image]] != question[plan.latent[same_image]]).all()
    same_question = plan.kind == "same_question"  # anchor: another image, this question
    assert (question[plan.question_source[same_question]] == question[plan.latent[same_question]]).all()
    assert (image[plan.image_source[same_question]] != image[plan.latent[same_question]]).all()
    assert (plan.partner[~positive] != plan.latent[~positive]).all()
    again = plan_probe_pairs([f"i{a}" for a in image], [f"q{b}" for b in question], n_pairs=1000, n_positive=500)
    assert (again.latent == plan.latent).all() and (again.partner == plan.partner).all()  # seeded


def test_probes_separate_planted_matches(planted):
    """Latent = image part + question part; anchor instance likewise: positives match in both parts, the hard
    negatives in one, random negatives in none."""
    image, question, plan = planted
    rng = np.random.default_rng(1)
    u, w = rng.standard_normal((200, 64)), rng.standard_normal((40, 64))
    noise = lambda: 0.3 * rng.standard_normal((len(plan.label), 64))  # noqa: E731
    latent = u[image[plan.latent]] + w[question[plan.latent]] + noise()
    anchor = u[image[plan.image_source]] + w[question[plan.question_source]] + noise()
    scores = run_probe(latent, anchor, plan.label, plan.kind, seed=0)
    assert (scores.n_train, scores.n_test) == (700, 300)
    assert scores.svm_accuracy >= 0.95 and scores.mlp_accuracy >= 0.95
    assert set(scores.svm_per_kind) == set(PAIR_KINDS)
    assert min(scores.svm_per_kind.values()) >= 0.9  # the hard negatives too


def test_probes_are_at_chance_on_random_features(planted):
    _, _, plan = planted
    rng = np.random.default_rng(2)
    scores = run_probe(rng.standard_normal((1000, 64)), rng.standard_normal((1000, 64)), plan.label, plan.kind,
                       seed=0)
    assert 0.45 <= scores.svm_accuracy <= 0.55
    assert 0.45 <= scores.mlp_accuracy <= 0.55


def test_window_mask():
    windows = torch.tensor([[[0, 0, 2, 2], [1, 1, 3, 3], [-1, -1, -1, -1]]])  # [1, T=3, 4]
    mask = _window_mask(windows, torch.tensor([[True, True, False]]), side=4).view(4, 4)
    expected = torch.zeros(4, 4, dtype=torch.bool)
    expected[0:2, 0:2] = True
    expected[1:3, 1:3] = True
    assert torch.equal(mask, expected)


def test_keys(samples):
    assert question_key("<image>\nWhat  is\nit?") == "what is it?"
    assert image_key(samples[0].image) == image_key(samples[0].image.copy())
    assert image_key(samples[0].image) != image_key(samples[1].image)


def test_probe_with_and_without_the_extractor(tiny_model, tiny_processor, samples, tmp_path):
    report = probe_extractor_ablation(tiny_model, tiny_processor, samples, batch_size=12, seed=0)
    assert tiny_model.config.refocus == "extractor"  # restored after the feedback row
    assert [probe.label for probe in report.models] == ["with Extractor", "w/o Extractor (same weights, feedback)"]
    for probe in report.models:
        assert probe.pair_counts == {"positive": 12, "same_image": 4, "same_question": 4, "random": 4}
        for scores in (probe.vision, probe.text):
            assert 0.0 <= scores.svm_accuracy <= 1.0 and 0.0 <= scores.mlp_accuracy <= 1.0
            assert scores.n_train + scores.n_test == 24
    paths = write_probe(report, tmp_path)
    saved = json.loads(paths["json"].read_text())
    assert saved["models"][0]["vision"]["svm_accuracy"] == report.models[0].vision.svm_accuracy
    assert paths["markdown"].read_text().count("| SVM |") == 2
