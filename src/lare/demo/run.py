"""`lare demo`: generate the synthetic benchmark, train LaRe and two baselines, evaluate, and report.

1. The synthetic benchmark (train and test, with official-format exports of both splits).
2. A shared stage 0 (the random vision tower and projector learn to see, `vision_pretraining`) and stage I
   (caption and single-hop instruction training of the whole tiny backbone), then LaRe stages II–IV, and the two
   baselines (direct answer, standard CoT) fine-tuned from the same stage-I checkpoint for as many steps as
   LaRe's stages II–IV, on the same questions.
3. Evaluation of all three through the evaluation harness on the exported test files, and LaRe again with zeroed
   and shuffled latents.
4. The report: `report.md`, `results.json`, `refocus.png`, `curves.png`.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from lare.demo.config import DemoConfig
from lare.demo.prompted_records import load_joined, write_prompted_records

logger = logging.getLogger(__name__)

METHODS = ("lare", "cot", "direct")
ABLATIONS = ("zero", "shuffle")


@dataclass
class MethodScore:
    """Accuracy (fraction) and tokens_correct overall and per question family."""

    accuracy: float
    tokens_correct: float | None
    n: int
    by_family: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass
class DemoResult:
    out_dir: Path
    methods: dict[str, MethodScore]
    latent_ablations: dict[str, MethodScore]
    metrics_paths: dict[str, Path]
    seed: int
    n_test: int
    wall_s: float
    finetune_seed: int
    checkpoints: dict[str, Path]
    extras: dict[str, Any] = field(default_factory=dict)


def _stage_config(name: str, model: dict[str, Any], records: list[str], image_root: Path, target: str,
                  lr: dict[str, float], loss: dict[str, Any], steps: int, output_dir: Path, config: DemoConfig,
                  warmup_ratio: float = 0.05, seed: int | None = None, latent_replaces: str = "prefix") -> Any:
    from lare.training.config import StageConfig

    return StageConfig.from_dict({
        "name": name,
        "model": model,
        "data": {"records": records, "image_root": str(image_root), "target": target,
                 "latent_replaces": latent_replaces, "on_bad": "raise"},
        "optim": {"lr": lr, "warmup_ratio": warmup_ratio, "schedule": "cosine", "grad_clip": 1.0},
        "loss": loss,
        "run": {"output_dir": str(output_dir), "max_steps": steps, "batch_size": config.batch_size,
                "save_every": 0, "keep_last": 1, "seed": config.seed if seed is None else seed,
                "log_with": "none"},
    }).validate()


def _train(key: str, stage_config: Any) -> tuple[Path, Path]:
    """Train (or resume, or reuse when finished) one stage; return its final checkpoint and metrics file."""
    from lare.training.loop import train_stage

    logger.info("training %s (%d steps)", key, stage_config.run.max_steps)
    result = train_stage(stage_config, resume="auto")
    return result.checkpoint, result.metrics_path


def train_all(config: DemoConfig, data_dir: Path, prompted: dict[str, Path], synthetic: Any
              ) -> tuple[dict[str, Path], dict[str, Path]]:
    """Train stage I, LaRe II–IV and the two baselines; return final checkpoints and metrics files per run."""
    runs = config.out_dir / "train"
    steps = config.stage_steps
    image_root = synthetic.image_root
    plain = {"latent_steps": 0, "prefix_tokens": config.prefix_tokens}
    # After stage 0 the vision tower moves slowly: early question-answer gradients would undo what it learned.
    everything = {"vision_tower": 1e-4, "projector": 1e-3, "language_model": 1e-3}
    checkpoints: dict[str, Path] = {}
    metrics: dict[str, Path] = {}

    def run(key: str, stage_config: Any) -> None:
        checkpoints[key], metrics[key] = _train(key, stage_config)

    checkpoints["stage0"], metrics["stage0"] = pretrain_vision_stage(config, synthetic, runs / "stage0")
    # Stage I, shared by all three models: the tiny backbone learns the data's language and to read the visual
    # tokens, from captions (scan the scene) and single-hop instructions (find one object, name one attribute).
    run("stage1", _stage_config(
        "stage1", {"path": str(checkpoints["stage0"])},
        [str(synthetic.captions_path), str(synthetic.instructions_path)], image_root, "direct", everything, plain,
        steps["stage1"], runs / "stage1", config))
    stage1 = {"path": str(checkpoints["stage1"])}
    lare_checkpoint, lare_metrics = train_lare(config, stage1["path"], prompted["lare"], image_root, runs)
    checkpoints.update(lare_checkpoint)
    metrics.update(lare_metrics)
    for method in ("cot", "direct"):
        run(method, _stage_config(
            method, stage1, [str(prompted[method])], image_root, method,
            {"vision_tower": 1e-4, "projector": 5e-4, "language_model": 1e-3}, plain, config.baseline_steps,
            runs / method, config, seed=config.run_seed_after_stage1))
    checkpoints["lare"] = checkpoints["lare_stage4"]
    return checkpoints, metrics


def train_lare(config: DemoConfig, stage1: str | Path, records: Path, image_root: Path, runs: Path
               ) -> tuple[dict[str, Path], dict[str, Path]]:
    """LaRe's stages II–IV from a stage-I checkpoint; return the checkpoint and metrics file of each stage."""
    latent = {"latent_steps": config.latent_steps, "align_weight": config.align_weight,
              "image_weight": config.image_weight, "text_weight": config.text_weight,
              "grounding_weight": config.grounding_weight,
              "evidence_windows_in_training": config.evidence_windows_in_training,
              "prefix_tokens": config.prefix_tokens}
    checkpoints: dict[str, Path] = {}
    metrics: dict[str, Path] = {}

    def run(key: str, stage_config: Any) -> None:
        checkpoints[key], metrics[key] = _train(key, stage_config)

    steps, seed = config.stage_steps, config.run_seed_after_stage1
    run("lare_stage2", _stage_config(
        "stage2", {"path": str(stage1)}, [str(records)], image_root, "lare",
        {"extractor": 3e-4, "semantic_losses": 1e-3}, latent, steps["stage2"], runs / "lare_stage2", config,
        warmup_ratio=0.1, seed=seed, latent_replaces=config.latent_replaces["stage2"]))
    # After stage I every model trains on the reasoning questions alone, with the same learning rates: the
    # rationales themselves keep perception trained (each one names what it sees), so single-hop instructions
    # mixed in would only halve the steps spent on the task.
    lare_lr = {"vision_tower": 1e-4, "projector": 5e-4, "language_model": 1e-3, "extractor": config.extractor_lr,
               "semantic_losses": 1e-3}
    run("lare_stage3", _stage_config(
        "stage3", {"path": str(checkpoints["lare_stage2"])}, [str(records)], image_root,
        "lare", lare_lr, latent, steps["stage3"], runs / "lare_stage3", config, warmup_ratio=0.1,
        seed=seed, latent_replaces=config.latent_replaces["stage3"]))
    run("lare_stage4", _stage_config(
        "stage4", {"path": str(checkpoints["lare_stage3"])}, [str(records)], image_root, "lare",
        lare_lr, latent, steps["stage4"], runs / "lare_stage4", config, warmup_ratio=0.1, seed=seed,
        latent_replaces=config.latent_replaces["stage4"]))
    return checkpoints, metrics


