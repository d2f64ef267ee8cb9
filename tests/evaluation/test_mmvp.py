"""MMVP: the original Questions.csv and image folder, per-question and pair accuracy."""

import pytest

from lare.evaluation.benchmarks import mmvp
from lare.evaluation.benchmarks.format_error import BenchmarkFormatError
from lare.evaluation.scoring import score_predictions
from tests.evaluation.files import png_bytes, write_predictions, write_table

HEADER = ["Index", "Question", "Options", "Correct Answer"]
ROWS = [
    [1, "Is the dog facing left or right from the camera's perspective?", "(a) Left (b) Right", "(a)"],
    [2, "Is the dog facing left or right from the camera's perspective?", "(a) Left (b) Right", "(b)"],
    [3, "Are the butterfly's wings closer to being open or closed?", "(a) Open (b) Closed", "(a)"],
    [4, "Are the butterfly's wings closer to being open or closed?", "(a) Open (b) Closed", "(b)"],
]
PREDICTIONS = ["(a)", "Right", "The answer is (a) Open.", "a"]


@pytest.fixture
def files(tmp_path):
    folder = tmp_path / "MMVP Images"
    folder.mkdir()
    for index in range(1, 5):
        (folder / f"{index}.jpg").write_bytes(png_bytes((index * 40, 0, 0)))
    data = write_table(tmp_path / "Questions.csv", HEADER, ROWS, delimiter=",")
    preds = write_predictions(tmp_path / "preds.jsonl",
                              [{"id": i + 1, "prediction": p, "tokens": 2} for i, p in enumerate(PREDICTIONS)])
    return data, preds


def test_load_csv(files):
    items = mmvp.load([files[0]])
    assert items[0].options == {"A": "Left", "B": "Right"}
    assert [item.answer for item in items] == ["A", "B", "A", "B"]
    assert [item.group for item in items] == [0, 0, 1, 1]
    assert items[2].image.load().getpixel((0, 0)) == (120, 0, 0)  # {Index}.jpg from "MMVP Images"
    assert mmvp.question_prompt(items[2]) == "Are the butterfly's wings closer to being open or closed?\nA. Open\nB. Closed"


@pytest.mark.parametrize(
    ("prediction", "choice"),
    [("(b)", "B"), ("B", "B"), ("b.", "B"), ("The answer is (B).", "B"), ("a dog", "B"), ("a cat", "A"),
     ("(a) or (b)", None), ("Cannot determine the answer", None)],
)
def test_official_choice(prediction, choice):
    assert mmvp.official_choice(prediction, {"A": "a cat", "B": "a dog"}) == choice


def test_score_by_hand(files):
    metrics = score_predictions("mmvp", [files[0]], files[1])
    # Hits: T T T F -> pairs (1, 2) right, (3, 4) wrong.
    assert metrics["accuracy"] == 0.75
    assert metrics["pair_accuracy"] == 0.5
    assert metrics["tokens_correct"] == 2.0


def test_lmms_eval_mode(files):
    metrics = score_predictions("mmvp", [files[0]], files[1], mode="lmms-eval")
    # lmms-eval's regexes: "Right" names no letter. Hits: T F T F.
    assert metrics["accuracy"] == 0.5
    assert metrics["pair_accuracy"] == 0.0


def test_unknown_answer_is_an_error(tmp_path):
    path = write_table(tmp_path / "Questions.csv", HEADER, [[1, "q", "(a) x (b) y", "(c)"]], delimiter=",")
    with pytest.raises(BenchmarkFormatError, match=r"row 2, field 'Correct Answer'.*\(c\)"):
        mmvp.load([path])
