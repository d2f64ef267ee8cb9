"""MMStar: official `mmstar.py` rule and lmms-eval 0.7.3's, on a hand-scored TSV."""

import pytest

from lare.evaluation.benchmarks import mmstar
from lare.evaluation.scoring import score_predictions
from tests.evaluation.files import write_predictions, write_table

HEADER = ["index", "question", "answer", "category", "l2_category", "image"]
QUESTION = "Which emotion is shown?\nOptions: A: joy, B: anger, C: fear, D: calm"
ROWS = [
    (0, "A", "coarse perception", "image emotion", "A"),
    (1, "B", "coarse perception", "image emotion", "(b) the sky"),
    (2, "C", "coarse perception", "image scene and topic", "The answer is (C)."),
    (3, "D", "math", "geometry", "Option D"),
    (4, "A", "math", "geometry", "a dog"),
    (5, "B", "math", "statistical reasoning", "I cannot tell."),
]


@pytest.fixture
def files(tmp_path, red_png_b64):
    data = write_table(tmp_path / "MMStar.tsv", HEADER,
                       [[i, QUESTION, ans, cat, l2, red_png_b64] for i, ans, cat, l2, _ in ROWS])
    preds = write_predictions(tmp_path / "preds.jsonl",
                              [{"id": i, "prediction": p, "tokens": i + 1} for i, *_, p in ROWS])
    return data, preds


@pytest.mark.parametrize(
    ("prediction", "answer", "hit"),
    [
        ("B", "B", True),
        ("b) sure", "B", True),
        ("(B) dog", "B", True),
        ("Option B", "B", True),
        ("The answer is B", "B", True),
        ("The answer is (B).", "B", False),  # the letter must directly follow "the answer is "
        ("a dog", "A", True),  # the rule only looks at the first character
        ("Yes.", "A", False),
        ("", "A", False),
        ("(", "A", False),
        ("\n  C", "C", True),
    ],
)
def test_official_rule(prediction, answer, hit):
    assert mmstar.official_hit(prediction, answer) is hit


def test_official_scores(files):
    metrics = score_predictions("mmstar", [files[0]], files[1])
    # Hits: T T F T T F.
    assert metrics["accuracy"] == pytest.approx(4 / 6)
    assert metrics["by_category"]["category"] == pytest.approx({"coarse perception": 2 / 3, "math": 2 / 3})
    assert metrics["by_category"]["l2_category"] == {
        "geometry": 1.0, "image emotion": 1.0, "image scene and topic": 0.0, "statistical reasoning": 0.0}
    assert metrics["tokens_correct"] == pytest.approx((1 + 2 + 4 + 5) / 4)
    assert metrics["lmms_eval_tokens_per_correct_answer"] == pytest.approx(21 / 4)


def test_lmms_eval_mode(files):
    metrics = score_predictions("mmstar", [files[0]], files[1], mode="lmms-eval")
    # lmms-eval's letter extraction: hits T F T T F F; mean over l2 categories (0.5, 1, 0.5, 0).
    assert metrics["accuracy"] == pytest.approx(0.5)
    assert metrics["by_category"]["category"] == pytest.approx({"coarse perception": 0.75, "math": 0.25})


def test_parquet_without_pyarrow_says_so(tmp_path):
    path = tmp_path / "mmstar.parquet"
    path.write_bytes(b"PAR1")
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match="pyarrow"):
            mmstar.load([path])
    else:
        pytest.skip("pyarrow is installed")
