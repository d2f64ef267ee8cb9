"""POPE: official split files (ids 1..N in each), the official yes/no rule, per split and mean."""

import json

import pytest

from lare.evaluation.benchmarks import pope
from lare.evaluation.benchmarks.format_error import BenchmarkFormatError
from lare.evaluation.scoring import score_predictions
from tests.evaluation.files import png_bytes, write_predictions

LABELS = ["yes", "yes", "no", "no"]
ANSWERS = {
    "random": ["Yes.", "No, there is not.", "There is no cat.", "Yes, there is."],  # y n n y
    "popular": ["yes", "yes", "no", "No"],  # all right
    "adversarial": ["NO", "Nope", "Not sure", "I do not think so"],  # y y y n: only lowercase "not"/"no", "No" count
}


@pytest.fixture
def files(tmp_path):
    (tmp_path / "val2014").mkdir()
    (tmp_path / "val2014" / "COCO_val2014_000000000001.jpg").write_bytes(png_bytes((1, 2, 3)))
    paths = []
    for split in ANSWERS:
        path = tmp_path / f"coco_pope_{split}.json"
        path.write_text("".join(
            json.dumps({"question_id": i + 1, "image": "COCO_val2014_000000000001.jpg",
                        "text": f"Is there a thing {i} in the image?", "label": label}) + "\n"
            for i, label in enumerate(LABELS)))
        paths.append(path)
    preds = write_predictions(tmp_path / "preds.jsonl", [
        {"id": i + 1, "split": split, "prediction": answer, "tokens": 3}
        for split, answers in ANSWERS.items() for i, answer in enumerate(answers)])
    return paths, preds, tmp_path / "val2014"


@pytest.mark.parametrize(
    ("prediction", "answer"),
    [("Yes.", "yes"), ("No, there is not.", "no"), ("No.", "no"), ("no", "no"), ("NO", "yes"), ("Nope", "yes"),
     ("There is not a dog.", "no"), ("Yes. But not a dog.", "yes"), ("no\nthere is none", "yes"), ("", "yes")],
)
def test_official_rule(prediction, answer):
    assert pope.official_answer(prediction) == answer


def test_load_takes_split_from_file_name(files):
    items = pope.load(files[0], images=files[2])
    assert len(items) == 12 and len({item.key for item in items}) == 12
    assert {item.split for item in items} == {"random", "popular", "adversarial"}
    assert items[0].image.load().getpixel((0, 0)) == (1, 2, 3)
    assert pope.question_prompt(items[0]) == "Is there a thing 0 in the image?"


def test_official_scores(files):
    metrics = score_predictions("pope", files[0], files[1])
    assert metrics["random"] == pytest.approx(
        {"accuracy": 0.5, "precision": 0.5, "recall": 0.5, "f1": 0.5, "yes_ratio": 0.5, "n": 4})
    assert metrics["popular"] == pytest.approx(
        {"accuracy": 1.0, "precision": 1.0, "recall": 1.0, "f1": 1.0, "yes_ratio": 0.5, "n": 4})
    # adversarial: TP 2, FP 1, TN 1, FN 0.
    assert metrics["adversarial"] == pytest.approx(
        {"accuracy": 0.75, "precision": 2 / 3, "recall": 1.0, "f1": 0.8, "yes_ratio": 0.75, "n": 4})
    assert metrics["mean"] == pytest.approx({"accuracy": 0.75, "precision": (0.5 + 1 + 2 / 3) / 3,
                                             "recall": 2.5 / 3, "f1": 2.3 / 3, "yes_ratio": 1.75 / 3})
    assert metrics["tokens_correct"] == 3.0
    assert metrics["by_category"] == {"split": {"random": 0.5, "popular": 1.0, "adversarial": 0.75}}


def test_lmms_eval_mode(files):
    metrics = score_predictions("pope", files[0], files[1], mode="lmms-eval")
    # Exact "yes"/"no" only; yes-ratio is lmms-eval's share of "yes" labels.
    assert metrics["random"] == pytest.approx(
        {"accuracy": 0.0, "precision": 0.0, "recall": 0.0, "f1": 0.0, "yes_ratio": 0.5, "n": 4})
    assert metrics["popular"]["accuracy"] == 1.0


def test_file_without_split_needs_category(tmp_path):
    path = tmp_path / "questions.jsonl"
    path.write_text(json.dumps({"question_id": 1, "image": "x.jpg", "text": "q?", "label": "yes"}) + "\n")
    with pytest.raises(BenchmarkFormatError, match="field 'category': no split"):
        pope.load([path])
    path.write_text(json.dumps({"question_id": 1, "image": "x.jpg", "text": "q?", "label": "yes",
                                "category": "popular"}) + "\n")
    assert pope.load([path])[0].split == "popular"


def test_bad_label(tmp_path):
    path = tmp_path / "coco_pope_random.json"
    path.write_text(json.dumps({"question_id": 7, "image": "x.jpg", "text": "q?", "label": "maybe"}) + "\n")
    with pytest.raises(BenchmarkFormatError, match="record 1, field 'label': question_id 7.*'maybe'"):
        pope.load([path])