def pretrain_vision_stage(config: DemoConfig, synthetic: Any, run_dir: Path) -> tuple[Path, Path]:
    """Stage 0: build the random tiny model, train its vision side (`vision_pretraining`), save it.

    Returns the saved model directory and the metrics file. A finished stage 0 (the directory exists) is reused;
    the directory is written under a temporary name and renamed, so it is either complete or absent.
    """
    import os
    import shutil

    from lare.data.synthetic import GRID
    from lare.demo.vision_pretraining import VisionPretrainingConfig, pretrain_vision
    from lare.training.config import ModelSpec
    from lare.training.model_loading import build_model

    model_dir, metrics_path = run_dir / "model", run_dir / "metrics.jsonl"
    if (model_dir / "config.json").is_file():
        logger.info("stage 0 already done: %s", model_dir)
        return model_dir, metrics_path
    run_dir.mkdir(parents=True, exist_ok=True)
    spec = ModelSpec(preset="tiny", tokenizer_corpus="synthetic", overrides={
        "latent_steps": config.latent_steps, "prefix_tokens": config.prefix_tokens, "window": config.window,
        "vision_config": {"patch_size": config.patch_size},
        "text_config": {"initializer_range": config.llm_init_std}})
    model, processor = build_model(spec, seed=config.seed)
    records = json.loads(Path(synthetic.train_path).read_text(encoding="utf-8"))
    pretrain_vision(model, processor, records, synthetic.image_root, GRID, VisionPretrainingConfig(
        steps=config.vision_steps, target_scale=config.vision_target_scale,
        position_scale=config.vision_position_scale, seed=config.seed), metrics_path)
    temp = run_dir / "model.tmp"
    shutil.rmtree(temp, ignore_errors=True)
    model.save_pretrained(temp)
    processor.save_pretrained(temp)
    os.replace(temp, model_dir)
    return model_dir, metrics_path


