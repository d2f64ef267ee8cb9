"""Public API: save/load, from_backbones, ablation switches, validation errors."""

from __future__ import annotations

import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers, trainers
from transformers import CLIPImageProcessorPil, CLIPVisionConfig, CLIPVisionModel, PreTrainedTokenizerFast, Qwen2Config, \
    Qwen2ForCausalLM

from lare import LaReConfig, LaReForConditionalGeneration, LaReProcessor


def _first_logits(model, batch, **kwargs):
    with torch.no_grad():
        out = model.generate(**batch, max_new_tokens=1, do_sample=False, output_logits=True,
                             return_dict_in_generate=True, **kwargs)
    return out.logits[0]


def test_save_then_load_reproduces_outputs(tiny_model, tiny_processor, tiny_batch, tmp_path):
    batch, _, _ = tiny_batch
    tiny_model.save_pretrained(tmp_path / "model")
    tiny_processor.save_pretrained(tmp_path / "model")
    assert (tmp_path / "model" / "model.safetensors").exists()
    loaded = LaReForConditionalGeneration.from_pretrained(tmp_path / "model").eval()
    processor = LaReProcessor.from_pretrained(tmp_path / "model")
    assert loaded.language_model.config._attn_implementation == "lare_sdpa"
    reloaded_batch = processor(images=tiny_batch[1], text=tiny_batch[2], return_tensors="pt")
    assert torch.equal(reloaded_batch["input_ids"], batch["input_ids"])
    with torch.no_grad():
        a = tiny_model.generate(**batch, max_new_tokens=6, do_sample=False, return_dict_in_generate=True)
        b = loaded.generate(**reloaded_batch, max_new_tokens=6, do_sample=False, return_dict_in_generate=True)
    assert torch.equal(a.latents, b.latents)
    assert torch.equal(a.sequences, b.sequences)
    assert torch.equal(a.windows, b.windows)


