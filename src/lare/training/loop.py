"""The training loop of one stage, on Accelerate: one process, DDP (`torchrun`, `accelerate launch`) or more.

One optimizer step = `grad_accum` micro-batches per process. Each micro-batch runs `model(**batch)` (the same
KV-cached latent loop as inference, T = the stage's `latent_steps`) and backpropagates `loss / grad_accum`; DDP
synchronises gradients only on the last one. The per-term losses are summed over micro-batches and all-reduced
over processes once per step, so the non-finite guard and the logs see the global value.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from accelerate import Accelerator, DistributedDataParallelKwargs
from torch.utils.data import DataLoader
from tqdm.auto import tqdm
from transformers import get_constant_schedule_with_warmup, get_cosine_schedule_with_warmup

from lare.training.checkpoint import (
    CONFIG_FILE,
    TrainerState,
    clean_partial_checkpoints,
    load_training_state,
    read_trainer_state,
    resolve_resume,
    save_checkpoint,
)
from lare.training.config import ConfigError, ModelSpec, StageConfig
from lare.training.data_loading import build_collator, build_dataset, prepare_synthetic
from lare.training.metrics_log import MetricsLog
from lare.training.model_loading import apply_loss_spec, build_model
from lare.training.nonfinite import NonFiniteGuard
from lare.training.sampler import ResumableBatchSampler
from lare.training.stages import optimizer_groups, set_trainable

logger = logging.getLogger(__name__)

LOSS_TERMS = ("loss", "ntp", "align", "image", "text", "ground")
"""Logged per step: `loss` is the optimised total, the others are the model's `losses` entries."""


@dataclass
class TrainResult:
    """What `train_stage` produced: the final checkpoint (a loadable model directory), the run's state and the
    trained model and processor in memory (unwrapped from DDP)."""

    output_dir: Path
    checkpoint: Path
    state: TrainerState
    metrics_path: Path
    model: Any = None
    processor: Any = None


def resolve_mixed_precision(setting: str) -> str:
    """"auto" → bf16 on CUDA with bf16 support, else fp16 on CUDA, else "no"; explicit values are checked."""
    cuda = torch.cuda.is_available()
    if setting == "auto":
        if not cuda:
            return "no"
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if setting == "fp16" and not cuda:
        raise ConfigError("run.mixed_precision=fp16 needs a CUDA device; use 'no' (or 'bf16') on CPU")
    if setting == "bf16" and cuda and not torch.cuda.is_bf16_supported():
        raise ConfigError("run.mixed_precision=bf16: this GPU has no bf16 support; use 'fp16'")
    return setting


