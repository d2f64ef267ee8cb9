"""Latent-step and halting sweeps (the paper's Fig. 5 and Table 4).

Fig. 5: accuracy and `tokens_correct` (mean generated tokens over correctly answered samples, the paper's
"# Tokens") against the number of latent steps T = 0…8; T = 0 is the plain model (no latents).
Table 4: adaptive halting rules none / cosine / l1 / l2 at a fixed step budget, with the average steps taken.
Correctness follows `lare.analysis.answer_match.is_correct`.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from lare.analysis.markdown import markdown_table
from lare.analysis.refocus_generation import generate_with_refocus
from lare.analysis.samples import AnalysisSample
from lare.evaluation.metrics import SampleOutcome, tokens_correct

logger = logging.getLogger(__name__)

DEFAULT_STEPS = tuple(range(0, 9))
DEFAULT_HALTING_RULES = ("none", "cosine", "l1", "l2")


@dataclass
class SweepPoint:
    """One setting of the sweep.

    Attributes:
        latent_steps: T, the step budget.
        halting: the halting rule ("none", "cosine", "l1", "l2").
        halting_threshold: the rule's threshold (None for "none").
        accuracy: fraction of samples answered correctly.
        tokens_correct: mean generated tokens over correct answers (None when none is correct).
        mean_steps_taken: latent steps actually run, averaged over samples.
        n: samples scored.
    """

    latent_steps: int
    halting: str
    halting_threshold: float | None
    accuracy: float
    tokens_correct: float | None
    mean_steps_taken: float
    n: int


@dataclass
class StepSweepReport:
    """`steps`: one point per T (halting "none"); `halting`: one point per rule at T = `halting_steps`."""

    steps: list[SweepPoint]
    halting: list[SweepPoint]
    halting_steps: int


@contextlib.contextmanager
def halting_rule(model: Any, rule: str, threshold: float | None = None) -> Iterator[None]:
    """Temporarily set `model.config.halting` (and the threshold); the previous values come back on exit."""
    config = model.config
    saved = (config.halting, config.halting_threshold)
    try:
        config.halting = rule
        if threshold is not None:
            config.halting_threshold = threshold
        yield
    finally:
        config.halting, config.halting_threshold = saved


def evaluate_setting(model: Any, processor: Any, samples: Sequence[AnalysisSample], latent_steps: int,
                     batch_size: int = 8, max_new_tokens: int = 32) -> SweepPoint:
    """Accuracy, tokens_correct and mean steps taken at T = `latent_steps` under the model's current halting rule."""
    unanswerable = [s.id for s in samples if s.answer is None]
    if unanswerable:
        raise ValueError(f"the step sweep scores answers, but {len(unanswerable)} samples have none "
                         f"(e.g. {unanswerable[0]!r})")
    answers = generate_with_refocus(model, processor, samples, batch_size, max_new_tokens, latent_steps)
    outcomes = [SampleOutcome(correct=bool(a.correct), tokens=a.n_tokens) for a in answers]
    rule = model.config.halting if latent_steps > 0 else "none"
    return SweepPoint(
        latent_steps=latent_steps, halting=rule,
        halting_threshold=model.config.halting_threshold if rule != "none" else None,
        accuracy=sum(o.correct for o in outcomes) / len(outcomes),
        tokens_correct=tokens_correct(outcomes),
        mean_steps_taken=sum(a.steps_taken for a in answers) / len(answers),
        n=len(answers),
    )


