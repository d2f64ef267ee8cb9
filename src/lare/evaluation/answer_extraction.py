"""Answer extraction applied before a benchmark's own rule, for outputs that reason before answering.

The official rules were written for short answers: MMStar looks at the first character, VLMEvalKit wants a
single option letter among the last words, POPE reads the text before the first period. A chain of thought
mentions options and objects on its way ("Option B is square. … The answer is B."), which those rules read
as a wrong or ambiguous answer. `final` keeps only the final answer statement, so CoT, LaRe and direct
answers are scored by the same rule on the same kind of text. `final_option` also accepts a final statement that
names an option by its text ("The answer is square."): when it names no option letter and exactly one option's
text, the text becomes that option's letter, as VLMEvalKit's option-text matching (`can_infer_text`) does before
it scores a multiple-choice answer.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from lare.evaluation.benchmarks.option_matching import infer_option_letter

EXTRACTIONS = ("none", "final", "final_option")

_FINAL_ANSWER = re.compile(r"the answer is", re.IGNORECASE)


def extract_answer(prediction: str, extraction: str, options: Mapping[str, str] | None = None) -> str:
    """`none`: the prediction as is. `final`: from the last "The answer is" on (the whole text when absent).

    `final_option`: `final`, then an option named by its text is replaced by its letter (`options`: letter ->
    text; without options, e.g. POPE's yes/no questions, it is `final`).
    """
    if extraction not in EXTRACTIONS:
        raise ValueError(f"answer extraction must be one of {EXTRACTIONS}, got {extraction!r}")
    if extraction == "none":
        return prediction
    starts = [match.start() for match in _FINAL_ANSWER.finditer(prediction)]
    final = prediction[starts[-1]:] if starts else prediction
    if extraction == "final" or not options:
        return final
    return _option_text_to_letter(final, options)


def _option_text_to_letter(final: str, options: Mapping[str, str]) -> str:
    """'The answer is square.' with B = square → 'The answer is B.'; unchanged when it names a letter or ≠ 1 text."""
    if infer_option_letter(final, options) is not None:
        return final
    statement = _FINAL_ANSWER.match(final)
    body = final[statement.end():] if statement else final
    named = [letter for letter, text in options.items()
             if re.search(rf"(?<!\w){re.escape(str(text).strip().lower())}(?!\w)", body.lower())]
    if len(named) != 1:
        return final
    return f"The answer is {named[0]}."
