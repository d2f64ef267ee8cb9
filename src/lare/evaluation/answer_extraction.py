"""Answer extraction applied before a benchmark's own rule, for outputs that reason before answering.

The official rules were written for short answers: MMStar looks at the first character, VLMEvalKit wants a
single option letter among the last words, POPE reads the text before the first period. A chain of thought
mentions options and objects on its way ("Option B is square. … The answer is B."), which those rules read
as a wrong or ambiguous answer. `final` keeps only the final answer statement, so CoT, LaRe and direct
answers are scored by the same rule on the same kind of text.
"""

from __future__ import annotations

import re

EXTRACTIONS = ("none", "final")

_FINAL_ANSWER = re.compile(r"the answer is", re.IGNORECASE)


def extract_answer(prediction: str, extraction: str) -> str:
    """`none`: the prediction as is. `final`: from the last "The answer is" on (the whole text when absent)."""
    if extraction == "none":
        return prediction
    if extraction != "final":
        raise ValueError(f"answer extraction must be one of {EXTRACTIONS}, got {extraction!r}")
    starts = [match.start() for match in _FINAL_ANSWER.finditer(prediction)]
    return prediction[starts[-1]:] if starts else prediction
