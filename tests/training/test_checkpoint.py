"""Checkpoints: atomic layout, `latest`, partial writes ignored and cleaned, no non-finite weights, RNG states;
and a process killed (SIGKILL) while writing one leaves the previous checkpoint loadable."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from accelerate import Accelerator

from lare import LaReConfig, LaReForConditionalGeneration, LaReProcessor
from lare.training.checkpoint import (
    NonFiniteWeightsError,
    TrainerState,
    capture_rng_state,
    clean_partial_checkpoints,
    latest_checkpoint,
    list_checkpoints,
    read_trainer_state,
    resolve_resume,
    restore_rng_state,
    save_checkpoint,
)

from .helpers import child_env, weights


def _state(step: int) -> TrainerState:
    return TrainerState(stage="t", step=step, total_steps=5, consumed_batches=step, epoch=0, batch_in_epoch=step,
                        global_batch_size=2, world_size=1)


@pytest.fixture(scope="module")
def parts():
    torch.manual_seed(0)
    model = LaReForConditionalGeneration(LaReConfig.tiny())
    optimizer = torch.optim.AdamW(model.projector.parameters(), lr=1e-3)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    return Accelerator(cpu=True), model, LaReProcessor.tiny(), optimizer, scheduler


def test_save_layout_latest_pointer_and_pruning(parts, tmp_path):
    accelerator, model, processor, optimizer, scheduler = parts
    for step in (1, 2, 3):
        path = save_checkpoint(accelerator, tmp_path, _state(step), model, processor, optimizer, scheduler,
                               "name: t\n", keep_last=2)
    assert path == tmp_path / "step-3"
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step-2", "step-3"]
    assert (tmp_path / "latest").read_text().strip() == "step-3"
    files = {p.name for p in path.iterdir()}
    assert {"model.safetensors", "config.json", "optimizer.pt", "scheduler.pt", "rng_state_0.pt",
            "trainer_state.json", "config.yaml", "tokenizer.json"} <= files
    assert read_trainer_state(path) == _state(3)
    loaded = LaReForConditionalGeneration.from_pretrained(path)
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), model.state_dict().values()))
    assert LaReProcessor.from_pretrained(path).num_image_tokens == processor.num_image_tokens


def test_partial_checkpoints_are_ignored_and_cleaned(parts, tmp_path):
    accelerator, model, processor, optimizer, scheduler = parts
    save_checkpoint(accelerator, tmp_path, _state(1), model, processor, optimizer, scheduler, "name: t\n")
    (tmp_path / "tmp-step-2").mkdir()
    (tmp_path / "tmp-step-2" / "model.safetensors").write_bytes(b"half")
    (tmp_path / "step-9").mkdir()  # no trainer state: not a complete checkpoint
    assert resolve_resume("auto", tmp_path) == tmp_path / "step-1"
    (tmp_path / "latest").write_text("step-7\n")  # stale pointer: fall back to the newest complete one
    assert latest_checkpoint(tmp_path) == tmp_path / "step-1"
    assert clean_partial_checkpoints(tmp_path) == [tmp_path / "tmp-step-2"]
    assert resolve_resume(None, tmp_path) is None
    assert resolve_resume(str(tmp_path / "step-1"), "elsewhere") == tmp_path / "step-1"
    with pytest.raises(FileNotFoundError):
        resolve_resume(str(tmp_path / "missing"), tmp_path)


def test_nonfinite_weights_are_never_written(parts, tmp_path):
    accelerator, _, processor, optimizer, scheduler = parts
    model = LaReForConditionalGeneration(LaReConfig.tiny())
    with torch.no_grad():
        model.extractor.glu.weight[0, 0] = float("nan")
    with pytest.raises(NonFiniteWeightsError, match="extractor.glu.weight"):
        save_checkpoint(accelerator, tmp_path, _state(1), model, processor, optimizer, scheduler, "")
    assert list(tmp_path.iterdir()) == []


def test_rng_state_round_trip():
    state = capture_rng_state()
    expected = (random.random(), float(np.random.rand()), float(torch.rand(1)))
    random.random(), np.random.rand(), torch.rand(3)
    restore_rng_state(state)
    assert (random.random(), float(np.random.rand()), float(torch.rand(1))) == expected


def test_kill_during_checkpoint_write_leaves_the_previous_checkpoint_loadable(tmp_path):
    # Two kill points, run side by side: while the files of step 2 are written, and between the directory
    # rename and the `latest` update.
    script = Path(__file__).with_name("checkpoint_writer.py")
    children = {point: subprocess.Popen([sys.executable, str(script), str(tmp_path / point), point],
                                        env=child_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
                for point in ("files", "pointer")}
    deadline = time.monotonic() + 150
    for point, child in children.items():
        while not (tmp_path / point / "blocked").exists():
            assert child.poll() is None, child.stdout.read().decode()
            assert time.monotonic() < deadline, f"the {point} writer never reached its blocking point"
            time.sleep(0.05)
        child.send_signal(signal.SIGKILL)
        child.wait()

    torch.manual_seed(0)
    original = LaReForConditionalGeneration(LaReConfig.tiny()).state_dict()
    for point in children:
        out = tmp_path / point
        found = latest_checkpoint(out)
        assert found == out / "step-1", point
        loaded = LaReForConditionalGeneration.from_pretrained(found).state_dict()
        assert all(torch.equal(loaded[k], original[k]) for k in original), point
        assert read_trainer_state(found).step == 1
    files = tmp_path / "files"
    assert (files / "tmp-step-2" / "model.safetensors").exists()  # killed mid-write, not before it
    assert not (files / "step-2").exists()
    assert clean_partial_checkpoints(files) == [files / "tmp-step-2"]
    assert resolve_resume("auto", files) == files / "step-1"
    # Killed between the rename and the pointer update: step 2 is complete as well and loads too.
    pointer = tmp_path / "pointer"
    assert read_trainer_state(pointer / "step-2").step == 2
    assert weights(pointer / "step-2").keys() == original.keys()
    assert resolve_resume("auto", pointer) == pointer / "step-1"
