"""Stage configs: every shipped YAML parses, stages train the right groups, errors name the dotted key."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from lare.training.config import (
    ConfigError,
    StageConfig,
    load_pipeline_config,
    load_stage_config,
    parse_override_args,
)
from lare import LaReConfig, LaReForConditionalGeneration
from lare.training.loop import resolve_mixed_precision, resolve_trackers
from lare.training.pipeline import pipeline_stage_configs

from .helpers import PAPER_CONFIGS, TINY_CONFIGS

# What each stage trains (DESIGN §4 / LARE-METHOD.md training pipeline table).
EXPECTED_GROUPS = {
    1: ["projector"],
    2: ["extractor", "semantic_losses"],
    3: ["projector", "language_model", "extractor", "semantic_losses"],
    4: ["projector", "language_model", "extractor", "semantic_losses"],
}


@pytest.mark.parametrize("root", [PAPER_CONFIGS, TINY_CONFIGS], ids=["paper", "tiny"])
@pytest.mark.parametrize("stage", [1, 2, 3, 4])
def test_shipped_stage_configs_parse_and_train_the_stage_groups(root, stage):
    config = load_stage_config(root / f"stage{stage}.yaml")
    assert config.trainable_groups == EXPECTED_GROUPS[stage]
    assert "vision_tower" not in config.trainable_groups
    assert config.optim.weight_decay == 0.05
    assert config.optim.schedule == "cosine"
    if stage == 1:
        assert config.loss.latent_steps == 0
    else:
        assert config.loss.latent_steps == 4
        assert min(config.loss.align_weight, config.loss.image_weight, config.loss.text_weight) > 0


@pytest.mark.parametrize("root", [PAPER_CONFIGS, TINY_CONFIGS], ids=["paper", "tiny"])
def test_shipped_pipelines_chain_the_four_stages(root):
    pipeline, base_dir = load_pipeline_config(root / "pipeline.yaml")
    configs = pipeline_stage_configs(pipeline, base_dir, {"run.max_steps": 3})
    assert [c.trainable_groups for c in configs] == [EXPECTED_GROUPS[s] for s in (1, 2, 3, 4)]
    assert all(c.run.max_steps == 3 for c in configs)
    assert [c.run.output_dir for c in configs] == [f"{pipeline.output_dir}/{c.name}" for c in configs]


def _minimal() -> dict:
    return {"name": "s", "model": {"preset": "tiny"}, "data": {"records": ["r.json"]},
            "optim": {"lr": {"projector": 1e-3}}, "run": {"output_dir": "out"}}


def test_grounding_settings_reach_the_model_config():
    from lare.training.model_loading import apply_loss_spec

    config = StageConfig.from_dict(_minimal()).with_overrides(
        {"loss.grounding_weight": 0.5, "loss.evidence_windows_in_training": True})
    model = LaReForConditionalGeneration(LaReConfig.tiny())
    resolved = apply_loss_spec(model, config.loss)
    assert model.config.grounding_weight == 0.5 and model.config.evidence_windows_in_training is True
    assert resolved["grounding_weight"] == 0.5 and resolved["evidence_windows_in_training"] is True


def test_round_trip_and_dotted_overrides():
    config = StageConfig.from_dict(_minimal())
    # YAML 1.1 reads 1e-3 (no dot) as a string: it must still become the number 0.001.
    changed = config.with_overrides({"optim.lr.extractor": "1e-3", "run.max_steps": 7, "loss.text_weight": 0})
    assert changed.optim.lr == {"projector": 1e-3, "extractor": 1e-3}
    assert changed.run.max_steps == 7 and changed.loss.text_weight == 0.0
    assert changed.trainable_groups == ["projector", "extractor"]
    assert StageConfig.from_dict(changed.to_dict()) == changed
    assert changed.data.records[0].path == "r.json"


@pytest.mark.parametrize("overrides, message", [
    ({"optim.lrr": 1}, "optim.lrr: unknown key"),
    ({"run.batchsize": 1}, "run.batchsize: unknown key"),
    ({"optim.lr.projetor": 1e-3}, "optim.lr.projetor: unknown module group"),
    ({"run.max_steps": "ten"}, "run.max_steps: expected an integer"),
    ({"run.max_steps": 0}, "run.max_steps must be >= 1"),
    ({"data.target": "answer"}, "data.target: must be one of"),
    ({"run.mixed_precision": "fp8"}, "run.mixed_precision: must be one of"),
    ({"model.path": "somewhere"}, "model: give exactly one of preset, path, from_backbones"),
    ({"optim.betas": [0.9]}, "optim.betas: expected a list of 2 values"),
    ({"loss.align_weight": -1}, "loss.align_weight must be a finite number >= 0"),
    ({"loss.grounding_weight": -1}, "loss.grounding_weight must be a finite number >= 0"),
    ({"loss.evidence_windows_in_training": "maybe"}, "loss.evidence_windows_in_training: expected true or false"),
])
def test_bad_values_are_errors_naming_the_key(overrides, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace("[", r"\[")):
        StageConfig.from_dict(_minimal()).with_overrides(overrides)


def test_missing_required_key_is_named():
    data = _minimal()
    del data["optim"]
    with pytest.raises(ConfigError, match="^optim: required"):
        StageConfig.from_dict(data)


def test_parse_override_args():
    parsed = parse_override_args(["--optim.lr.projector=1e-3", "--run.seed", "3", "--data.rejects=null",
                                  "--optim.betas=[0.9, 0.95]"])
    assert parsed == {"optim.lr.projector": "1e-3", "run.seed": 3, "data.rejects": None,
                      "optim.betas": [0.9, 0.95]}
    with pytest.raises(ConfigError, match="needs a value"):
        parse_override_args(["--run.seed"])
    with pytest.raises(ConfigError, match="dotted key"):
        parse_override_args(["--seed=3"])


def test_device_dependent_settings_fail_clearly_where_unsupported():
    assert resolve_trackers("none") == []
    if not torch.cuda.is_available():
        assert resolve_mixed_precision("auto") == "no"
        with pytest.raises(ConfigError, match="fp16 needs a CUDA device"):
            resolve_mixed_precision("fp16")
    else:
        assert resolve_mixed_precision("auto") in ("bf16", "fp16")
    if importlib.util.find_spec("tensorboard") is None:
        with pytest.raises(ConfigError, match="tensorboard package is not installed"):
            resolve_trackers("tensorboard")
    else:
        assert resolve_trackers("auto") == ["tensorboard"]