def resolve_trackers(setting: str) -> list[str]:
    """Trackers to hand to Accelerate: "auto" picks tensorboard, else wandb, when installed."""
    if setting == "none":
        return []
    candidates = ["tensorboard", "wandb"] if setting == "auto" else [setting]
    found = [name for name in candidates if importlib.util.find_spec(name) is not None]
    if setting != "auto" and not found:
        raise ConfigError(f"run.log_with={setting}, but the {setting} package is not installed")
    return found[:1]


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested config → dotted scalars (what trackers accept as hyper-parameters)."""
    flat: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{name}."))
        elif isinstance(value, (int, float, str, bool)):
            flat[name] = value
        else:
            flat[name] = str(value)
    return flat


def train_stage(config: StageConfig, resume: str | None = None, model: Any = None, processor: Any = None
                ) -> TrainResult:
    """Run one training stage and return its final checkpoint.

    Args:
        config: the validated stage config.
        resume: None (fresh run), "auto" (continue from the output dir's latest checkpoint when there is one)
            or a checkpoint / run directory. A resumed run continues the same trajectory: weights, optimizer,
            scheduler, RNG states and data position all come from the checkpoint.
        model, processor: an already built model and its processor to train instead of `config.model`
            (ignored when resuming from a checkpoint, which holds its own).

    Raises:
        NonFiniteLossError: after `run.max_nonfinite_skips` consecutive non-finite steps.
        NonFiniteWeightsError: when a checkpoint would hold NaN/inf weights.
    """
    run = config.run
    output_dir = Path(run.output_dir)
    trackers = resolve_trackers(run.log_with)
    accelerator = Accelerator(
        # Accelerate only sets up multi-process CPU training (gloo, e.g. under torchrun) when told it runs on CPU.
        cpu=not torch.accelerator.is_available(),
        mixed_precision=resolve_mixed_precision(run.mixed_precision),
        # CLIP's post_layernorm (and the text-alignment head on batches without reasoning text) gets no gradient.
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)],
        log_with=trackers or None,
        project_dir=str(output_dir),
    )
    world, rank = accelerator.num_processes, accelerator.process_index
    if accelerator.is_main_process:
        output_dir.mkdir(parents=True, exist_ok=True)
        clean_partial_checkpoints(output_dir)
        prepare_synthetic(config.data)
    accelerator.wait_for_everyone()

    checkpoint = resolve_resume(resume, output_dir)
    resumed = read_trainer_state(checkpoint) if checkpoint is not None else None
    if checkpoint is not None:
        logger.info("resuming %s from %s (step %d)", config.name, checkpoint, resumed.step)
        _log_config_changes(checkpoint, config)
        model, processor = build_model(ModelSpec(path=str(checkpoint)), run.seed)
    elif model is None:
        model, processor = build_model(config.model, run.seed)
    elif processor is None:
        raise ValueError("train_stage: a model passed in needs its processor too")
    losses = apply_loss_spec(model, config.loss)
    set_trainable(model, config.trainable_groups)

    rejects = Path(config.data.rejects) if config.data.rejects else output_dir / "rejects.jsonl"
    dataset, _ = build_dataset(config.data, rejects if accelerator.is_main_process else None)
    collator = build_collator(config.data, processor, losses["prefix_tokens"])
    grad_accum = config.optim.grad_accum
    start = resumed.consumed_batches if resumed is not None else 0
    sampler = ResumableBatchSampler(len(dataset), run.batch_size, world, rank, run.seed, start=start)
    total_steps = run.max_steps or max(1, math.ceil(run.epochs * sampler.batches_per_epoch / grad_accum))
    global_batch = run.batch_size * world
    if resumed is not None and resumed.global_batch_size != global_batch:
        raise ValueError(f"{checkpoint} was written with {resumed.global_batch_size} samples per micro-batch "
                         f"over all processes; this run has {global_batch} (batch_size × processes). Resume "
                         "with the same batch size and number of processes to continue the same trajectory.")

    optimizer = torch.optim.AdamW(optimizer_groups(model, config.optim.lr, config.optim.weight_decay),
                                  betas=config.optim.betas, eps=config.optim.eps)
    # Floor, not ceil: a 1-step run (the stage smoke tests) must not spend its only step at lr = 0.
    warmup = int(config.optim.warmup_ratio * total_steps)
    if config.optim.schedule == "cosine":
        scheduler = get_cosine_schedule_with_warmup(optimizer, warmup, total_steps)
    else:
        scheduler = get_constant_schedule_with_warmup(optimizer, warmup)
    # The scheduler and the data loader are not handed to `prepare`: the scheduler is stepped once per applied
    # optimizer step, and the sampler already shards the data per rank at an exact position.
    model, optimizer = accelerator.prepare(model, optimizer)
    if checkpoint is not None:
        load_training_state(checkpoint, accelerator, optimizer, scheduler)
    else:
        # Same init on every rank (seeded above), different noise draws (diffusion ε, t) per rank from here on.
        _seed_everything(run.seed + rank)

    loader = DataLoader(dataset, batch_sampler=sampler, collate_fn=collator, num_workers=config.data.num_workers,
                        # Its own generator: creating the iterator must not consume the global torch RNG.
                        generator=torch.Generator(), pin_memory=accelerator.device.type == "cuda")
    config_yaml = config.to_yaml()
    if accelerator.is_main_process:
        (output_dir / CONFIG_FILE).write_text(config_yaml, encoding="utf-8")
    if trackers:
        accelerator.init_trackers(config.name, config=_flatten(config.to_dict()))

    step = resumed.step if resumed is not None else 0
    state = resumed or TrainerState(stage=config.name, step=0, total_steps=total_steps, consumed_batches=0,
                                    epoch=0, batch_in_epoch=0, global_batch_size=global_batch, world_size=world)
    guard = NonFiniteGuard(run.max_nonfinite_skips, state.nonfinite_skips, state.consecutive_nonfinite)
    metrics = MetricsLog(output_dir, resume_step=step) if accelerator.is_main_process else None
    logger.info("%s: %d steps of %d samples (%d per process × %d processes × %d accumulation), T=%d, λ=%s; "
                "%d training samples", config.name, total_steps, global_batch * grad_accum, run.batch_size, world,
                grad_accum, losses["latent_steps"],
                {k: v for k, v in losses.items() if k.endswith("_weight")}, len(dataset))

    def checkpoint_now() -> Path:
        state.step, state.total_steps, state.consumed_batches = step, total_steps, consumed
        state.epoch, state.batch_in_epoch = sampler.position(consumed)
        state.nonfinite_skips, state.consecutive_nonfinite = guard.total, guard.consecutive
        state.finished, state.world_size = step >= total_steps, world
        return save_checkpoint(accelerator, output_dir, state, model, processor, optimizer, scheduler,
                               config_yaml, run.keep_last)

    trainable = [p for p in model.parameters() if p.requires_grad]
    max_norm = config.optim.grad_clip if config.optim.grad_clip is not None else math.inf
    progress = tqdm(total=total_steps, initial=step, desc=config.name, disable=not accelerator.is_local_main_process,
                    dynamic_ncols=True)
    batches = iter(loader)
    consumed = start
    final = checkpoint if (resumed is not None and resumed.finished and step >= total_steps) else None
    model.train()
    while step < total_steps:
        started = time.perf_counter()
        terms = _forward_backward(model, batches, accelerator, grad_accum, losses["latent_steps"])
        consumed += grad_accum
        # The learning rate this step uses (the scheduler moves it on after the step).
        lrs = {f"lr/{group['name']}": group["lr"] for group in optimizer.param_groups
               if not group["name"].endswith("/no_decay")}
        skipped, grad_norm = _apply_step(accelerator, optimizer, scheduler, trainable, max_norm, guard, terms,
                                         step + 1)
        step += 1

        elapsed = time.perf_counter() - started
        row = {"step": step, "epoch": consumed / sampler.batches_per_epoch, **terms, "grad_norm": grad_norm,
               **lrs, "samples_per_s": global_batch * grad_accum / elapsed, "skipped": skipped}
        if metrics is not None:
            metrics.append(row)
            progress.set_postfix(loss=f"{terms.get('loss', math.nan):.4f}",
                                 samples_s=f"{row['samples_per_s']:.1f}", refresh=False)
            progress.update(1)
        if trackers:
            accelerator.log({k: v for k, v in row.items() if k != "skipped"}, step=step)
        if step == total_steps or (run.save_every and step % run.save_every == 0):
            final = checkpoint_now()
    progress.close()
    if final is None:
        # Resumed at the very end of an unfinished run (its length was raised to the checkpoint's step).
        final = checkpoint_now()
    if trackers:
        accelerator.end_training()
    del batches
    return TrainResult(output_dir=output_dir, checkpoint=final, state=state,
                       metrics_path=output_dir / "metrics.jsonl", model=accelerator.unwrap_model(model),
                       processor=processor)


def _forward_backward(model: Any, batches: Any, accelerator: Accelerator, grad_accum: int, latent_steps: int
                      ) -> dict[str, float]:
    """Run `grad_accum` micro-batches (forward + backward of loss / grad_accum); return each loss term averaged
    over micro-batches and processes (one all-reduce)."""
    sums = torch.zeros(len(LOSS_TERMS), dtype=torch.float64)  # [K] local sums over micro-batches
    counts = torch.zeros(len(LOSS_TERMS), dtype=torch.float64)  # [K]
    for micro in range(grad_accum):
        batch = {key: value.to(accelerator.device) for key, value in next(batches).items()}
        # DDP all-reduces gradients only on the last micro-batch of the step.
        with contextlib.nullcontext() if micro == grad_accum - 1 else accelerator.no_sync(model):
            output = model(**batch, latent_steps=latent_steps)
            # Backward runs even on a non-finite loss (its gradients are discarded afterwards): every DDP rank
            # must take part in the same all-reduces, and no rank knows yet what the others computed.
            accelerator.backward(output.loss / grad_accum)
        values = {"loss": float(output.loss.detach()), **output.losses}
        for index, term in enumerate(LOSS_TERMS):
            if term in values:
                sums[index] += values[term]
                counts[index] += 1
    reduced = accelerator.reduce(torch.cat([sums, counts]).to(accelerator.device), reduction="sum").cpu()  # [2K]
    sums, counts = reduced[: len(LOSS_TERMS)], reduced[len(LOSS_TERMS):]
    # A NaN/inf on any rank or micro-batch makes the term non-finite here, on every rank alike.
    return {term: float(sums[i] / counts[i]) for i, term in enumerate(LOSS_TERMS) if counts[i] > 0}


def _apply_step(accelerator: Accelerator, optimizer: Any, scheduler: Any, trainable: list[torch.Tensor],
                max_norm: float, guard: NonFiniteGuard, terms: dict[str, float], step: int) -> tuple[bool, float]:
    """Clip and apply the accumulated gradients, or discard them when the loss or the gradient is non-finite.

    Returns (skipped, gradient norm before clipping). Raises `NonFiniteLossError` via the guard.
    """
    if not guard.finite(terms):
        optimizer.zero_grad(set_to_none=True)
        guard.skip(step, terms, "loss")
        return True, math.nan
    grad_norm = float(accelerator.clip_grad_norm_(trainable, max_norm))
    if not math.isfinite(grad_norm) and accelerator.scaler is None:
        optimizer.zero_grad(set_to_none=True)
        guard.skip(step, {**terms, "grad_norm": grad_norm}, "gradient")
        return True, grad_norm
    # With fp16 an overflowing gradient is the grad scaler's business: it skips the update and lowers the scale.
    optimizer.step()
    if not optimizer.step_was_skipped:
        scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    guard.ok()
    return False, grad_norm


def _log_config_changes(checkpoint: Path, config: StageConfig) -> None:
    saved_path = checkpoint / CONFIG_FILE
    if not saved_path.is_file():
        return
    saved = _flatten(yaml.safe_load(saved_path.read_text(encoding="utf-8")) or {})
    current = _flatten(config.to_dict())
    changed = sorted(key for key in saved.keys() | current.keys() if saved.get(key) != current.get(key))
    if changed:
        logger.warning("resuming with a config that differs from the checkpoint's in: %s", ", ".join(changed))
