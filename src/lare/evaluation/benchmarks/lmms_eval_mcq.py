"""lmms-eval's multiple-choice letter extraction (lmms_eval/tasks/_task_utils/mcq_extract.py, lmms-eval 0.7.3).

Used by the `lmms-eval` scoring mode (MMStar there). Every place a choice letter appears in a recognised format is a
candidate; the highest-priority format wins, and within a format the last occurrence wins.
"""

from __future__ import annotations

from collections.abc import Sequence

_ANSWER_PHRASES = (
    "the answer is", "answer is", "the correct answer is", "correct answer is", "the best answer is",
    "best answer is", "the correct option is", "correct option is", "the best option is", "best option is",
    "the choice is", "choice is", "the correct choice is", "correct choice is", "i choose", "i select", "i pick",
    "my answer is", "my choice is", "옵션", "정답은", "답은", "답:", "答案是", "答案为", "选", "答えは",
)
# Higher is more trusted; "fallback" is any occurrence, used only when nothing else matched.
_PRIORITY = {"start": 10, "end": 9, "phrase": 7, "parentheses": 6, "period": 5, "colon": 4, "right_paren": 3,
             "space": 2, "fallback": 0}
_EDGE_PUNCTUATION = ",.!?;:'\""


def extract_mcq_letter(response: str, choices: Sequence[str] = tuple("ABCDEFGH")) -> str:
    """The choice letter lmms-eval reads from `response`, or "" when it finds none."""
    if not response or not response.strip():
        return ""
    text = response.strip()
    for char in _EDGE_PUNCTUATION:  # one char at a time, as lmms-eval does, so ".)" is not stripped as a pair
        text = text.strip(char)
    text = f" {text} "
    candidates: list[tuple[str, int, str]] = []  # (letter, position, format)
    for pattern, kind in (("({})", "parentheses"), ("{}.", "period"), ("{}:", "colon"), ("{})", "right_paren"),
                          ("{} ", "space")):
        for letter in choices:
            needle = pattern.format(letter)
            if needle in text:
                candidates.append((letter, text.rfind(needle), kind))
    lowered = text.lower()
    for phrase in _ANSWER_PHRASES:
        start = lowered.find(phrase)
        if start != -1:
            after = start + len(phrase)
            for letter in choices:
                position = text.find(letter, after)
                if position != -1:
                    candidates.append((letter, position, "phrase"))
    stripped = text.strip()
    for letter in choices:
        if stripped.startswith(letter) and (len(stripped) == 1 or not stripped[1].isalpha()):
            candidates.append((letter, 0, "start"))
    for letter in choices:
        if stripped.endswith(letter) and (len(stripped) == 1 or not stripped[-2].isalpha()):
            candidates.append((letter, len(text) - 1, "end"))
    if not candidates:
        candidates = [(letter, text.rfind(letter), "fallback") for letter in choices if letter in text]
    if not candidates:
        return ""
    return max(candidates, key=lambda candidate: (_PRIORITY[candidate[2]], candidate[1]))[0]
