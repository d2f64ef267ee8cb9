"""The non-finite guard: a NaN loss skips the step (weights, optimizer and schedule untouched) and is counted;
too many in a row stop the run with an error naming the step and the loss terms."""

from __future__ import annotations

import math

import pytest
import torch

from lare.training.checkpoint import list_checkpoints, read_trainer_state
from lare.training.loop import train_stage
from lare.training.metrics_log import read_metrics
from lare.training.model_loading import build_model
from lare.training.nonfinite import NonFiniteLossError

from .helpers import tiny_stage, weights


def _poisoned_model(config, bad_calls: set[int]):
    """The stage's model whose forward returns a NaN loss (still on the graph) on the given call numbers."""
    model, processor = build_model(config.model, config.run.seed)
    original = model.forward
    calls = {"n": 0}

    def forward(*args, **kwargs):
        calls["n"] += 1
        output = original(*args, **kwargs)
        if calls["n"] in bad_calls:
            output.loss = output.loss * math.nan
            output.losses = {key: math.nan for key in output.losses}
        return output

    model.forward = forward
    return model, processor


def test_nonfinite_steps_are_skipped_and_counted(synthetic_dir, tmp_path):
    config = tiny_stage(1, synthetic_dir, tmp_path / "run", run__max_steps=5, run__save_every=1,
                        run__max_nonfinite_skips=3)
    model, processor = _poisoned_model(config, bad_calls={2, 3})
    result = train_stage(config, model=model, processor=processor)

    assert result.state.nonfinite_skips == 2 and result.state.consecutive_nonfinite == 0
    rows = read_metrics(result.metrics_path)
    assert [row["skipped"] for row in rows] == [False, True, True, False, False]
    assert math.isnan(rows[1]["ntp"])
    # Skipped steps leave the schedule where it was: steps 2-4 all use the learning rate of step 2.
    assert rows[1]["lr/projector"] == rows[2]["lr/projector"] == rows[3]["lr/projector"] != rows[4]["lr/projector"]
    steps = {read_trainer_state(c).step: weights(c) for c in list_checkpoints(result.output_dir)}
    assert sorted(steps) == [1, 2, 3, 4, 5]
    for step in (2, 3):  # nothing moved during the skipped steps
        assert all(torch.equal(steps[1][k], steps[step][k]) for k in steps[1])
    assert not all(torch.equal(steps[3][k], steps[4][k]) for k in steps[3])
    assert all(bool(torch.isfinite(v).all()) for w in steps.values() for v in w.values())


def test_too_many_consecutive_nonfinite_steps_stop_the_run(synthetic_dir, tmp_path):
    config = tiny_stage(1, synthetic_dir, tmp_path / "run", run__max_steps=6, run__max_nonfinite_skips=3)
    model, processor = _poisoned_model(config, bad_calls={2, 3, 4, 5, 6})
    with pytest.raises(NonFiniteLossError, match=r"3 consecutive steps .* at step 4 \(loss=nan, ntp=nan\)"):
        train_stage(config, model=model, processor=processor)
