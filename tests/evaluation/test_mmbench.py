"""MMBench: VLMEvalKit TSV with circular copies, scored by hand."""

import pytest

from lare.evaluation.benchmarks import mmbench
from lare.evaluation.benchmarks.format_error import BenchmarkFormatError
from lare.evaluation.predictions import Prediction
from lare.evaluation.scoring import score_predictions

from tests.evaluation.files import write_predictions, write_table

HEADER = ["index", "question", "hint", "A", "B", "C", "D", "answer", "category", "l2-category", "split", "image"]


def mmbench_rows(red, blue):
    # Question 1 and its three rotations; copies reuse row 1's image through a short "1" cell.
    return [
        [1, "What color is the ball?", None, "red", "green", "blue", "yellow", "A", "attribute_reasoning", "reasoning", "dev", red],
        [1000001, "What color is the ball?", None, "green", "blue", "yellow", "red", "D", "attribute_reasoning", "reasoning", "dev", "1"],
        [2000001, "What color is the ball?", None, "blue", "yellow", "red", "green", "C", "attribute_reasoning", "reasoning", "dev", "1"],
        [3000001, "What color is the ball?", None, "yellow", "red", "green", "blue", "B", "attribute_reasoning", "reasoning", "dev", "1"],
        [2, "Where is the cat?", "Look at the left.", "left", "right", None, None, "A", "object_localization", "perception", "dev", blue],
        [1000002, "Where is the cat?", "Look at the left.", "right", "left", None, None, "B", "object_localization", "perception", "dev", "2"],
        [3, "Is it daytime?", None, "no", "yes", None, None, "B", "attribute_reasoning", "reasoning", "dev", blue],
        [1000003, "Is it daytime?", None, "yes", "no", None, None, "A", "attribute_reasoning", "reasoning", "dev", "3"],
    ]


PREDICTIONS = [
    {"id": 1, "prediction": "A", "tokens": 3},
    {"id": 1000001, "prediction": "The answer is (D).", "tokens": 7},
    {"id": 2000001, "prediction": "red", "tokens": 1},  # option text
    {"id": 3000001, "prediction": "b", "tokens": 1},  # lowercase letter: not matched -> question 1 fails circular
    {"id": 2, "prediction": "A. left", "tokens": 4},
    {"id": 1000002, "prediction": "B", "tokens": 1},
    {"id": 3, "prediction": "Sorry, I can't help with images of people yet.", "tokens": 12},  # refusal: wrong
    {"id": 1000003, "prediction": "A", "tokens": 2},
]


@pytest.fixture
def mmbench_tsv(tmp_path, red_png_b64, blue_png_b64):
    return write_table(tmp_path / "MMBench_DEV_EN.tsv", HEADER, mmbench_rows(red_png_b64, blue_png_b64))


def test_load_resolves_image_references_and_groups(mmbench_tsv, red_png_b64):
    items = mmbench.load([mmbench_tsv])
    assert [item.id for item in items][:2] == [1, 1000001]
    assert items[1].image.value == red_png_b64  # the short "1" cell points at row 1's image
    assert items[1].image.load().getpixel((0, 0)) == (255, 0, 0)
    assert {item.group for item in items} == {1, 2, 3}
    assert items[4].options == {"A": "left", "B": "right"}  # empty C/D cells are not options
    assert mmbench.question_prompt(items[4]) == (
        "Look at the left. Where is the cat? There are several options:\nA. left\nB. right"
    )


def test_score_circular_and_vanilla_by_hand(tmp_path, mmbench_tsv):
    predictions = write_predictions(tmp_path / "preds.jsonl", PREDICTIONS)
    metrics = score_predictions("mmbench", [mmbench_tsv], predictions)
    # Row hits: T T T F | T T | F T. Circular: Q1 F, Q2 T, Q3 F. Vanilla (original rows 1, 2, 3): T T F.
    assert metrics["circular_accuracy"] == pytest.approx(1 / 3)
    assert metrics["vanilla_accuracy"] == pytest.approx(2 / 3)
    assert metrics["vanilla_all_accuracy"] == pytest.approx(6 / 8)
    assert metrics["by_category"]["category"] == {"attribute_reasoning": 0.0, "object_localization": 1.0}
    assert metrics["by_category_vanilla"]["l2_category"] == {"perception": 1.0, "reasoning": 0.5}
    # Correct rows generated 3 + 7 + 1 + 4 + 1 + 2 = 18 tokens over 6 rows; all rows 31 tokens.
    assert metrics["tokens_correct"] == pytest.approx(3.0)
    assert metrics["lmms_eval_tokens_per_correct_answer"] == pytest.approx(31 / 6)


def test_scores_without_images(tmp_path, mmbench_tsv, red_png_b64, blue_png_b64):
    rows = [row[:-1] for row in mmbench_rows(red_png_b64, blue_png_b64)]
    no_images = write_table(tmp_path / "no_image.tsv", HEADER[:-1], rows)
    predictions = write_predictions(tmp_path / "preds.jsonl", PREDICTIONS)
    assert score_predictions("mmbench", [no_images], predictions) == score_predictions(
        "mmbench", [mmbench_tsv], predictions
    )


def test_no_tokens_gives_null_token_metrics(mmbench_tsv):
    items = mmbench.load([mmbench_tsv])
    predictions = [Prediction(id=item.id, prediction=item.answer) for item in items]
    metrics = mmbench.score(items, predictions)
    assert metrics["circular_accuracy"] == 1.0
    assert metrics["tokens_correct"] is None


def test_bad_answer_letter_names_file_row_and_field(tmp_path, red_png_b64):
    rows = [[1, "q", None, "x", "y", None, None, "C", "c", "l2", "dev", red_png_b64]]
    path = write_table(tmp_path / "bad.tsv", HEADER, rows)
    with pytest.raises(BenchmarkFormatError, match=r"bad\.tsv, row 2, field 'answer'.*'C'"):
        mmbench.load([path])


def test_duplicate_index_is_an_error(tmp_path, red_png_b64):
    row = [1, "q", None, "x", "y", None, None, "A", "c", "l2", "dev", red_png_b64]
    path = write_table(tmp_path / "dup.tsv", HEADER, [row, row])
    with pytest.raises(BenchmarkFormatError, match="row 3, field 'index': duplicate index 1"):
        mmbench.load([path])


def test_lmms_eval_mode_is_refused(mmbench_tsv):
    items = mmbench.load([mmbench_tsv])
    with pytest.raises(ValueError, match="GPT judge"):
        mmbench.score(items, [Prediction(id=item.id, prediction="A") for item in items], mode="lmms-eval")
