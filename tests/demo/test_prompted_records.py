"""The demo's training records answer multiple-choice questions by the option's text."""

from __future__ import annotations

from lare.data.records import validate_record
from lare.demo.prompted_records import answer_by_option_text


def _record(answer: str, options: list[str] | None) -> dict:
    rationale = "Find the red object. It is a small red square. Its shape is square."
    return {"id": "r1", "rationale": rationale, "answer": answer, "options": options,
            "conversations": [{"from": "human", "value": "What shape is the red object?"},
                              {"from": "gpt", "value": f"{rationale} The answer is {answer}."}]}


def test_a_letter_answer_becomes_its_option_text_in_the_answer_and_the_gpt_turn():
    record = answer_by_option_text(_record("B", ["circle", "square", "cross", "triangle"]))
    assert record["answer"] == "square"
    assert record["conversations"][-1]["value"] == ("Find the red object. It is a small red square. Its shape is "
                                                   "square. The answer is square.")
    assert record["conversations"][0]["value"] == "What shape is the red object?"
    # Still a valid record: an answer may be an option's text.
    assert validate_record(record, None).answer == "square"


def test_yes_no_and_text_answers_are_left_as_they_are():
    pope = _record("yes", None)
    assert answer_by_option_text(pope) is pope
    already = _record("square", ["circle", "square"])
    assert answer_by_option_text(already) is already