def _save_tiny_backbones(root):
    vision = CLIPVisionModel(CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                              num_attention_heads=4, image_size=32, patch_size=8))
    vision.save_pretrained(root / "clip")
    CLIPImageProcessorPil(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(
        root / "clip")
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.train_from_iterator(["what is in the image", "a red circle"] * 4, trainer=trainers.BpeTrainer(
        vocab_size=300, special_tokens=["<|endoftext|>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<|endoftext|>",
                                        chat_template="{% for m in messages %}{{ m['content'] }}\n{% endfor %}")
    tokenizer.save_pretrained(root / "qwen")
    llm = Qwen2ForCausalLM(Qwen2Config(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128,
                                       num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                       tie_word_embeddings=True))
    llm.save_pretrained(root / "qwen")
    return vision, llm, len(tokenizer)


def test_from_backbones_adds_tokens_resizes_and_round_trips(tmp_path):
    vision, llm, old_vocab = _save_tiny_backbones(tmp_path)
    model = LaReForConditionalGeneration.from_backbones(
        vision=str(tmp_path / "clip"), llm=str(tmp_path / "qwen"), latent_tokens=2, window=2,
        extractor_heads=4, extractor_hidden_size=64).eval()
    processor = LaReProcessor.from_backbones(vision=str(tmp_path / "clip"), llm=str(tmp_path / "qwen"))
    tokenizer = processor.tokenizer
    for token in ("<image>", "<bot>", "<eot>"):
        assert token in tokenizer.get_vocab()
    assert model.config.image_token_id == tokenizer.convert_tokens_to_ids("<image>")
    assert model.config.bot_token_id == tokenizer.convert_tokens_to_ids("<bot>")
    assert model.get_input_embeddings().weight.shape[0] == len(tokenizer) > old_vocab
    # Pretrained weights were loaded, not re-initialised.
    torch.testing.assert_close(model.get_input_embeddings().weight[:old_vocab], llm.get_input_embeddings().weight)
    torch.testing.assert_close(model.vision_tower.encoder.embeddings.patch_embedding.weight,
                               vision.embeddings.patch_embedding.weight)
    assert processor.num_image_tokens == model.config.num_image_tokens == 16
    from tests.conftest import random_image

    batch = processor(images=[random_image(3, 32)], text=["what is in the image"], return_tensors="pt")
    with torch.no_grad():
        before = model.generate(**batch, max_new_tokens=4, do_sample=False, return_dict_in_generate=True)
    model.save_pretrained(tmp_path / "lare")
    loaded = LaReForConditionalGeneration.from_pretrained(tmp_path / "lare").eval()
    with torch.no_grad():
        after = loaded.generate(**batch, max_new_tokens=4, do_sample=False, return_dict_in_generate=True)
    assert torch.equal(before.sequences, after.sequences)
    assert torch.equal(before.latents, after.latents)


@pytest.mark.parametrize("switch", [{"refocus": "feedback"}, {"use_window": False}, {"state_layers": "last"}])
def test_each_ablation_switch_changes_the_output(tiny_model, tiny_batch, switch):
    batch, _, _ = tiny_batch
    variant = LaReForConditionalGeneration(tiny_model.config.copy_with(**switch)).eval()
    variant.load_state_dict(tiny_model.state_dict())
    assert not torch.allclose(_first_logits(tiny_model, batch), _first_logits(variant, batch))


def test_zero_latent_steps_is_a_plain_model(tiny_model, tiny_batch):
    batch, _, _ = tiny_batch
    with torch.no_grad():
        plain = tiny_model.generate(**batch, max_new_tokens=3, latent_steps=0, do_sample=False,
                                    return_dict_in_generate=True, output_logits=True)
    assert plain.latents is None and plain.latent_steps_taken.tolist() == [0, 0]
    assert not torch.allclose(plain.logits[0], _first_logits(tiny_model, batch))


@pytest.mark.parametrize("ablation", ["zero", "shuffle", "noise"])
def test_latent_ablations_change_the_output(tiny_model, tiny_batch, ablation):
    batch, _, _ = tiny_batch
    assert not torch.allclose(_first_logits(tiny_model, batch),
                              _first_logits(tiny_model, batch, latent_ablation=ablation))


@pytest.mark.parametrize("field, value", [("halting", "sometimes"), ("refocus", "magic"), ("latent_tokens", 0),
                                          ("window", 99), ("latent_steps", -1), ("state_layers", "first"),
                                          ("saliency_layers", [7]), ("grounding_weight", -0.5)])
def test_invalid_config_value_names_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        LaReConfig.tiny(**{field: value})


def test_image_token_mismatch_raises(tiny_model, tiny_batch):
    batch, _, _ = tiny_batch
    with pytest.raises(ValueError, match="2 images for 1 sequences"):
        tiny_model.latent_reasoning(input_ids=batch["input_ids"][:1], attention_mask=batch["attention_mask"][:1],
                                    pixel_values=batch["pixel_values"])
    ids = batch["input_ids"].clone()
    ids[ids == tiny_model.config.image_token_id] = 7
    with pytest.raises(ValueError, match="<image> tokens"):
        tiny_model.latent_reasoning(input_ids=ids, attention_mask=batch["attention_mask"],
                                    pixel_values=batch["pixel_values"])


def test_processor_rejects_image_text_mismatch(tiny_processor):
    from tests.conftest import random_image

    with pytest.raises(ValueError, match="one image per text"):
        tiny_processor(images=[random_image(0)], text=["a", "b"])
    with pytest.raises(ValueError, match="markers"):
        tiny_processor(images=[random_image(0)], text=["<image> <image> two?"])


def test_generate_passes_streamer_and_sampling_through(tiny_model, tiny_processor):
    from transformers.generation.streamers import BaseStreamer

    from tests.conftest import random_image

    class Collect(BaseStreamer):
        def __init__(self):
            self.chunks = []

        def put(self, value):
            self.chunks.append(value.reshape(-1).clone())

        def end(self):
            self.ended = True

    batch = tiny_processor(images=[random_image(4)], text=["Is there a red circle?"], return_tensors="pt")
    streamer = Collect()
    with torch.no_grad():
        out = tiny_model.generate(**batch, max_new_tokens=5, do_sample=False, eos_token_id=None, streamer=streamer,
                                  return_dict_in_generate=True)
        assert streamer.ended
        # The first chunk is the prompt (transformers' convention); the rest are exactly the new tokens.
        assert torch.equal(torch.cat(streamer.chunks[1:]), out.sequences[0])
        torch.manual_seed(7)
        first = tiny_model.generate(**batch, max_new_tokens=6, do_sample=True, top_k=50, temperature=1.5)
        torch.manual_seed(7)
        second = tiny_model.generate(**batch, max_new_tokens=6, do_sample=True, top_k=50, temperature=1.5)
    assert first.shape == (1, 6) and torch.equal(first, second)


def test_tiny_tokenizer_from_any_corpus_fits_the_tiny_config():
    config = LaReConfig.tiny()
    processor = LaReProcessor.tiny(extra_corpus="a much longer corpus about hexagons, pentagons and violet ellipses " * 3)
    tokenizer = processor.tokenizer
    assert len(tokenizer) <= config.text_config.vocab_size
    assert tokenizer.convert_tokens_to_ids(["<image>", "<bot>", "<eot>"]) == [
        config.image_token_id, config.bot_token_id, config.eot_token_id]
    assert tokenizer.pad_token_id == config.pad_token_id and tokenizer.eos_token_id == config.eos_token_id


def test_text_only_and_image_samples_share_a_batch(tiny_model, tiny_processor):
    from lare.data.collate import LaReCollator
    from lare.data.dataset import Sample
    from tests.conftest import random_image

    samples = [Sample(id="t", image=None, question="What is two plus two?", target="Four."),
               Sample(id="i", image=random_image(3), question="<image>\nWhat shape is it?", target="A circle.")]
    collate = LaReCollator(tiny_processor, target="direct")

    def greedy(batch):
        inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "pixel_values")}
        return tiny_model.generate(**inputs, max_new_tokens=6, latent_steps=0, do_sample=False,
                                   min_new_tokens=6, return_dict_in_generate=True).sequences

    together = greedy(collate(samples))
    alone = torch.cat([greedy(collate([sample])) for sample in samples])
    assert torch.equal(together, alone)
    batch = collate(samples)
    loss = tiny_model(**{k: batch[k] for k in ("input_ids", "attention_mask", "pixel_values", "labels")},
                      latent_steps=0).loss
    loss.backward()
    assert torch.isfinite(loss) and tiny_model.projector.linear_1.weight.grad.abs().sum() > 0  # the image row
    with pytest.raises(ValueError, match="sequence 0 holds no <image> tokens"):
        tiny_model.latent_reasoning(**{k: batch[k] for k in ("input_ids", "attention_mask", "pixel_values")})
