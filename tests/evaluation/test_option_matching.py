"""VLMEvalKit's exact-matching rule on the outputs that trip up naive parsers."""

import pytest

from lare.evaluation.benchmarks.option_matching import infer_option

OPTIONS = {"A": "a cat", "B": "a dog", "C": "a bird", "D": "a fish"}


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ("B", "B"),
        ("The answer is (B).", "B"),  # punctuation around the letter is stripped
        ("**C**", "C"),
        ("a dog", "B"),  # no letter: the option text decides
        ("A dog is shown.", "A"),  # a lone "A" near the end counts as the letter (VLMEvalKit's quirk)
        ("A dog is sitting on the grass.", "B"),  # "A" too far from the end; the option text then decides
        ("b", None),  # lowercase letters are not option letters, and "b" is no option's text
        ("A or B", None),  # two letters: undecidable; neither option text appears
        ("Cannot determine the answer", "Z"),  # known refusal: the impossible option Z
        ("Z", "Z"),
        ("I think it could be a cat or a dog", None),  # two option texts
        ("", None),
    ],
)
def test_infer_option(answer, expected):
    assert infer_option(answer, OPTIONS) == expected


def test_letter_must_be_among_the_last_five_tokens():
    answer = "Option C seems plausible at first but on closer inspection clearly wrong"
    assert infer_option(answer, {"A": "x", "B": "y", "C": "z"}) is None
    assert infer_option("so the final choice is C", {"A": "x", "B": "y", "C": "z"}) == "C"


def test_long_answer_is_not_matched_by_option_text():
    options = {"A": "red", "B": "green"}
    assert infer_option("red " * 20, options) is None  # longer than twice the options' total length
    assert infer_option("it is red", options) == "A"
