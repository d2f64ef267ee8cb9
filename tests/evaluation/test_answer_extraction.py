"""Final-answer extraction before the official rules (for chain-of-thought outputs)."""

from __future__ import annotations

import pytest

from lare.evaluation.answer_extraction import extract_answer


def test_extract_keeps_the_last_final_answer_statement():
    text = "Find the red object. Option B is square. The answer is C? No. The answer is B."
    assert extract_answer(text, "final") == "The answer is B."
    assert extract_answer("the answer is (a)", "final") == "the answer is (a)"
    assert extract_answer("B", "final") == "B"  # nothing to cut
    assert extract_answer(text, "none") == text
    with pytest.raises(ValueError, match="answer extraction"):
        extract_answer(text, "first")


def test_cot_output_fails_the_official_rules_raw_and_passes_after_extraction(tmp_path):
    """A correct chain of thought that names another option on its way: VLMEvalKit's rule (one letter, among the
    last five words) misses it, and MMStar's first-character rule too, until only the final statement is scored."""
    from lare.evaluation.scoring import score_predictions

    from tests.evaluation.files import write_predictions, write_table

    header = ["index", "question", "hint", "A", "B", "C", "D", "answer", "category", "l2-category", "image"]
    rows = [[0, "What shape is it?", "", "circle", "square", "cross", "star", "B", "shape", "attribute", ""],
            [1, "What colour is it?", "", "red", "blue", "green", "black", "C", "colour", "attribute", ""]]
    cot = ["Find the object. Option A is circle, but it has corners. It is a square. The answer is B.",
           "Look closely. Option D is black, not it. The object is green. The answer is C."]
    for name in ("mmbench", "mmstar"):
        data = write_table(tmp_path / f"{name}.tsv", header if name == "mmbench" else
                           [h.replace("l2-category", "l2_category") for h in header], rows)
        predictions = write_predictions(tmp_path / f"{name}.jsonl",
                                        [{"id": i, "prediction": text, "tokens": 20} for i, text in enumerate(cot)])
        raw = score_predictions(name, [data], predictions)
        final = score_predictions(name, [data], predictions, answer_extraction="final")
        key = "vanilla_accuracy" if name == "mmbench" else "accuracy"
        assert raw[key] == 0.0, name
        assert final[key] == 1.0 and final["answer_extraction"] == "final", name
        assert final["tokens_correct"] == 20


def test_final_option_turns_a_named_option_text_into_its_letter():
    options = {"A": "circle", "B": "square", "C": "cross", "D": "triangle"}
    text = "Find the red object. It is a small red square. Its shape is square. The answer is square."
    assert extract_answer(text, "final_option", options) == "The answer is B."
    # A letter stays a letter, and a statement naming no option or several is left for the rule to reject.
    assert extract_answer("So. The answer is C.", "final_option", options) == "The answer is C."
    assert extract_answer("The answer is star.", "final_option", options) == "The answer is star."
    assert extract_answer("The answer is circle or cross.", "final_option", options) == "The answer is circle or cross."
    # Whole words only: "crossing" does not name "cross"; without options (POPE) it is `final`.
    assert extract_answer("The answer is crossing.", "final_option", options) == "The answer is crossing."
    assert extract_answer("Look. The answer is yes.", "final_option") == "The answer is yes."


def test_final_option_scores_option_text_answers_by_the_official_rules(tmp_path):
    from lare.evaluation.scoring import score_predictions

    from tests.evaluation.files import write_predictions, write_table

    header = ["index", "question", "hint", "A", "B", "C", "D", "answer", "category", "l2_category", "image"]
    rows = [[0, "What shape is it?", "", "circle", "square", "cross", "star", "B", "shape", "attribute", ""],
            [1, "What colour is it?", "", "red", "blue", "green", "black", "C", "colour", "attribute", ""]]
    data = write_table(tmp_path / "mmstar.tsv", header, rows)
    answers = ["It is a square. The answer is square.", "It is green. The answer is red."]
    predictions = write_predictions(tmp_path / "mmstar.jsonl",
                                    [{"id": i, "prediction": text, "tokens": 9} for i, text in enumerate(answers)])
    assert score_predictions("mmstar", [data], predictions, answer_extraction="final")["accuracy"] == 0.0
    scored = score_predictions("mmstar", [data], predictions, answer_extraction="final_option")
    assert scored["accuracy"] == 0.5 and scored["answer_extraction"] == "final_option"
