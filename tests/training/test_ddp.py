"""DDP on CPU: `torchrun --standalone --nproc_per_node 2` (gloo), 3 steps.

Checks: the parameters are identical on both ranks; every InfoNCE logits matrix spans the global batch; the
per-step losses match a single-process run over the same global batch (the sampler gives rank r the r-th half
of the single process's batch). Stated tolerance: 1e-4 absolute on every loss term at every step and on the
final weights (measured: losses differ by ≤ 1.2e-6, weights by ~1e-5 after 3 steps: Adam divides by √v, which
magnifies the float rounding of the gradient all-reduce for parameters with tiny gradients).

For the losses to be comparable, per-rank token means must average to the global token mean, so every sample
supervises the same number of tokens: `direct` targets ("The answer is X." + eos, 6 tokens on this corpus) and
rationales longer than P = 8. The image-reconstruction term is off (λ2 = 0): its diffusion noise and timesteps
are drawn per rank, so a 2-process run cannot draw the same noise as one process over the whole batch.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from lare.training.loop import train_stage
from lare.training.metrics_log import read_metrics

from .helpers import child_env, max_abs_diff, tiny_stage, weights, write_config

TOLERANCE = 1e-4
WORLD, PER_RANK = 2, 2


def test_ddp_two_processes_match_one_process_over_the_global_batch(synthetic_dir, tmp_path):
    settings = dict(run__max_steps=3, data__target="direct", loss__image_weight=0.0, loss__prefix_tokens=8)
    ddp_config = tiny_stage(4, synthetic_dir, tmp_path / "ddp", run__batch_size=PER_RANK, **settings)
    result_path = tmp_path / "ddp.json"
    worker = Path(__file__).with_name("ddp_worker.py")
    ddp = subprocess.Popen(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={WORLD}", str(worker),
         str(write_config(ddp_config, tmp_path / "ddp.yaml")), str(result_path)],
        cwd=tmp_path, env=child_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    # The single-process reference runs meanwhile, in this process, over the same global batches.
    single = train_stage(tiny_stage(4, synthetic_dir, tmp_path / "single", run__batch_size=WORLD * PER_RANK,
                                    **settings))
    output, _ = ddp.communicate(timeout=240)
    assert ddp.returncode == 0, output[-5000:]

    records = json.loads(result_path.read_text())
    assert [r["rank"] for r in records] == [0, 1] and all(r["world_size"] == WORLD for r in records)
    assert records[0]["backend"] == "gloo"
    assert all(r["identical_parameters"] for r in records)

    # Alignment: per step, InfoNCE(z, vision) and InfoNCE(z, text), each in both directions.
    for record in records:
        calls = record["info_nce_calls"]
        assert len(calls) == 3 * 4
        for call in calls:
            assert call["local_rows"] == PER_RANK
            assert call["logits"] == [PER_RANK, WORLD * PER_RANK]  # local queries × global keys
            offset = record["rank"] * PER_RANK
            assert call["targets"] == list(range(offset, offset + PER_RANK))

    ddp_rows, single_rows = read_metrics(tmp_path / "ddp"), read_metrics(single.metrics_path)
    assert len(ddp_rows) == len(single_rows) == 3
    for ddp_row, single_row in zip(ddp_rows, single_rows):
        for term in ("loss", "ntp", "align", "text"):
            assert abs(ddp_row[term] - single_row[term]) <= TOLERANCE, (ddp_row["step"], term, ddp_row[term],
                                                                        single_row[term])
        assert "image" not in ddp_row
    assert max_abs_diff(weights(Path(records[0]["checkpoint"])), weights(single.checkpoint)) <= TOLERANCE
