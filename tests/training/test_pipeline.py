"""`lare train`: one stage with the fixed flags and dotted overrides, and the stage I–IV pipeline (chained
checkpoints, finished stages skipped on a re-run)."""

from __future__ import annotations

import shutil

import yaml

from lare.cli import main
from lare.training.checkpoint import latest_checkpoint, list_checkpoints, read_trainer_state
from lare.training.metrics_log import read_metrics

from .helpers import tiny_stage, weights, write_config


def test_train_one_stage_with_flags_and_overrides(synthetic_dir, tmp_path, capsys):
    config = write_config(tiny_stage(1, synthetic_dir, tmp_path / "ignored"), tmp_path / "stage1.yaml")
    out = tmp_path / "run"
    code = main(["--log-level", "WARNING", "train", "--config", str(config), "--max-steps", "2", "--output-dir",
                 str(out), "--save-every", "1", "--seed", "3", "--optim.lr.projector=5e-3", "--run.keep_last", "1"])
    assert code == 0
    assert [c.name for c in list_checkpoints(out)] == ["step-2"]  # keep_last=1 pruned step-1
    resolved = yaml.safe_load((out / "step-2" / "config.yaml").read_text())
    assert resolved["run"]["seed"] == 3 and resolved["optim"]["lr"] == {"projector": 5e-3}
    rows = read_metrics(out)
    assert [r["step"] for r in rows] == [1, 2] and rows[0]["lr/projector"] == 5e-3
    assert {"loss", "ntp", "grad_norm", "samples_per_s"} <= rows[0].keys()
    printed = capsys.readouterr().out
    assert f"final checkpoint {out / 'step-2'}" in printed and "ntp" in printed

    assert main(["train", "--config", str(config), "--optim.lr.projetor=1e-3"]) == 2
    assert "optim.lr.projetor: unknown module group" in capsys.readouterr().err


def test_pipeline_chains_stages_and_skips_finished_ones(synthetic_dir, tmp_path):
    stages = [write_config(tiny_stage(s, synthetic_dir, tmp_path / "ignored"), tmp_path / f"stage{s}.yaml")
              for s in (1, 2, 3, 4)]
    pipeline = tmp_path / "pipeline.yaml"
    pipeline.write_text(yaml.safe_dump({"output_dir": "runs", "stages": [p.name for p in stages]}))
    args = ["--log-level", "WARNING", "train", "--pipeline", str(pipeline), "--max-steps", "1",
            "--output-dir", str(tmp_path / "runs")]
    assert main(args) == 0

    finals = [latest_checkpoint(tmp_path / "runs" / f"stage{s}") for s in (1, 2, 3, 4)]
    assert all(read_trainer_state(f).finished for f in finals)
    for previous, final in zip(finals, finals[1:]):
        resolved = yaml.safe_load((final / "config.yaml").read_text())
        assert resolved["model"] == {"preset": None, "path": str(previous), "from_backbones": None, "overrides": {},
                                     "tokenizer_corpus": "synthetic"}
    # Stage II freezes the projector that stage I trained: it must hold exactly stage I's result.
    stage1, stage2 = weights(finals[0]), weights(finals[1])
    projector = [k for k in stage1 if k.startswith("projector.")]
    assert projector and all((stage1[k] == stage2[k]).all() for k in projector)
    assert any(not (stage1[k] == stage2[k]).all() for k in stage1 if k.startswith("extractor."))

    # A re-run skips the finished stages; after deleting stage IV only that one trains again.
    stamps = {f: (f / "model.safetensors").stat().st_mtime_ns for f in finals}
    assert main(args) == 0
    assert all((f / "model.safetensors").stat().st_mtime_ns == stamps[f] for f in finals)
    shutil.rmtree(tmp_path / "runs" / "stage4")
    assert main(args) == 0
    assert all((f / "model.safetensors").stat().st_mtime_ns == stamps[f] for f in finals[:3])
    assert read_trainer_state(latest_checkpoint(tmp_path / "runs" / "stage4")).finished
