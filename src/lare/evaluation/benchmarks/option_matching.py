"""VLMEvalKit's exact-matching rule: which option letter does a free-form answer name?

This is the rule VLMEvalKit applies before (and, under its `exact_matching` policy, instead of) a GPT judge:
`can_infer_option` looks for the letter, `can_infer_text` for the option text. Re-implemented here from its
documented behaviour (vlmeval/utils/matching_util.py); the tests pin the tricky cases.
"""

from __future__ import annotations

from collections.abc import Mapping

# Answers VLMEvalKit treats as refusals: matched to the impossible option "Z", so they always count as wrong.
REFUSALS = (
    "Sorry, I can't help with images of people yet.",
    "I can't process this file.",
    "I'm sorry, but without the image provided",
    "Cannot determine the answer",
)
REFUSAL_OPTION = "Z"
_API_FAILURE = "Failed to obtain answer via API"
# Punctuation that may wrap a letter: "(B).", "[C]", "**D**" all reduce to a bare letter token.
_WRAPPING = ".()[],:;!*#{}"
# The letter must be among the last few tokens, so "A is wrong, the answer is B" is not read as A.
_TAIL_TOKENS = 5


def infer_option(answer: str, options: Mapping[str, str]) -> str | None:
    """The option letter `answer` names, "Z" for a refusal, or None when the rule cannot decide.

    Args:
        answer: the model's raw output.
        options: option letter -> option text (letters are uppercase, e.g. {"A": "cat", "B": "dog"}).
    """
    letter = infer_option_letter(answer, options)
    if letter is not None:
        return letter
    return infer_option_text(answer, options)


def infer_option_letter(answer: str, options: Mapping[str, str]) -> str | None:
    """VLMEvalKit `can_infer_option`: exactly one option letter among the tokens, and it is among the last five."""
    if _API_FAILURE in answer:
        return None
    if any(refusal in answer for refusal in REFUSALS):
        return REFUSAL_OPTION
    cleaned = answer
    for char in _WRAPPING:
        cleaned = cleaned.replace(char, " ")
    tokens = cleaned.split()
    present = [letter for letter in options if letter in tokens]
    if len(present) == 1:
        letter = present[0]
        # list.index finds the first occurrence, as VLMEvalKit's does.
        if tokens.index(letter) > len(tokens) - _TAIL_TOKENS:
            return letter
        return None
    if not present and tokens.count(REFUSAL_OPTION) >= 1:
        return REFUSAL_OPTION
    return None


def infer_option_text(answer: str, options: Mapping[str, str]) -> str | None:
    """VLMEvalKit `can_infer_text`: exactly one option's text occurs in the (not too long) lowercased answer."""
    lowered = answer.lower()
    # A long answer mentions many options in passing; VLMEvalKit gives up beyond twice the options' total length.
    if len(lowered) > 2 * sum(len(str(text)) for text in options.values()):
        return None
    found = [letter for letter, text in options.items() if str(text).lower() in lowered]
    return found[0] if len(found) == 1 else None