def _family_accuracy(family: str, metrics: dict[str, Any]) -> float:
    """Question-level accuracy of one family's scorer output (POPE: over all splits' questions, not their mean)."""
    if family == "pope":
        splits = [metrics[s] for s in ("random", "popular", "adversarial") if s in metrics]
        return sum(s["accuracy"] * s["n"] for s in splits) / sum(s["n"] for s in splits)
    return metrics["vanilla_accuracy" if family == "mmbench" else "accuracy"]


TYPE_LEVELS = ("category", "l2_category")  # the benchmarks' labels of a question's type, coarse to fine


def type_level(labels_by_level: dict[str, Any]) -> str | None:
    """The first of `TYPE_LEVELS` whose labels (any collection) take more than one value in a family, else None."""
    return next((level for level in TYPE_LEVELS if len(labels_by_level.get(level) or ()) > 1), None)


def accuracy_by_type(family: str, metrics: dict[str, Any]) -> dict[str, float]:
    """Accuracy per question type at the family's `type_level` (MMBench's `category`, MMStar's `l2_category`),
    scored as the family's headline accuracy is; {} for families without one."""
    levels = metrics.get("by_category_vanilla" if family == "mmbench" else "by_category") or {}
    level = type_level(levels)
    return dict(sorted(levels[level].items())) if level else {}


def evaluate(model: Any, processor: Any, method: str, synthetic: Any, out_dir: Path, config: DemoConfig,
             latent_ablation: str = "none") -> MethodScore:
    """Run `method` on every exported test benchmark and score it with the official rules."""
    from lare.data.synthetic import FAMILIES
    from lare.evaluation.benchmarks import get_benchmark
    from lare.evaluation.runner import run_benchmark
    from lare.evaluation.scoring import score_predictions

    by_family: dict[str, dict[str, Any]] = {}
    total_correct = total_n = 0
    token_sum = 0.0
    tokens_known = True
    for family in FAMILIES:
        export = synthetic.exports[family]
        items = get_benchmark(family).load(export.files, export.images)
        suffix = "" if latent_ablation == "none" else f"_{latent_ablation}"
        predictions = run_benchmark(model, processor, items, method, out_dir / f"{family}_{method}{suffix}.jsonl",
                                    batch_size=config.eval_batch_size,
                                    max_new_tokens=config.max_new_tokens[method], latent_ablation=latent_ablation,
                                    seed=config.seed)
        # Every method ends with "The answer is X." (X an option's text, see `answer_by_option_text`); the official
        # rule reads that statement with X turned into its letter (see answer_extraction).
        metrics = score_predictions(family, export.files, predictions, answer_extraction="final_option")
        accuracy = _family_accuracy(family, metrics)
        n = len(items)
        correct = round(accuracy * n)
        by_family[family] = {"accuracy": accuracy, "tokens_correct": metrics["tokens_correct"], "n": n,
                             "by_type": accuracy_by_type(family, metrics), "metrics": metrics}
        total_correct += correct
        total_n += n
        if metrics["tokens_correct"] is None:
            tokens_known = tokens_known and correct == 0
        else:
            token_sum += metrics["tokens_correct"] * correct
    tokens = token_sum / total_correct if tokens_known and total_correct else None
    return MethodScore(accuracy=total_correct / total_n, tokens_correct=tokens, n=total_n, by_family=by_family)


