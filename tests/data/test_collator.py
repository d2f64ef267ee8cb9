"""lare.data.collate / lare.data.dataset: padding sides, target modes, rationale tokens, real synthetic batches."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from lare.data.collate import IGNORE_INDEX, LaReCollator
from lare.data.dataset import LaReDataset, Sample
from lare.data.records import load_records

RATIONALE = "Find the red object. It is in row 1, column 2. It is a small red circle. Option B is circle."


def _samples() -> list[Sample]:
    image = Image.new("RGB", (64, 64), (245, 245, 240))
    reasoning = Sample(id="r", image=image, question="<image>\nWhat shape is the red object?\nA. square\nB. circle",
                       target=f"{RATIONALE} The answer is B.", rationale=RATIONALE, answer="B", family="mmbench")
    caption = Sample(id="c", image=image, question="<image>\nDescribe the image.",
                     target="There are 3 objects. A small red circle is in row 1, column 2.")
    return [reasoning, caption]


def _ids(processor, text: str) -> list[int]:
    return processor.tokenizer(text, add_special_tokens=False)["input_ids"]


def _target(batch, row: int) -> list[int]:
    labels = batch["labels"][row]
    return labels[labels != IGNORE_INDEX].tolist()


def test_prompts_left_padded_labels_right_padded(tiny_processor):
    samples = _samples()
    batch = LaReCollator(tiny_processor, target="cot")(samples)
    tokenizer = tiny_processor.tokenizer

    prompts = [_ids(tiny_processor, tiny_processor.format_prompt(s.question)) for s in samples]
    assert batch["input_ids"].shape == batch["attention_mask"].shape == (2, max(map(len, prompts)))
    for row, prompt in enumerate(prompts):
        pad = batch["input_ids"].shape[1] - len(prompt)
        assert batch["input_ids"][row, pad:].tolist() == prompt
        assert batch["attention_mask"][row].tolist() == [0] * pad + [1] * len(prompt)
        assert batch["input_ids"][row, :pad].eq(tokenizer.pad_token_id).all()
    assert batch["attention_mask"][:, -1].eq(1).all()  # left padding: every prompt ends at the last column
    assert prompts[0].count(tiny_processor.image_token_id) == tiny_processor.num_image_tokens

    targets = [_target(batch, row) for row in range(2)]
    for row, target in enumerate(targets):
        assert batch["labels"][row, : len(target)].tolist() == target  # right padding: targets start at column 0
        assert target[-1] == tokenizer.eos_token_id
    assert batch["pixel_values"].shape == (2, 3, 64, 64)


def test_target_modes(tiny_processor):
    reasoning, caption = _samples()
    eos = tiny_processor.tokenizer.eos_token_id
    rationale = _ids(tiny_processor, RATIONALE)
    answer_after_rationale = _ids(tiny_processor, " The answer is B.")
    answer_alone = _ids(tiny_processor, "The answer is B.")

    def target(**kwargs):
        return _target(LaReCollator(tiny_processor, **kwargs)([reasoning, caption]), 0)

    assert target(target="cot") == rationale + answer_after_rationale + [eos]
    assert tiny_processor.tokenizer.decode(target(target="cot")[:-1]) == f"{RATIONALE} The answer is B."
    assert target(target="direct") == answer_alone + [eos]
    assert target(target="lare", latent_replaces="all") == answer_alone + [eos]
    assert target(target="lare", latent_replaces="none", prefix_tokens=8) == target(target="cot")
    assert len(rationale) > 8
    assert target(target="lare", prefix_tokens=8) == rationale[8:] + answer_after_rationale + [eos]
    # A prefix longer than the rationale leaves the answer alone.
    assert target(target="lare", prefix_tokens=10_000) == answer_after_rationale + [eos]
    assert target(target="cot", max_target_tokens=5) == rationale[:5]

    # Without a rationale the gpt turn is the target in every mode.
    for mode in ("cot", "direct", "lare"):
        batch = LaReCollator(tiny_processor, target=mode)([reasoning, caption])
        assert _target(batch, 1) == _ids(tiny_processor, caption.target) + [eos]


def test_rationale_tokens(tiny_processor):
    batch = LaReCollator(tiny_processor)(_samples())
    rationale = _ids(tiny_processor, RATIONALE)
    assert batch["rationale_ids"].shape == batch["rationale_mask"].shape == (2, len(rationale))
    assert batch["rationale_ids"][0].tolist() == rationale
    assert batch["rationale_mask"][0].eq(1).all()
    assert batch["rationale_mask"][1].eq(0).all()  # the caption has no rationale
    assert batch["rationale_ids"][1].eq(tiny_processor.tokenizer.pad_token_id).all()


def test_text_only_sample_gets_no_image_tokens(tiny_processor):
    text_only = Sample(id="t", image=None, question="What is two plus two?", target="Four.")
    batch = LaReCollator(tiny_processor)([text_only, _samples()[0]])
    assert not batch["input_ids"][0].eq(tiny_processor.image_token_id).any()
    assert batch["input_ids"][1].eq(tiny_processor.image_token_id).sum() == tiny_processor.num_image_tokens
    assert batch["pixel_values"].shape[0] == 2


@pytest.mark.parametrize("kwargs", [{"target": "latent"}, {"latent_replaces": "some"}, {"prefix_tokens": -1},
                                    {"max_target_tokens": 0}])
def test_invalid_settings_are_rejected(tiny_processor, kwargs):
    with pytest.raises(ValueError):
        LaReCollator(tiny_processor, **kwargs)


def test_synthetic_records_through_dataset_and_collator(tiny_processor, synthetic):
    records, _ = load_records(synthetic.train_path, synthetic.image_root, on_bad="raise")
    dataset = LaReDataset(records, synthetic.image_root)
    assert len(dataset) == 40
    sample = dataset[0]
    assert sample.image.mode == "RGB" and sample.image.size == (64, 64)
    assert sample.rationale == records[0].rationale and sample.boxes == records[0].boxes

    loader = torch.utils.data.DataLoader(dataset, batch_size=8, collate_fn=LaReCollator(tiny_processor))
    batches = list(loader)
    assert len(batches) == 5
    for batch in batches:
        assert batch["pixel_values"].shape == (8, 3, 64, 64)
        assert batch["rationale_mask"].sum(-1).gt(0).all()  # every benchmark question has a rationale
        assert (batch["labels"] != IGNORE_INDEX).sum(-1).gt(1).all()
