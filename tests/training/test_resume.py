"""`--resume auto` continues the same trajectory: a run killed with SIGKILL mid-way and resumed ends with the
weights of an uninterrupted run (≤ 1e-6 on CPU; in practice bit-identical)."""

from __future__ import annotations

import signal
import subprocess
import time

from lare.training.checkpoint import latest_checkpoint, read_trainer_state
from lare.training.metrics_log import read_metrics

from .helpers import LARE, child_env, max_abs_diff, run_lare, tiny_stage, weights, write_config


def test_sigkill_mid_run_then_resume_matches_an_uninterrupted_run(synthetic_dir, tmp_path):
    # Stage II: T = 4 and every loss, including the diffusion loss whose noise comes from the RNG state that the
    # checkpoint must restore; 2 micro-batches per step so the data position is not simply the step.
    config = tiny_stage(2, synthetic_dir, tmp_path / "unused", run__max_steps=6, run__save_every=2,
                        optim__grad_accum=2)
    path = write_config(config, tmp_path / "stage2.yaml")
    args = {name: ["--log-level", "WARNING", "train", "--config", str(path), "--output-dir", str(tmp_path / name)]
            for name in ("straight", "killed")}
    straight, killed = (subprocess.Popen([*LARE, *args[name]], cwd=tmp_path, env=child_env(), text=True,
                                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
                        for name in ("straight", "killed"))
    deadline = time.monotonic() + 180
    while not (tmp_path / "killed" / "step-2").exists():
        assert killed.poll() is None, killed.stdout.read()
        assert time.monotonic() < deadline, "the run never wrote step-2"
        time.sleep(0.02)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    interrupted_at = read_trainer_state(latest_checkpoint(tmp_path / "killed")).step
    assert 2 <= interrupted_at < 6, "the kill must land mid-run"

    resumed = run_lare([*args["killed"], "--resume", "auto"], cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert straight.wait(timeout=180) == 0, straight.stdout.read()

    a, b = weights(tmp_path / "straight" / "step-6"), weights(tmp_path / "killed" / "step-6")
    assert max_abs_diff(a, b) <= 1e-6
    rows_a, rows_b = read_metrics(tmp_path / "straight"), read_metrics(tmp_path / "killed")
    assert [r["step"] for r in rows_b] == list(range(1, 7))  # the re-run steps replaced the lost ones
    for term in ("loss", "ntp", "align", "image", "text"):
        assert [r[term] for r in rows_a] == [r[term] for r in rows_b], term
    state = read_trainer_state(tmp_path / "killed" / "step-6")
    assert state.finished and state.consumed_batches == 12
