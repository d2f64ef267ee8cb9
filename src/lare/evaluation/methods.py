"""The three evaluation methods: what each adds to the benchmark prompt and how many latent steps it runs.

* `direct`: the plain model (no latents) told to answer with the option's letter: lmms-eval's own post prompt.
* `cot`: the plain model told to think step by step before answering; explicit reasoning costs tokens.
* `lare`: the model's configured latent refocusing steps, then the same instruction as `direct`: the reasoning
  happens in the latents, so the visible answer stays short.
"""

from __future__ import annotations

from dataclasses import dataclass

from lare.evaluation.benchmarks import Benchmark
from lare.evaluation.benchmarks.item import BenchmarkItem

METHOD_NAMES = ("lare", "cot", "direct")

# CoT ends in the form every official multiple-choice rule accepts somewhere ("The answer is X." is LLaVA's
# ScienceQA pattern and VLMEvalKit's letter rule reads it too).
_COT_CHOICE = 'Think step by step, then end with "The answer is X." where X is the option\'s letter.'
_COT_YES_NO = "Think step by step, then answer yes or no."


@dataclass(frozen=True)
class Method:
    """How one method runs.

    Attributes:
        name: "lare", "cot" or "direct".
        latent_steps: latent steps passed to `generate`; None means the model's configured `latent_steps`.
        default_max_new_tokens: the generation budget when the caller gives none (CoT needs room to reason).
    """

    name: str
    latent_steps: int | None
    default_max_new_tokens: int

    def prompt(self, benchmark: Benchmark, item: BenchmarkItem) -> str:
        """The benchmark's lmms-eval prompt body followed by this method's instruction on its own line."""
        body = benchmark.question_prompt(item)
        if self.name == "cot":
            instruction = _COT_YES_NO if not item.options else _COT_CHOICE
        else:
            instruction = benchmark.DIRECT_INSTRUCTION
        return f"{body}\n{instruction}"


_METHODS = {
    "lare": Method("lare", latent_steps=None, default_max_new_tokens=32),
    "cot": Method("cot", latent_steps=0, default_max_new_tokens=256),
    "direct": Method("direct", latent_steps=0, default_max_new_tokens=32),
}


def get_method(name: str) -> Method:
    """The method registered as `name` (one of `METHOD_NAMES`)."""
    if name not in _METHODS:
        raise ValueError(f"unknown method {name!r}; choose one of {', '.join(METHOD_NAMES)}")
    return _METHODS[name]