def run_demo(config: DemoConfig) -> DemoResult:
    """The whole demo; resumable (finished training runs and prediction files are reused)."""
    from lare.data.synthetic import generate_synthetic
    from lare.modeling.modeling_lare import LaReForConditionalGeneration
    from lare.processing import LaReProcessor

    start = time.perf_counter()
    out = config.out_dir
    data_dir = out / "data"
    synthetic = generate_synthetic(data_dir, config.n_train, config.n_test, seed=config.seed, overwrite=True)
    joined_train = load_joined(synthetic.train_exports, synthetic.train_path)
    prompted = {method: write_prompted_records(joined_train, method, out / "records" / f"train_{method}.json")
                for method in METHODS}
    checkpoints, metrics_paths = train_all(config, data_dir, prompted, synthetic)

    eval_dir = out / "predictions"
    scores: dict[str, MethodScore] = {}
    ablations: dict[str, MethodScore] = {}
    models = {}
    for method in METHODS:
        model = LaReForConditionalGeneration.from_pretrained(checkpoints[method]).eval()
        processor = LaReProcessor.from_pretrained(checkpoints[method])
        models[method] = (model, processor)
        with torch.inference_mode():
            scores[method] = evaluate(model, processor, method, synthetic, eval_dir, config)
            if method == "lare":
                for ablation in ABLATIONS:
                    ablations[ablation] = evaluate(model, processor, method, synthetic, eval_dir, config, ablation)
    result = DemoResult(out_dir=out, methods=scores, latent_ablations=ablations, metrics_paths=metrics_paths,
                        seed=config.seed, n_test=synthetic.n_test, wall_s=0.0, checkpoints=checkpoints,
                        finetune_seed=config.run_seed_after_stage1)
    result.extras["chance"] = chance_levels(synthetic)

    from lare.demo.report import write_report

    lare_model, lare_processor = models["lare"]
    result.wall_s = time.perf_counter() - start
    write_report(result, config, synthetic, lare_model, lare_processor)
    result.wall_s = time.perf_counter() - start
    (out / "results.json").write_text(json.dumps(results_json(result), indent=2), encoding="utf-8")
    return result


def chance_levels(synthetic: Any) -> dict[str, Any]:
    """Expected accuracy of uniform guessing, overall and per family, on the test split."""
    families = synthetic.families
    total = sum(stats.n_test for stats in families.values())
    overall = sum(stats.chance * stats.n_test for stats in families.values()) / total
    return {"accuracy": overall, "by_family": {name: stats.chance for name, stats in families.items()}}


def results_json(result: DemoResult) -> dict[str, Any]:
    """The `results.json` layout: accuracies as fractions."""

    def brief(score: MethodScore, with_families: bool) -> dict[str, Any]:
        entry: dict[str, Any] = {"accuracy": score.accuracy, "tokens_correct": score.tokens_correct, "n": score.n}
        if with_families:
            entry["by_family"] = {family: {k: v for k, v in data.items() if k != "metrics"}
                                  for family, data in score.by_family.items()}
        return entry

    return {
        "methods": {name: brief(score, True) for name, score in result.methods.items()},
        "latent_ablations": {name: brief(score, True) for name, score in result.latent_ablations.items()},
        "seed": result.seed,
        "finetune_seed": result.finetune_seed,
        "n_test": result.n_test,
        "wall_s": result.wall_s,
        **result.extras,
    }