def sweep_latent_steps(model: Any, processor: Any, samples: Sequence[AnalysisSample],
                       steps: Sequence[int] = DEFAULT_STEPS, halting_rules: Sequence[str] = DEFAULT_HALTING_RULES,
                       halting_steps: int | None = None, halting_threshold: float | None = None, batch_size: int = 8,
                       max_new_tokens: int = 32) -> StepSweepReport:
    """Fig. 5 (each T in `steps`, no halting) and Table 4 (each rule at T = `halting_steps`).

    Args:
        halting_steps: the step budget of the halting comparison (default: the model's `latent_steps`).
        halting_threshold: the rules' threshold (default: the model's `halting_threshold`).
    """
    if not samples:
        raise ValueError("the step sweep needs at least one sample")
    budget = model.config.latent_steps if halting_steps is None else halting_steps
    if halting_rules and budget < 1:
        raise ValueError(f"the halting comparison needs a step budget >= 1, got {budget}")
    with halting_rule(model, "none"):
        points = []
        for t in steps:
            points.append(evaluate_setting(model, processor, samples, t, batch_size, max_new_tokens))
            logger.info("T=%d: accuracy %.3f, tokens_correct %s", t, points[-1].accuracy, points[-1].tokens_correct)
    halting = []
    for rule in halting_rules:
        with halting_rule(model, rule, halting_threshold):
            halting.append(evaluate_setting(model, processor, samples, budget, batch_size, max_new_tokens))
        logger.info("halting %s: accuracy %.3f, %.2f steps", rule, halting[-1].accuracy, halting[-1].mean_steps_taken)
    return StepSweepReport(steps=points, halting=halting, halting_steps=budget)


def step_sweep_markdown(report: StepSweepReport) -> str:
    """Fig. 5's numbers and Table 4."""
    def row(point: SweepPoint, first: Any) -> list[Any]:
        return [first, point.accuracy, point.tokens_correct, point.mean_steps_taken, point.n]

    text = ["# Latent steps (Fig. 5)", "",
            markdown_table(["T", "accuracy", "tokens_correct", "steps taken", "n"],
                           [row(p, p.latent_steps) for p in report.steps])]
    if report.halting:
        rows = [row(p, p.halting if p.halting_threshold is None else f"{p.halting} (≥ {p.halting_threshold:g})")
                for p in report.halting]
        text += ["", f"# Adaptive halting (Table 4), budget T = {report.halting_steps}", "",
                 markdown_table(["halting", "accuracy", "tokens_correct", "steps taken", "n"], rows)]
    return "\n".join(text)


def plot_step_sweep(report: StepSweepReport, out_path: str | Path, dpi: int = 100) -> Path:
    """Accuracy and tokens_correct against T: a two-axis line plot, 6.4 × 4 inches."""
    from lare.analysis.figures import pyplot, save_figure

    plt = pyplot()

    steps = [p.latent_steps for p in report.steps]
    fig, left = plt.subplots(figsize=(6.4, 4.0))
    left.plot(steps, [p.accuracy for p in report.steps], "o-", color="tab:blue", label="accuracy")
    left.set_xlabel("latent steps T")
    left.set_ylabel("accuracy", color="tab:blue")
    left.set_ylim(0.0, 1.0)
    right = left.twinx()
    # A T where nothing was answered correctly has no tokens_correct; NaN leaves a gap rather than a fake 0.
    tokens = [float("nan") if p.tokens_correct is None else p.tokens_correct for p in report.steps]
    right.plot(steps, tokens, "s--", color="tab:orange", label="tokens_correct")
    right.set_ylabel("tokens per correct answer", color="tab:orange")
    left.set_xticks(steps)
    left.set_title("Accuracy and # tokens against latent steps")
    return save_figure(fig, out_path, dpi)


def write_step_sweep(report: StepSweepReport, out_dir: str | Path) -> dict[str, Path]:
    """Write `steps.png`, `steps.json` and `steps.md` into `out_dir`."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"png": plot_step_sweep(report, out / "steps.png"), "json": out / "steps.json",
             "markdown": out / "steps.md"}
    payload = {"steps": [asdict(p) for p in report.steps], "halting": [asdict(p) for p in report.halting],
               "halting_steps": report.halting_steps}
    paths["json"].write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    paths["markdown"].write_text(step_sweep_markdown(report), encoding="utf-8")
    return paths
