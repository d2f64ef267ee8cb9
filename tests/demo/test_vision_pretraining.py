"""Stage 0 of the demo: targets per patch, bad records rejected, only the vision side trained."""

from __future__ import annotations

import json

import pytest
import torch

from lare.data.synthetic import GRID, generate_synthetic
from lare.demo.config import DemoConfig
from lare.demo.vision_pretraining import (
    VisionPretrainingConfig,
    cell_targets,
    pretrain_vision,
    word_embedding,
)


def _record(objects, record_id="r0"):
    return {"id": record_id, "image": "x.png", "scene": {"width": 64, "height": 64, "objects": objects}}


def test_cell_targets_cover_exactly_the_object_cell(tiny_model, tiny_processor):
    obj = {"shape": "circle", "colour": "red", "size": "small", "row": 2, "col": 3}
    targets = cell_targets([_record([obj])], tiny_model, tiny_processor.tokenizer, GRID, scale=2.0)
    side = tiny_model.config.grid_size
    per = side // GRID
    grid = targets[0].view(side, side, -1)  # [side, side, D]
    expected = 2.0 * sum(word_embedding(tiny_model, tiny_processor.tokenizer, w) for w in ("red", "circle", "small"))
    rows, cols = slice(per, 2 * per), slice(2 * per, 3 * per)
    assert torch.allclose(grid[rows, cols], expected.expand(per, per, -1))
    grid[rows, cols] = 0
    assert grid.abs().max() == 0  # every other patch is empty background


def test_position_codes_are_a_row_code_plus_a_column_code(tiny_model, tiny_processor):
    obj = {"shape": "square", "colour": "blue", "size": "large", "row": 4, "col": 1}
    records = [_record([]), _record([obj])]
    plain = cell_targets(records, tiny_model, tiny_processor.tokenizer, GRID, scale=2.0)
    targets = cell_targets(records, tiny_model, tiny_processor.tokenizer, GRID, 2.0, position_scale=3.0, seed=1)
    side = tiny_model.config.grid_size
    per = side // GRID
    codes = (targets - plain).view(2, side, side, -1)[:, ::per, ::per]  # [2, G, G, D]: one patch per cell
    assert torch.allclose(codes[0], codes[1], atol=1e-6)  # the code depends on the cell only, not on what it holds
    # Additive: code(r, c) + code(r', c') == code(r, c') + code(r', c).
    assert torch.allclose(codes[0, 0, 0] + codes[0, 2, 3], codes[0, 0, 3] + codes[0, 2, 0], atol=1e-6)
    assert not torch.allclose(codes[0, 0, 0], codes[0, 1, 0])  # rows differ
    assert not torch.allclose(codes[0, 0, 0], codes[0, 0, 1])  # columns differ
    spread = tiny_model.get_input_embeddings().weight.std()
    assert 2.0 * spread < codes.std() < 6.0 * spread  # two codes of 3× the embeddings' spread, summed
    again = cell_targets(records, tiny_model, tiny_processor.tokenizer, GRID, 2.0, position_scale=3.0, seed=1)
    assert torch.equal(targets, again)
    other = cell_targets(records, tiny_model, tiny_processor.tokenizer, GRID, 2.0, position_scale=3.0, seed=2)
    assert not torch.allclose(targets, other)


def test_bad_scene_records_are_rejected_with_their_id(tiny_model, tiny_processor):
    with pytest.raises(ValueError, match="record 'q7'.*scene"):
        cell_targets([{"id": "q7", "image": "x.png"}], tiny_model, tiny_processor.tokenizer, GRID, 1.0)
    with pytest.raises(ValueError, match="record 'q8'.*'size'"):
        cell_targets([_record([{"shape": "circle", "colour": "red", "row": 1, "col": 1}], "q8")], tiny_model,
                     tiny_processor.tokenizer, GRID, 1.0)
    with pytest.raises(ValueError, match="does not split into 3"):
        cell_targets([_record([])], tiny_model, tiny_processor.tokenizer, 3, 1.0)


def test_pretraining_moves_only_the_vision_side_and_logs_every_step(tiny_model, tiny_processor, tmp_path):
    synthetic = generate_synthetic(tmp_path / "data", 24, 8, seed=0)
    records = json.loads(synthetic.train_path.read_text())
    before = {name: p.detach().clone() for name, p in tiny_model.named_parameters()}
    metrics = tmp_path / "metrics.jsonl"
    losses = pretrain_vision(tiny_model, tiny_processor, records, synthetic.image_root, GRID,
                             VisionPretrainingConfig(steps=6, batch_size=8), metrics)
    assert len(losses) == 6 and all(loss > 0 for loss in losses)
    rows = [json.loads(line) for line in metrics.read_text().splitlines()]
    assert [row["step"] for row in rows] == list(range(1, 7))
    for name, p in tiny_model.named_parameters():
        moved = not torch.equal(p, before[name])
        vision_side = name.startswith(("vision_tower.", "projector."))
        # post_layernorm only shapes CLIP's pooled output, which the patch tokens never pass through.
        if vision_side and "post_layernorm" not in name:
            assert moved, name
        elif not vision_side:
            assert not moved, name


@pytest.mark.parametrize("field, value", [("steps", 0), ("batch_size", 0), ("lr", 0.0), ("target_scale", -1.0),
                                          ("position_scale", -0.5)])
def test_invalid_pretraining_config_names_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        VisionPretrainingConfig(**{field: value})


@pytest.mark.parametrize("field, value", [("vision_steps", 0), ("vision_target_scale", 0.0), ("llm_init_std", -1.0),
                                          ("patch_size", 0), ("window", 0), ("vision_position_scale", -1.0),
                                          ("extractor_lr", 0.0)])
def test_invalid_demo_config_names_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        DemoConfig(**{field: value})
