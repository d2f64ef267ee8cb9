"""The runner: batched generation into a resumable predictions file, and the synthetic exports end to end."""

import json

import pytest
import torch

from lare.cli import main
from lare.data.synthetic import generate_synthetic
from lare.evaluation.benchmarks import BENCHMARK_NAMES, get_benchmark
from lare.evaluation.methods import get_method
from lare.evaluation.predictions import read_predictions
from lare.evaluation.generation import count_generated_tokens
from lare.evaluation.runner import run_benchmark


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    return generate_synthetic(tmp_path_factory.mktemp("synthetic"), n_train=0, n_test=30, seed=0)


def test_count_generated_tokens():
    assert count_generated_tokens(torch.tensor([5, 6, 2, 0, 0]), [2]) == 3  # up to and including eos
    assert count_generated_tokens(torch.tensor([5, 6, 7]), [2]) == 3  # no eos: all of them
    assert count_generated_tokens(torch.tensor([2, 9, 2]), [2, 9]) == 1


def test_method_prompts(synthetic):
    mmstar = get_benchmark("mmstar")
    item = mmstar.load(synthetic.exports["mmstar"].files)[0]
    assert get_method("direct").prompt(mmstar, item) == (
        item.question + "\nAnswer with the option's letter from the given choices directly")
    assert get_method("lare").prompt(mmstar, item) == get_method("direct").prompt(mmstar, item)
    assert "Think step by step" in get_method("cot").prompt(mmstar, item)
    pope = get_benchmark("pope")
    question = pope.load(synthetic.exports["pope"].files)[0]
    assert get_method("cot").prompt(pope, question).endswith("Think step by step, then answer yes or no.")
    assert get_method("lare").latent_steps is None and get_method("cot").latent_steps == 0


class Interrupted(RuntimeError):
    pass


def test_interrupted_run_resumes_with_each_id_once(tiny_model, tiny_processor, synthetic, tmp_path, monkeypatch):
    pope = get_benchmark("pope")
    items = pope.load(synthetic.exports["pope"].files, synthetic.exports["pope"].images)
    out = tmp_path / "pope.jsonl"
    real_generate = tiny_model.generate
    calls = {"n": 0}

    def flaky_generate(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise Interrupted
        return real_generate(*args, **kwargs)

    monkeypatch.setattr(tiny_model, "generate", flaky_generate)
    with pytest.raises(Interrupted):
        run_benchmark(tiny_model, tiny_processor, items, "lare", out, batch_size=2, max_new_tokens=4,
                      show_progress=False)
    assert len(read_predictions(out)) == 4  # two batches made it to disk
    with out.open("a") as handle:  # and the crash cut a third line in half
        handle.write('{"id": 9, "split": "ran')
    monkeypatch.setattr(tiny_model, "generate", real_generate)
    run_benchmark(tiny_model, tiny_processor, items, "lare", out, batch_size=2, max_new_tokens=4, show_progress=False)
    run_benchmark(tiny_model, tiny_processor, items, "lare", out, batch_size=2, max_new_tokens=4, show_progress=False)
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    keys = [(line.get("split"), line["id"]) for line in lines]
    assert sorted(keys) == sorted((item.split, item.id) for item in items)  # every id exactly once
    assert all(isinstance(line["tokens"], int) and 1 <= line["tokens"] <= 4 for line in lines)
    assert all(line["latency_s"] >= 0 for line in lines)


def test_batching_does_not_change_answers(tiny_model, tiny_processor, synthetic, tmp_path):
    items = get_benchmark("mmvp").load(synthetic.exports["mmvp"].files, synthetic.exports["mmvp"].images)[:4]
    one = run_benchmark(tiny_model, tiny_processor, items, "direct", tmp_path / "b1.jsonl", batch_size=1,
                        max_new_tokens=5, show_progress=False)
    four = run_benchmark(tiny_model, tiny_processor, items, "direct", tmp_path / "b4.jsonl", batch_size=4,
                         max_new_tokens=5, show_progress=False)
    strip = lambda path: {k: (p.prediction, p.tokens) for k, p in read_predictions(path).items()}  # noqa: E731
    assert strip(one) == strip(four)


def test_shuffle_ablation_with_a_lone_last_question(tiny_model, tiny_processor, synthetic, tmp_path):
    items = get_benchmark("mmstar").load(synthetic.exports["mmstar"].files)[:3]
    out = run_benchmark(tiny_model, tiny_processor, items, "lare", tmp_path / "s.jsonl", batch_size=2,
                        max_new_tokens=3, latent_ablation="shuffle", show_progress=False)
    assert len(read_predictions(out)) == 3
    with pytest.raises(ValueError, match="needs latents"):
        run_benchmark(tiny_model, tiny_processor, items, "cot", tmp_path / "c.jsonl", latent_ablation="zero")


def test_synthetic_exports_end_to_end(tiny_model, tiny_processor, synthetic, tmp_path, capsys):
    model_dir = tmp_path / "model"
    tiny_model.save_pretrained(model_dir)
    tiny_processor.save_pretrained(model_dir)
    for name in BENCHMARK_NAMES:
        export = synthetic.exports[name]
        data = [arg for path in export.files for arg in ("--data", str(path))]
        images = ["--images", str(export.images)] if export.images else []
        preds = tmp_path / f"{name}.jsonl"
        assert main(["eval", "run", "--model", str(model_dir), "--benchmark", name, *data, *images,
                     "--method", "lare", "--out", str(preds), "--batch-size", "4", "--max-new-tokens", "4",
                     "--device", "cpu"]) == 0
        n_items = len(get_benchmark(name).load(export.files))
        assert len(read_predictions(preds)) == n_items
        capsys.readouterr()
        assert main(["eval", "score", "--benchmark", name, *data, "--predictions", str(preds)]) == 0
        metrics = json.loads(capsys.readouterr().out)
        assert metrics["benchmark"] == name and "by_category" in metrics and "tokens_correct" in metrics
        headline = metrics["mean"]["accuracy"] if name == "pope" else (
            metrics["circular_accuracy"] if name == "mmbench" else metrics["accuracy"])
        assert 0.0 <= headline <= 1.0
