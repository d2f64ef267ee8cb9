"""Decontamination: planted exact question+answer duplicates and near-duplicate images (resized, re-encoded) are
removed; distinct images and near-miss questions are kept. The vision tower is a tiny random CLIP tower."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import CLIPImageProcessorPil, CLIPVisionConfig, CLIPVisionModel

from lare.analysis.decontaminate import (
    benchmark_items_from_records,
    decontaminate,
    embed_images,
    normalise_text,
    qa_keys,
    write_decontamination,
)
from lare.cli import main
from lare.data.images import open_image
from lare.data.records import load_records
from lare.evaluation.benchmarks import get_benchmark

THRESHOLD = 0.97


def colour_field(seed: int) -> Image.Image:
    """A smooth random colour field (8×8 colours, bicubic to 64 px): distinct seeds give distinct images."""
    small = np.random.default_rng(seed).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    return Image.fromarray(small).resize((64, 64), Image.BICUBIC)


def reencode(image: Image.Image, size: int, fmt: str, quality: int = 85) -> bytes:
    """The image resized to `size` px and encoded as `fmt`: the file bytes of a near-duplicate copy."""
    buffer = io.BytesIO()
    resized = image.resize((size, size), Image.BICUBIC)
    resized.save(buffer, format=fmt, **({"quality": quality} if fmt == "JPEG" else {}))
    return buffer.getvalue()


@pytest.fixture(scope="module")
def tower(tmp_path_factory):
    """A random CLIP tower, saved like a pretrained one. A larger init scale than the default keeps distinct
    images apart (at the default scale a random tower maps every image to nearly the same vector)."""
    torch.manual_seed(0)
    config = CLIPVisionConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                              image_size=64, patch_size=8, initializer_factor=5.0)
    model = CLIPVisionModel(config).eval()
    processor = CLIPImageProcessorPil(size={"shortest_edge": 64}, crop_size={"height": 64, "width": 64})
    path = tmp_path_factory.mktemp("clip")
    model.save_pretrained(path)
    processor.save_pretrained(path)
    return model, processor, path


def _record(record_id: str, image: str, question: str, answer: str, options: list[str] | None = None) -> dict:
    record = {"id": record_id, "image": image,
              "conversations": [{"from": "human", "value": question}, {"from": "gpt", "value": f"It is {answer}."}],
              "answer": answer}
    if options:
        record["options"] = options
    return record


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """A benchmark of 5 LLaVA records and a training set with planted duplicates among distinct records."""
    root = tmp_path_factory.mktemp("corpus")
    (root / "images").mkdir()

    def save(name: str, image: Image.Image | bytes) -> str:
        if isinstance(image, bytes):  # already encoded: written as is, not re-encoded
            (root / "images" / name).write_bytes(image)
        else:
            image.save(root / "images" / name)
        return name

    bench_images = [colour_field(100 + i) for i in range(5)]
    bench = [_record(f"b{i}", save(f"b{i}.png", image), f"<image>\nQuestion number {i}?", "yes")
             for i, image in enumerate(bench_images)]
    bench.append(_record("b5", save("b5.png", colour_field(105)), "<image>\nWhat colour is the square?\nA. red\n"
                         "B. blue", "B", ["red", "blue"]))
    train = [
        # Exact duplicate: the same question and answer, written differently, with an unrelated image.
        _record("exact", save("t_exact.png", colour_field(200)), "<image>\n  what colour is the SQUARE ?\nA. red\n"
                "B. blue", "B", ["red", "blue"]),
        # Near miss: same question, other answer; and same answer text, other question.
        _record("other_answer", save("t_other.png", colour_field(201)), "<image>\nWhat colour is the square?\n"
                "A. red\nB. blue", "A", ["red", "blue"]),
        _record("other_question", save("t_oq.png", colour_field(202)), "<image>\nQuestion number 99?", "yes"),
        # Near-duplicate images of benchmark images.
        _record("upscaled_jpeg", save("t_up.jpg", reencode(bench_images[0], 96, "JPEG")), "<image>\nA?", "a"),
        _record("downscaled_png", save("t_down.png", reencode(bench_images[1], 48, "PNG")), "<image>\nB?", "b"),
        _record("jpeg_q90", save("t_q90.jpg", reencode(bench_images[2], 64, "JPEG", quality=90)), "<image>\nC?", "c"),
    ]
    train += [_record(f"distinct{i}", save(f"t_d{i}.png", colour_field(300 + i)), f"<image>\nDistinct {i}?", "no")
              for i in range(8)]
    for name, records in (("bench.json", bench), ("train.json", train)):
        (root / name).write_text(json.dumps(records), encoding="utf-8")
    return root


EXPECTED = {"exact": "exact_qa", "upscaled_jpeg": "near_duplicate_image", "downscaled_png": "near_duplicate_image",
            "jpeg_q90": "near_duplicate_image"}


def test_normalisation_and_keys():
    assert normalise_text("  <image>\nWhat   colour?! ") == "what colour"
    train = qa_keys("<image>\nWhat colour is the square?\nA. red\nB. blue", "B", ["red", "blue"])
    loader = qa_keys("What colour is the square?", "B", ["red", "blue"])  # loaders keep the options apart
    shuffled = qa_keys("What colour is the square?", "B", ["blue", "red"])  # same letter, other answer
    assert train & loader
    assert not train & shuffled


def test_decontaminate_finds_planted_duplicates_only(corpus, tower):
    model, processor, _ = tower
    train, _ = load_records(corpus / "train.json", corpus / "images")
    bench_records, _ = load_records(corpus / "bench.json", corpus / "images")
    items = benchmark_items_from_records(bench_records, corpus / "images", "bench")
    report = decontaminate(train, items, model, processor, THRESHOLD, corpus / "images", batch_size=4,
                           pooling="mean")
    assert {r.id: r.reason for r in report.removed} == EXPECTED
    matched = {r.id: r.benchmark_id for r in report.removed}
    assert matched == {"exact": "b5", "upscaled_jpeg": "b0", "downscaled_png": "b1", "jpeg_q90": "b2"}
    assert report.counts == {"exact_qa": 1, "near_duplicate_image": 3}
    assert report.n_kept == len(train) - 4 and "other_answer" in report.kept_ids

    # Both sides of the threshold, with a margin: copies well above it, every distinct image well below.
    bench_embeds = embed_images([open_image(r.image, corpus / "images") for r in bench_records],
                                model, processor, pooling="mean")
    kept = [r for r in train if r.id in report.kept_ids]
    kept_embeds = embed_images([open_image(r.image, corpus / "images") for r in kept], model, processor,
                               pooling="mean")
    assert float((kept_embeds @ bench_embeds.T).max()) < THRESHOLD - 0.01
    assert min(r.similarity for r in report.removed if r.similarity is not None) > THRESHOLD + 0.01


def test_write_keeps_the_records_verbatim(corpus, tower, tmp_path):
    model, processor, _ = tower
    train, _ = load_records(corpus / "train.json", corpus / "images")
    bench_records, _ = load_records(corpus / "bench.json", corpus / "images")
    report = decontaminate(train, benchmark_items_from_records(bench_records, corpus / "images", "bench"), model,
                           processor, THRESHOLD, corpus / "images", pooling="mean")
    paths = write_decontamination(report, train, tmp_path)
    kept = json.loads(paths["data"].read_text())
    original = {r["id"]: r for r in json.loads((corpus / "train.json").read_text())}
    assert [r["id"] for r in kept] == report.kept_ids
    assert all(record == original[record["id"]] for record in kept)
    saved = json.loads(paths["json"].read_text())
    assert saved["counts"] == report.counts and saved["n_kept"] == report.n_kept
    assert "near_duplicate_image" in paths["markdown"].read_text()


def test_cli_with_a_benchmark_loader(corpus, tower, synthetic, tmp_path):
    """`lare data decontaminate` with an official-format benchmark (MMBench TSV) and a LLaVA file."""
    _, _, tower_dir = tower
    mmbench_tsv = synthetic.exports["mmbench"].files[0]
    item = get_benchmark("mmbench").load([mmbench_tsv])[0]
    options = list(item.options.values())
    question = "<image>\n" + item.question + "\n" + "\n".join(f"{k}. {v}" for k, v in item.options.items())
    train = json.loads((corpus / "train.json").read_text())
    train.append(_record("mmbench_copy", "t_d0.png", question, item.answer, options))
    train_path = corpus / "train_cli.json"
    train_path.write_text(json.dumps(train), encoding="utf-8")

    assert main([
        "data", "decontaminate", "--train", str(train_path), "--against", f"mmbench={mmbench_tsv}",
        f"bench={corpus / 'bench.json'}", "--threshold", str(THRESHOLD), "--vision-model", str(tower_dir),
        "--pooling", "mean", "--out", str(tmp_path), "--device", "cpu",
    ]) == 0
    saved = json.loads((tmp_path / "decontamination.json").read_text())
    reasons = {r["id"]: (r["reason"], r["benchmark"]) for r in saved["removed"]}
    assert reasons["mmbench_copy"] == ("exact_qa", "mmbench")
    assert {k: v[0] for k, v in reasons.items() if k != "mmbench_copy"} == EXPECTED
    kept = json.loads((tmp_path / "train_cli.decontaminated.json").read_text())
    assert len(kept) == len(train) - 5


def test_unreadable_benchmark_image_is_reported(corpus, tower):
    model, processor, _ = tower
    train, _ = load_records(corpus / "train.json", corpus / "images")
    bench_records, _ = load_records(corpus / "bench.json", corpus / "images")
    items = benchmark_items_from_records(bench_records, corpus / "images", "bench")
    missing = benchmark_items_from_records(bench_records[:1], corpus / "nowhere", "broken")
    report = decontaminate(train, items + missing, model, processor, THRESHOLD, corpus / "images", pooling="mean")
    assert report.unreadable_benchmark_images == ["broken:b0"]
    assert {r.id: r.reason for r in report.removed} == EXPECTED  # the readable benchmark images still count
