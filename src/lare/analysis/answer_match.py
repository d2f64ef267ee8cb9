"""Is a generated answer right? The rule the analyses use on LLaVA-format records (e.g. the synthetic test split).

The benchmark scorers in `lare.evaluation.benchmarks` work on their own file formats; the analyses read LLaVA
records, whose `answer` is an option letter or a word (POPE's yes/no). The rule, in order:

1. The last "the answer is X" in the text (the form every LaRe/CoT target ends with): X must equal the answer.
2. Multiple choice: VLMEvalKit's exact-matching rule (`infer_option`: a lone option letter near the end, or the
   text of exactly one option).
3. yes/no answers: POPE's official rule (`official_answer`: "no" when a negation word is in the first sentence).
4. Otherwise: the whole answer, case-folded and without a final full stop, must equal the ground truth.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from lare.evaluation.benchmarks.option_matching import infer_option
from lare.evaluation.benchmarks.pope import official_answer

_ANSWER_IS = re.compile(r"answer is\s*[:(\[]?\s*([A-Za-z]+)", re.IGNORECASE)
_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def is_correct(prediction: str, answer: str, options: Sequence[str] | None = None) -> bool:
    """Whether `prediction` gives `answer` (see the module docstring for the rule)."""
    expected = answer.strip().casefold()
    stated = _ANSWER_IS.findall(prediction)
    if stated:
        return stated[-1].casefold() == expected
    if options:
        letter = infer_option(prediction, {_LETTERS[i]: text for i, text in enumerate(options)})
        return letter is not None and letter.casefold() == expected
    if expected in ("yes", "no"):
        return official_answer(prediction.strip().casefold()) == expected
    return prediction.strip().casefold().rstrip(".") == expected
