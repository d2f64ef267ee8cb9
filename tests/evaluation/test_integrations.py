"""The lmms-eval and VLMEvalKit adapters, against stand-ins of the harness interfaces (see harness_standins)."""

import importlib

import pytest

from lare.evaluation.generation import generate_answers
from tests.conftest import random_image
from tests.evaluation.harness_standins import install_lmms_eval, install_vlmeval


@pytest.fixture
def model_dir(tiny_model, tiny_processor, tmp_path):
    tiny_model.save_pretrained(tmp_path / "model")
    tiny_processor.save_pretrained(tmp_path / "model")
    return tmp_path / "model"


def test_lmms_eval_plugin(monkeypatch, model_dir, tiny_model, tiny_processor):
    harness = install_lmms_eval(monkeypatch)
    plugin = importlib.import_module("lare.integrations.lmms_eval")
    [(model_id, cls)] = harness.load_entry_point_payload(plugin.lmms_eval_manifest)  # as the registry does
    assert (model_id, cls) == ("lare", plugin.LaReLMMS)

    lm = cls(pretrained=str(model_dir), method="lare", batch_size="2", device="cpu")
    images = [random_image(3), random_image(4), random_image(5)]
    lm.task_dict = {"mmstar": {"val": [{"image": image} for image in images]}}
    to_visual = lambda doc: [doc["image"]]  # noqa: E731
    questions = ["What colour is the circle?", "Which shape is left?", "What colour is the square?"]
    requests = [harness.Instance("generate_until", (q, {"max_new_tokens": 6, "until": ["\n\n"]}, to_visual, i,
                                                    "mmstar", "val"), idx=0,
                                 metadata={"task": "mmstar", "doc_id": i, "repeats": 1})
                for i, q in enumerate(questions)]
    results = lm.generate_until(requests)
    assert all(isinstance(result, harness.GenerationResult) for result in results)
    expected = generate_answers(tiny_model, tiny_processor, images, questions, max_new_tokens=6)
    assert [(r.text, r.token_counts.output_tokens) for r in results] == [(t.split("\n\n")[0], n) for t, n in expected]
    with pytest.raises(NotImplementedError):
        lm.loglikelihood(requests)


def test_vlmevalkit_model(monkeypatch, model_dir, tiny_model, tiny_processor, tmp_path):
    harness = install_vlmeval(monkeypatch)
    adapter = importlib.import_module("lare.integrations.vlmevalkit")
    model = adapter.LaReVLMEvalKit(model_path=str(model_dir), method="direct", max_new_tokens=5, device="cpu")
    assert isinstance(model, harness.BaseModel)
    image = random_image(7)
    image.save(tmp_path / "q.png")
    answer = model.generate([{"type": "image", "value": str(tmp_path / "q.png")},
                             {"type": "text", "value": "What colour is the circle?"}], dataset="MMStar")
    [(text, n_tokens)] = generate_answers(tiny_model, tiny_processor, [image], ["What colour is the circle?"],
                                          max_new_tokens=5, latent_steps=0)
    assert (answer, model.last_token_count) == (text, n_tokens)
    with pytest.raises(ValueError, match="shuffle"):
        adapter.LaReVLMEvalKit(model_path=str(model_dir), latent_ablation="shuffle")
