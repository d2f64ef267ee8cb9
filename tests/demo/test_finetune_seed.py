"""`DemoConfig.finetune_seed` seeds every run after stage I, and nothing before it."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from lare.demo import run as demo_run
from lare.demo.config import DemoConfig


@pytest.mark.parametrize("seed, finetune_seed, expected", [(0, 7, 7), (3, None, 3)])
def test_runs_after_stage1_use_the_finetune_seed(monkeypatch, tmp_path, seed, finetune_seed, expected):
    seeds: dict[str, int] = {}

    def record_seed(key, stage_config):
        seeds[key] = stage_config.run.seed
        return tmp_path / key, tmp_path / f"{key}.jsonl"

    monkeypatch.setattr(demo_run, "_train", record_seed)
    monkeypatch.setattr(demo_run, "pretrain_vision_stage",
                        lambda config, synthetic, run_dir: (tmp_path / "stage0", tmp_path / "stage0.jsonl"))
    synthetic = SimpleNamespace(image_root=tmp_path, captions_path=tmp_path / "captions.json",
                                instructions_path=tmp_path / "instructions.json")
    prompted = {method: tmp_path / f"train_{method}.json" for method in demo_run.METHODS}
    config = DemoConfig.quick(out_dir=tmp_path, seed=seed, finetune_seed=finetune_seed)

    demo_run.train_all(config, tmp_path, prompted, synthetic)

    assert seeds == {"stage1": seed, "lare_stage2": expected, "lare_stage3": expected, "lare_stage4": expected,
                     "cot": expected, "direct": expected}
