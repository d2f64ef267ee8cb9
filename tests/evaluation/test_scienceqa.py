"""ScienceQA-IMG: LLaVA's conversation JSON and lmms-eval's fields, with LLaVA's scoring rule."""

import json

import pytest

from lare.evaluation.benchmarks import scienceqa
from lare.evaluation.scoring import score_predictions
from tests.evaluation.files import png_bytes, write_predictions


def record(qid, options, answer, image=True):
    human = f"Context: N/A\nQuestion: Question {qid}?\nOptions: " + " ".join(
        f"({letter}) {text}" for letter, text in zip("ABCDE", options))
    entry = {"id": qid, "conversations": [{"from": "human", "value": ("<image>\n" if image else "") + human},
                                          {"from": "gpt", "value": f"The answer is {answer}."}]}
    if image:
        entry["image"] = f"{qid}/image.png"
    return entry


CASES = [  # id, options, answer, prediction, official hit, lmms-eval hit
    ("4", ["West Virginia", "Louisiana", "Arizona", "Oklahoma"], "A", "A", True, True),
    ("7", ["hot", "cold"], "B", "The answer is B.", True, False),
    ("9", ["yes", "no"], "A", "a", False, True),  # LLaVA rejects lowercase, lmms-eval lowercases
    ("11", ["x", "y", "z"], "C", "The answer is C. The answer is C.", False, False),  # two matches
    ("12", ["warm", "cold"], "B", "B. cold", True, True),
    ("13", ["p", "q"], "A", "The answer is (A).", False, False),
    ("14", ["p", "q"], "B", "The answer is E.", False, False),  # E is not one of the two choices
]


@pytest.fixture
def files(tmp_path):
    records = [record(qid, options, answer) for qid, options, answer, *_ in CASES]
    records.insert(1, record("5", ["a", "b"], "A", image=False))  # text-only: not in ScienceQA-IMG
    data = tmp_path / "llava_test_CQM-A.json"
    data.write_text(json.dumps(records))
    for qid, *_ in CASES:
        (tmp_path / "test" / qid).mkdir(parents=True)
        (tmp_path / "test" / qid / "image.png").write_bytes(png_bytes((0, 200, 0)))
    preds = write_predictions(tmp_path / "preds.jsonl",
                              [{"id": qid, "prediction": pred, "tokens": 5} for qid, _, _, pred, *_ in CASES])
    return data, preds, tmp_path / "test"


def test_load_llava_form(files):
    items = scienceqa.load([files[0]], images=files[2])
    assert [item.id for item in items] == [qid for qid, *_ in CASES]  # "5" has no image
    assert items[0].options == {"A": "West Virginia", "B": "Louisiana", "C": "Arizona", "D": "Oklahoma"}
    assert items[0].image.load().getpixel((0, 0)) == (0, 200, 0)
    assert scienceqa.question_prompt(items[1]).startswith("Context: N/A\nQuestion: Question 7?\nOptions: (A) hot")


@pytest.mark.parametrize("mode", ["official", "lmms-eval"])
def test_score_by_hand(files, mode):
    metrics = score_predictions("scienceqa", [files[0]], files[1], mode=mode)
    expected = [case[4] if mode == "official" else case[5] for case in CASES]
    assert metrics["accuracy"] == pytest.approx(sum(expected) / len(CASES))
    assert metrics["n"] == 7


@pytest.mark.parametrize(
    ("prediction", "letter"),
    [("B", "B"), ("B. cold", "B"), ("B.", None), ("The answer is B.", "B"), ("The answer is B,", "B"),
     ("The answer is B", None), ("the answer is B.", None), (" B", None)],
)
def test_official_letter(prediction, letter):
    assert scienceqa.official_letter(prediction, n_choices=4) == letter


def test_lmms_eval_fields(tmp_path):
    rows = [{"hint": "", "question": "Which is colder?", "choices": ["ice", "fire"], "answer": 0, "image": "i.png",
             "subject": "natural science"},
            {"hint": "Think of the sun.", "question": "Which is hotter?", "choices": ["ice", "fire"], "answer": 1,
             "image": "j.png", "subject": "natural science"}]
    data = tmp_path / "scienceqa_img.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in rows))
    items = scienceqa.load([data])
    assert [item.id for item in items] == [0, 1]
    assert [item.answer for item in items] == ["A", "B"]
    assert scienceqa.question_prompt(items[1]) == "Context: Think of the sun.\nWhich is hotter?\nA. ice\nB. fire"
    preds = write_predictions(tmp_path / "p.jsonl", [{"id": 0, "prediction": "A"}, {"id": 1, "prediction": "A"}])
    metrics = score_predictions("scienceqa", [data], preds)
    assert metrics["accuracy"] == 0.5
    assert metrics["by_category"] == {"subject": {"natural science": 0.5}}
    assert metrics["tokens_correct"] is None
