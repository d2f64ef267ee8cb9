"""What each stage trains: one optimizer step changes every parameter the stage trains and none it freezes."""

from __future__ import annotations

import pytest
import torch

from lare import LaReConfig, LaReForConditionalGeneration
from lare.training.config import MODULE_GROUPS
from lare.training.loop import train_stage
from lare.training.stages import module_group, optimizer_groups, parameters_by_group, set_trainable

from .helpers import tiny_stage, weights


def test_every_parameter_belongs_to_exactly_one_group():
    model = LaReForConditionalGeneration(LaReConfig.tiny())
    groups = parameters_by_group(model)
    assert all(groups[g] for g in MODULE_GROUPS)
    assert sum(len(v) for v in groups.values()) == len(list(model.parameters()))
    assert module_group("state_layer_logits") == "extractor"
    with pytest.raises(ValueError, match="belongs to no module group"):
        module_group("new_head.weight")


def test_frozen_groups_are_out_of_the_optimizer_and_norms_skip_weight_decay():
    model = LaReForConditionalGeneration(LaReConfig.tiny())
    set_trainable(model, ["projector", "extractor"])
    groups = optimizer_groups(model, {"projector": 1e-3, "extractor": 2e-4}, weight_decay=0.05)
    in_optimizer = {id(p) for g in groups for p in g["params"]}
    for name, parameter in model.named_parameters():
        trains = module_group(name) in ("projector", "extractor")
        assert parameter.requires_grad == trains, name
        assert (id(parameter) in in_optimizer) == trains, name
    by_name = {g["name"]: g for g in groups}
    assert by_name["extractor/no_decay"]["weight_decay"] == 0.0 and by_name["extractor"]["weight_decay"] == 0.05
    no_decay = {id(p) for p in by_name["extractor/no_decay"]["params"]}
    assert id(model.state_layer_logits) in no_decay
    assert id(model.extractor.output_norm.weight) in no_decay
    assert id(model.extractor.state_in.bias) in no_decay
    assert id(model.extractor.state_in.weight) not in no_decay
    assert by_name["projector"]["lr"] == 1e-3 and by_name["extractor"]["lr"] == 2e-4


@pytest.mark.parametrize("stage", [1, 2, 3, 4])
def test_one_step_changes_every_trained_parameter_and_no_frozen_one(stage, synthetic_dir, tmp_path):
    # Batch 4 so that stage III's instruction + reasoning mix holds reasoning samples (which drive the text
    # alignment head and the prefix loss) in its first batch. With AdamW's eps → 0 a step moves every parameter
    # with a non-zero gradient by about lr (lr·sign(g)): at random init some gradients are ~1e-14 (the U-Net's
    # cross-attention query norm, while all latent keys are still nearly equal), and with eps = 1e-8 their
    # update would vanish below float32 resolution, hiding whether the stage wires them into training at all.
    config = tiny_stage(stage, synthetic_dir, tmp_path / "run", run__max_steps=1, run__batch_size=4,
                        optim__eps=1e-30)
    result = train_stage(config)
    initial = _initial_weights(config)
    after = weights(result.checkpoint)
    trained = set(config.trainable_groups)
    unchanged_trained, changed_frozen = [], []
    for name, value in initial.items():
        changed = not torch.equal(value, after[name])
        if module_group(name) in trained and not changed:
            unchanged_trained.append(name)
        if module_group(name) not in trained and changed:
            changed_frozen.append(name)
    assert not unchanged_trained, f"stage {stage}: trained but unchanged: {unchanged_trained[:10]}"
    assert not changed_frozen, f"stage {stage}: frozen but changed: {changed_frozen[:10]}"
    assert {module_group(n) for n in initial} == set(MODULE_GROUPS)


def _initial_weights(config) -> dict[str, torch.Tensor]:
    """The weights the stage started from: the same spec and seed build the same model."""
    from lare.training.model_loading import build_model

    model, _ = build_model(config.model, config.run.seed)
    return {name: p.detach().clone() for name, p in model.named_parameters()}
