"""Markdown tables and the answer-matching rule the analyses score with."""

from __future__ import annotations

import pytest

from lare.analysis.answer_match import is_correct
from lare.analysis.markdown import markdown_table


def test_markdown_table_formats_numbers_and_escapes_text():
    table = markdown_table(["name", "value"], [["a|b", 0.12345], ["c", None]])
    assert table.splitlines() == ["| name | value |", "|---|---:|", "| a\\|b | 0.123 |", "| c | – |"]
    with pytest.raises(ValueError, match="row 0 has 1 cells"):
        markdown_table(["a", "b"], [["only one"]])


@pytest.mark.parametrize("prediction, answer, options, expected", [
    ("Find the red object. The answer is B.", "B", ["x", "y", "z", "w"], True),
    ("The answer is A. No wait, the answer is C.", "C", ["x", "y", "z", "w"], True),  # the last statement counts
    ("The answer is yes.", "no", None, False),
    ("B", "B", ["cat", "dog"], True),  # VLMEvalKit letter rule
    ("It is a dog", "B", ["cat", "dog"], True),  # VLMEvalKit option-text rule
    ("cat", "B", ["cat", "dog"], False),
    ("No, there is not.", "no", None, True),  # POPE rule
    ("Yes", "no", None, False),
    ("Large.", "large", None, True),
])
def test_is_correct(prediction, answer, options, expected):
    assert is_correct(prediction, answer, options) is expected
