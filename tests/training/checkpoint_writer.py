"""Child process for the kill-during-checkpoint-write test (not a test module itself).

    python checkpoint_writer.py OUTPUT_DIR {files|pointer}

Writes a complete checkpoint `step-1`, then starts `step-2` and blocks forever at the chosen point, after
touching `OUTPUT_DIR/blocked`: "files" blocks while the checkpoint's files are being written (model weights
already in `tmp-step-2`), "pointer" after `step-2` is renamed into place but before `latest` is updated. The
test kills this process with SIGKILL there.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch
from accelerate import Accelerator

import lare.training.checkpoint as checkpoint
from lare import LaReConfig, LaReForConditionalGeneration, LaReProcessor
from lare.training.checkpoint import TrainerState, save_checkpoint


def main(output_dir: Path, point: str) -> None:
    torch.manual_seed(0)
    model = LaReForConditionalGeneration(LaReConfig.tiny())
    processor = LaReProcessor.tiny()
    optimizer = torch.optim.AdamW(model.projector.parameters(), lr=1e-3)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    accelerator = Accelerator(cpu=True)

    def state(step: int) -> TrainerState:
        return TrainerState(stage="kill", step=step, total_steps=10, consumed_batches=step, epoch=0,
                            batch_in_epoch=step, global_batch_size=1, world_size=1)

    save_checkpoint(accelerator, output_dir, state(1), model, processor, optimizer, scheduler, "name: kill\n")
    with torch.no_grad():
        model.projector.linear_1.weight.add_(1.0)  # step 2 holds different weights

    def block(*args, **kwargs):
        (output_dir / "blocked").touch()
        while True:
            time.sleep(1)

    if point == "files":
        checkpoint.torch.save = block  # the first torch.save of step 2 (optimizer.pt), after the weights
    else:
        checkpoint._write_atomic = block  # the `latest` pointer update, after the directory rename
    save_checkpoint(accelerator, output_dir, state(2), model, processor, optimizer, scheduler, "name: kill\n")


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2])
