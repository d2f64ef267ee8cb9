"""Atomic, resumable training checkpoints.

Layout of `output_dir`:

    step-N/                  a complete checkpoint (never modified after its rename)
        model.safetensors, config.json, generation_config.json      (`save_pretrained`)
        tokenizer / processor files                                  (`processor.save_pretrained`)
        optimizer.pt, scheduler.pt, [scaler.pt]
        rng_state_<rank>.pt  python, numpy, torch (and CUDA) generator states of each process
        trainer_state.json   step, data position, non-finite skip counts, finished flag
        config.yaml          the resolved stage config
    latest                   one line: the name of the newest complete checkpoint
    tmp-step-N/              a checkpoint being written (ignored and removed by the next run)

A checkpoint is written into `tmp-step-N`, every file and the directory are fsynced, then the directory is renamed
to `step-N` (`os.replace`, atomic on POSIX) and `latest` is replaced the same way. A process killed at any moment
leaves either the previous checkpoint or the new one, never a half-written `step-N`.
"""

from __future__ import annotations

import json
import logging
import os
import random
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

logger = logging.getLogger(__name__)

CHECKPOINT_PREFIX = "step-"
TEMP_PREFIX = "tmp-step-"
LATEST_FILE = "latest"
TRAINER_STATE_FILE = "trainer_state.json"
CONFIG_FILE = "config.yaml"


class NonFiniteWeightsError(RuntimeError):
    """The model holds NaN/inf weights; such a model is never written to a checkpoint."""


@dataclass
class TrainerState:
    """Where a run stands: everything besides model/optimizer/scheduler/RNG needed to continue it exactly.

    Attributes:
        stage: the stage name.
        step: optimizer steps taken (skipped non-finite steps included: they consumed their data).
        total_steps: the run's planned length.
        consumed_batches: micro-batches each rank has consumed since the start (the data position).
        epoch, batch_in_epoch: the same position as (epoch, micro-batch within it), for humans.
        global_batch_size: samples per micro-batch over all ranks; resuming requires the same value.
        world_size: processes of the run that wrote the checkpoint.
        nonfinite_skips: steps skipped for a non-finite loss or gradient so far.
        consecutive_nonfinite: how many of the most recent steps were skipped in a row.
        finished: the run reached `total_steps`.
    """

    stage: str
    step: int
    total_steps: int
    consumed_batches: int
    epoch: int
    batch_in_epoch: int
    global_batch_size: int
    world_size: int
    nonfinite_skips: int = 0
    consecutive_nonfinite: int = 0
    finished: bool = False


