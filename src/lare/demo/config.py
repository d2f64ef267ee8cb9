"""What `lare demo` runs: data size, the training schedule of the three models, and evaluation settings."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from lare.data.collate import LATENT_REPLACES

LARE_STAGES = ("stage2", "stage3", "stage4")


@dataclass(frozen=True)
class DemoConfig:
    """The demo's settings. `default()` is the ≤ 15 min CPU run, `quick()` the ≤ 2 min smoke run.

    Training budget: all three models start from one shared stage-I checkpoint (captions and single-hop
    instructions), itself started from stage 0, which teaches the randomly initialised vision tower and projector
    to see. LaRe then runs stages II–IV; each baseline trains for as many steps as stages II–IV together, on the
    same reasoning questions.
    """

    out_dir: Path = Path("runs/demo")
    seed: int = 0
    # Seed of every run after stage I (LaRe II–IV and both baselines: data order, dropout, diffusion noise); None
    # uses `seed`. Varying it alone measures how much the comparison moves with training noise, from one stage I.
    finetune_seed: int | None = None
    # No model sees a training question twice (each sees at most 12,160 after stage I). Repeated for many epochs,
    # 1,600 questions per family were memorised instead of learned (measured: 76% right on training, 16% on test
    # MMBench questions).
    n_train: int = 16000
    n_test: int = 500
    batch_size: int = 16
    stage_steps: dict[str, int] = field(default_factory=lambda: {
        "stage1": 1000, "stage2": 120, "stage3": 320, "stage4": 320})
    # Stage 0 (see `vision_pretraining`): the random tower and projector learn to see before stage I.
    vision_steps: int = 600
    vision_target_scale: float = 10.0
    # The row and column codes' scale. 6.0 over fine-tuning seeds 0-2: LaRe 61.3%, CoT 60.4% on average (3.0: 63.4%
    # and 63.0%), and LaRe's answers to "What colour is the object in row R, column C?" 64 / 27 / 24% (3.0: 42%).
    vision_position_scale: float = 3.0
    # The tiny LLM's init std. 0.02 (Qwen's, meant for widths in the thousands) leaves a 128-wide model's attention
    # logits near zero, so it starts uniform and learns content lookups slowly; ≈ 1/√128 learns them in hundreds
    # of steps.
    llm_init_std: float = 0.08
    # One 16 px patch per 16 px scene cell (a 4×4 grid): every object lies inside one cell, so each visual token
    # sees a whole object. With 8 px patches an object is split over up to four tokens, and the tiny tower's
    # per-patch tokens stay too mixed for the LLM to read within the budget (measured: a single shape question
    # after stage 0 at 50% with 8 px patches, 99.7% with 16 px). The refocus window is one cell: one object.
    patch_size: int = 16
    window: int = 1
    latent_steps: int = 4
    # P, the curriculum, λ3 and the Extractor's learning rate below were chosen before grounding (2×2-cell
    # windows, none of the grounding settings), from the same stage I (LaRe accuracy, docs/demo-experiments.md).
    # P and λ3: with the latents replacing the prefix in every stage, P = 8 / 16 / 24 gave 52.2 / 59.0 / 50.6%
    # (P = 12 with 60 stage-II steps moved to stages III–IV: 54.4%) and λ3 = 0.2 / 0.5 / 1.0 gave 54.8 / 59.0 /
    # 52.8%; with the stage-III curriculum, P = 8 / 16 / 24 gave 56.4 / 59.6 / 52.0% at 0.80 / 0.59 / 0.41× CoT's
    # tokens.
    prefix_tokens: int = 16
    # What the latents replace in each LaRe stage (`DataSpec.latent_replaces`). Stage III trains on the whole
    # rationale after the latents, stage IV drops its first P tokens: a Coconut-style curriculum, in which the LLM
    # first learns the task with latent slots in place. Against "prefix" in every stage (fine-tuning seeds 0-2,
    # the same stage I): LaRe 59.6 / 54.6 / 56.2% instead of 59.0 / 50.6 / 54.4%, and shuffling the latents across
    # samples costs 11.6 / 3.2 / 2.4 points instead of 4.8 / 0.6 / -3.4.
    latent_replaces: dict[str, str] = field(default_factory=lambda: {
        "stage2": "prefix", "stage3": "none", "stage4": "prefix"})
    align_weight: float = 0.1
    image_weight: float = 0.1
    text_weight: float = 0.5
    # Saliency grounding (not in the paper; `lare.losses.grounding`). The tiny LLM, trained from scratch, attends
    # almost uniformly from the latent positions: without grounding a step's window held the question's evidence
    # 19% of the time (random: 8%), and LaRe trailed CoT. With windows forced onto the evidence in training and
    # at test (an oracle), LaRe scored 69.0% against CoT's 63.0%: the refocusing works once it looks at the right
    # cell. Grounding trains the model's own saliency to get there, each step on its evidence box in the
    # record's order, and takes the training windows over that box; the test windows are the model's own.
    # Fine-tuning seeds 0-4: LaRe 64.4 / 62.2 / 63.6 / 62.6 / 60.2% against CoT 63.0 / 63.4 / 62.6 / 65.0 / 61.8%
    # (a tie: 0.6 points behind on average); before grounding, seeds 0-2 gave LaRe 59.6 / 54.6 / 56.2%. At seed 0,
    # weight 1.0 with every step on all the evidence at once: 61.6%; weight 3.0 without the training windows: 47.2%.
    grounding_weight: float = 1.0
    evidence_windows_in_training: bool = True
    # The Extractor's learning rate in stages III–IV (stage II: 3e-4). With the prefix replaced in every stage,
    # 3e-4 gave LaRe 61.4% (1e-4: 59.0%), but its latents then carried nothing sample-specific: shuffling them
    # across samples cost 0.0 points (1e-4: 4.8); 2e-4 over fine-tuning seeds 0-2 gave 57.0 / 55.8 / 59.0% (1e-4:
    # 59.0 / 50.6 / 54.4%). With the stage-III curriculum, 2e-4 gave 60.2 / 57.2 / 55.6% and shuffling cost
    # 12.0 / 2.0 / 0.2 points. CoT: 63.0 / 63.4 / 62.6%.
    extractor_lr: float = 1e-4
    eval_batch_size: int = 50
    max_new_tokens: dict[str, int] = field(default_factory=lambda: {"lare": 64, "cot": 96, "direct": 16})
    heatmap_samples: int = 4

    def __post_init__(self) -> None:
        for name in ("n_train", "n_test", "batch_size", "eval_batch_size", "latent_steps", "prefix_tokens",
                     "vision_steps", "patch_size", "window"):
            if getattr(self, name) < 1:
                raise ValueError(f"DemoConfig.{name} must be >= 1, got {getattr(self, name)}")
        missing = {"stage1", "stage2", "stage3", "stage4"} - set(self.stage_steps)
        if missing:
            raise ValueError(f"DemoConfig.stage_steps lacks {sorted(missing)}")
        if any(steps < 1 for steps in self.stage_steps.values()):
            raise ValueError(f"DemoConfig.stage_steps must all be >= 1, got {self.stage_steps}")
        if set(self.latent_replaces) != set(LARE_STAGES):
            raise ValueError(f"DemoConfig.latent_replaces needs exactly the stages {list(LARE_STAGES)}, got "
                             f"{sorted(self.latent_replaces)}")
        for stage, mode in self.latent_replaces.items():
            if mode not in LATENT_REPLACES:
                raise ValueError(f"DemoConfig.latent_replaces[{stage!r}] must be one of {LATENT_REPLACES}, got "
                                 f"{mode!r}")
        if self.grounding_weight < 0:
            raise ValueError(f"DemoConfig.grounding_weight must be >= 0, got {self.grounding_weight}")
        for name in ("vision_target_scale", "llm_init_std", "extractor_lr"):
            if not getattr(self, name) > 0:
                raise ValueError(f"DemoConfig.{name} must be > 0, got {getattr(self, name)}")
        if self.vision_position_scale < 0:
            raise ValueError(f"DemoConfig.vision_position_scale must be >= 0, got {self.vision_position_scale}")

    @property
    def run_seed_after_stage1(self) -> int:
        """The seed of LaRe's stages II–IV and of both baselines."""
        return self.seed if self.finetune_seed is None else self.finetune_seed

    @property
    def baseline_steps(self) -> int:
        """Steps of each baseline after stage I: the same as LaRe's stages II–IV together."""
        return self.stage_steps["stage2"] + self.stage_steps["stage3"] + self.stage_steps["stage4"]

    @classmethod
    def default(cls, **overrides) -> DemoConfig:
        return replace(cls(), **overrides)

    @classmethod
    def quick(cls, **overrides) -> DemoConfig:
        """A few steps of everything on a small corpus: checks the whole pipeline, not the method."""
        settings = dict(n_train=200, n_test=40, batch_size=8, vision_steps=5,
                        stage_steps={"stage1": 6, "stage2": 4, "stage3": 4, "stage4": 4}, eval_batch_size=20,
                        max_new_tokens={"lare": 24, "cot": 32, "direct": 8}, out_dir=Path("runs/demo-quick"))
        settings.update(overrides)
        return cls(**settings)
