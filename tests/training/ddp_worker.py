"""Child script for the DDP test (not a test module itself):

    torchrun --standalone --nproc_per_node 2 ddp_worker.py CONFIG_YAML RESULT_JSON

Trains the stage on every rank (gloo on CPU) and records, per rank: the shapes and targets of every InfoNCE
logits matrix the alignment loss built, and whether the trained parameters are identical on all ranks.
Rank 0 writes the JSON result.
"""

from __future__ import annotations

import json
import sys

import torch
import torch.distributed as dist

import lare.losses.alignment as alignment
from lare.training.config import load_stage_config
from lare.training.loop import train_stage


def main(config_path: str, result_path: str) -> None:
    calls = []
    original = alignment.info_nce_logits

    def recording(a, b, temperature):
        logits, targets = original(a, b, temperature)
        calls.append({"local_rows": a.shape[0], "logits": list(logits.shape), "targets": targets.tolist()})
        return logits, targets

    alignment.info_nce_logits = recording  # symmetric_info_nce looks it up in the module at call time
    result = train_stage(load_stage_config(config_path))

    flat = torch.cat([p.detach().flatten() for p in result.model.parameters()])  # [P]
    gathered = [torch.empty_like(flat) for _ in range(dist.get_world_size())]
    dist.all_gather(gathered, flat)
    record = {"rank": dist.get_rank(), "world_size": dist.get_world_size(), "backend": dist.get_backend(),
              "identical_parameters": all(torch.equal(gathered[0], other) for other in gathered),
              "info_nce_calls": calls, "checkpoint": str(result.checkpoint)}
    records = [None] * dist.get_world_size()
    dist.all_gather_object(records, record)
    if dist.get_rank() == 0:
        with open(result_path, "w", encoding="utf-8") as handle:
            json.dump(records, handle)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