# --------------------------------------------------------------------------------------------------------------
# RNG state
def capture_rng_state() -> dict[str, Any]:
    """This process's python, numpy, torch and CUDA generator states (as plain types: loads with weights_only)."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": (name, keys.tolist(), pos, has_gauss, cached),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# --------------------------------------------------------------------------------------------------------------
# Writing
def assert_finite_weights(model: nn.Module) -> None:
    """Raise `NonFiniteWeightsError` naming the first parameters that hold NaN or inf."""
    bad = [name for name, p in model.named_parameters() if not bool(torch.isfinite(p).all())]
    if bad:
        raise NonFiniteWeightsError(f"{len(bad)} parameters hold NaN/inf (first: {', '.join(bad[:5])}); "
                                    "refusing to write them to a checkpoint")


def save_checkpoint(
    accelerator: Any,
    output_dir: str | Path,
    state: TrainerState,
    model: nn.Module,
    processor: Any,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    config_yaml: str,
    keep_last: int | None = None,
) -> Path:
    """Write `step-<state.step>` atomically and point `latest` at it. Every rank must call this.

    Args:
        accelerator: the run's `accelerate.Accelerator` (process index, barriers, unwrapping, grad scaler).
        output_dir: the run's directory.
        state: the trainer state to store.
        model: the (possibly wrapped) model.
        processor: saved next to the model so the checkpoint is a usable model directory.
        optimizer, scheduler: their `state_dict()`s are stored.
        config_yaml: the resolved stage config.
        keep_last: delete all but this many newest checkpoints afterwards (None keeps all).

    Raises:
        NonFiniteWeightsError: before anything is written, when a weight is NaN/inf.
    """
    output_dir = Path(output_dir)
    unwrapped = accelerator.unwrap_model(model)
    assert_finite_weights(unwrapped)  # every rank holds the same weights, so every rank raises together
    name = f"{CHECKPOINT_PREFIX}{state.step}"
    temp = output_dir / f"{TEMP_PREFIX}{state.step}"
    final = output_dir / name
    if accelerator.is_main_process:
        output_dir.mkdir(parents=True, exist_ok=True)
        if temp.exists():
            shutil.rmtree(temp)
        temp.mkdir()
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        unwrapped.save_pretrained(temp, safe_serialization=True)
        processor.save_pretrained(temp)
        torch.save(optimizer.state_dict(), temp / "optimizer.pt")
        torch.save(scheduler.state_dict(), temp / "scheduler.pt")
        if accelerator.scaler is not None:
            torch.save(accelerator.scaler.state_dict(), temp / "scaler.pt")
        (temp / TRAINER_STATE_FILE).write_text(json.dumps(asdict(state), indent=2) + "\n", encoding="utf-8")
        (temp / CONFIG_FILE).write_text(config_yaml, encoding="utf-8")
    torch.save(capture_rng_state(), temp / f"rng_state_{accelerator.process_index}.pt")
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        _fsync_tree(temp)
        if final.exists():
            # Re-saving a step (a resumed run that ends where it started): move the old one aside first so
            # that `final` is never a mix of two writes.
            stale = output_dir / f"{TEMP_PREFIX}{state.step}.old"
            os.replace(final, stale)
            shutil.rmtree(stale)
        os.replace(temp, final)
        _fsync_dir(output_dir)
        _write_atomic(output_dir / LATEST_FILE, name + "\n")
        if keep_last is not None:
            _prune(output_dir, keep_last, keep=final)
        logger.info("saved checkpoint %s", final)
    accelerator.wait_for_everyone()
    return final


def _write_atomic(path: Path, text: str) -> None:
    temp = path.with_name(path.name + ".tmp")
    with open(temp, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temp, path)
    _fsync_dir(path.parent)


def _fsync_tree(root: Path) -> None:
    for path in sorted(root.rglob("*"), reverse=True):
        if path.is_file():
            with open(path, "rb") as handle:
                os.fsync(handle.fileno())
        elif path.is_dir():
            _fsync_dir(path)
    _fsync_dir(root)


def _fsync_dir(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _prune(output_dir: Path, keep_last: int, keep: Path) -> None:
    for path in list_checkpoints(output_dir)[:-keep_last]:
        if path != keep:
            shutil.rmtree(path)


# --------------------------------------------------------------------------------------------------------------
# Finding and reading
def _step_of(path: Path) -> int | None:
    suffix = path.name[len(CHECKPOINT_PREFIX):]
    return int(suffix) if path.name.startswith(CHECKPOINT_PREFIX) and suffix.isdigit() else None


def is_checkpoint(path: str | Path) -> bool:
    """A complete checkpoint directory (renamed into place, so it holds its trainer state)."""
    path = Path(path)
    return path.is_dir() and (path / TRAINER_STATE_FILE).is_file() and (path / "model.safetensors").is_file()


def list_checkpoints(output_dir: str | Path) -> list[Path]:
    """Complete checkpoints of a run, oldest first."""
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        return []
    found = [(step, path) for path in output_dir.iterdir() if (step := _step_of(path)) is not None]
    return [path for _, path in sorted(found) if is_checkpoint(path)]


def latest_checkpoint(output_dir: str | Path) -> Path | None:
    """The checkpoint `latest` names, or the newest complete one when the pointer is missing or stale."""
    output_dir = Path(output_dir)
    pointer = output_dir / LATEST_FILE
    if pointer.is_file():
        named = output_dir / pointer.read_text(encoding="utf-8").strip()
        if is_checkpoint(named):
            return named
        logger.warning("%s names %s, which is not a complete checkpoint; using the newest one", pointer, named)
    checkpoints = list_checkpoints(output_dir)
    return checkpoints[-1] if checkpoints else None


def clean_partial_checkpoints(output_dir: str | Path) -> list[Path]:
    """Remove checkpoints interrupted mid-write (`tmp-step-*`); return what was removed."""
    output_dir = Path(output_dir)
    removed = []
    if output_dir.is_dir():
        for path in output_dir.iterdir():
            if path.name.startswith(TEMP_PREFIX) or path.name == LATEST_FILE + ".tmp":
                shutil.rmtree(path) if path.is_dir() else path.unlink()
                removed.append(path)
    if removed:
        logger.warning("removed %d partial checkpoint(s): %s", len(removed), [p.name for p in removed])
    return removed


def resolve_resume(resume: str | None, output_dir: str | Path) -> Path | None:
    """`None` → no resume; "auto" → the run's latest checkpoint (None when there is none yet); a path → that
    checkpoint, or the latest checkpoint of that run directory.

    Raises:
        FileNotFoundError: an explicit path that holds no checkpoint.
    """
    if resume is None:
        return None
    if resume == "auto":
        return latest_checkpoint(output_dir)
    path = Path(resume)
    if is_checkpoint(path):
        return path
    found = latest_checkpoint(path)
    if found is None:
        raise FileNotFoundError(f"--resume {resume}: no complete checkpoint there")
    return found


def read_trainer_state(checkpoint: str | Path) -> TrainerState:
    data = json.loads((Path(checkpoint) / TRAINER_STATE_FILE).read_text(encoding="utf-8"))
    return TrainerState(**data)


def load_training_state(checkpoint: str | Path, accelerator: Any, optimizer: torch.optim.Optimizer,
                        scheduler: Any) -> None:
    """Restore optimizer, scheduler, grad scaler and this rank's RNG states from a checkpoint.

    The model weights come from the checkpoint directory itself (it is a `save_pretrained` directory).
    """
    checkpoint = Path(checkpoint)
    device = accelerator.device
    optimizer.load_state_dict(torch.load(checkpoint / "optimizer.pt", map_location=device, weights_only=True))
    scheduler.load_state_dict(torch.load(checkpoint / "scheduler.pt", weights_only=True))
    scaler_path = checkpoint / "scaler.pt"
    if accelerator.scaler is not None and scaler_path.is_file():
        accelerator.scaler.load_state_dict(torch.load(scaler_path, weights_only=True))
    rng_path = checkpoint / f"rng_state_{accelerator.process_index}.pt"
    if rng_path.is_file():
        restore_rng_state(torch.load(rng_path, weights_only=True))
    else:
        logger.warning("%s has no RNG state for rank %d; its random draws will differ from the original run",
                       checkpoint, accelerator.process_index)
