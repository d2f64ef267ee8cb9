import inspect

import pytest
import torch
import torch.nn.functional as F
from transformers import Qwen2Config, Qwen2ForCausalLM

from lare.losses.prefix import DEFAULT_PREFIX_LENGTH, prefix_reconstruction_loss

HIDDEN = 32


@pytest.fixture(scope="module")
def lm() -> Qwen2ForCausalLM:
    torch.manual_seed(0)
    config = Qwen2Config(
        vocab_size=64, hidden_size=HIDDEN, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2
    )
    config._attn_implementation = "sdpa"
    return Qwen2ForCausalLM(config).eval()


def _loss(lm, latents, latent_mask, prefix_ids, prefix_mask):
    return prefix_reconstruction_loss(
        lm.model, lm.get_input_embeddings(), lm.lm_head, latents, latent_mask, prefix_ids, prefix_mask
    )


def _batch(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    latents = torch.randn(2, 3, HIDDEN, generator=g)
    prefix_ids = torch.randint(0, 64, (2, 4), generator=g)
    return latents, torch.ones(2, 3, dtype=torch.long), prefix_ids, torch.ones(2, 4, dtype=torch.long)


def test_signature_has_no_image_or_question_input():
    assert list(inspect.signature(prefix_reconstruction_loss).parameters) == [
        "language_model",
        "input_embeddings",
        "lm_head",
        "latents",
        "latent_mask",
        "prefix_ids",
        "prefix_mask",
    ]
    assert DEFAULT_PREFIX_LENGTH == 32


def test_matches_teacher_forced_causal_lm(lm):
    latents, latent_mask, prefix_ids, prefix_mask = _batch()
    embeds = torch.cat([latents, lm.get_input_embeddings()(prefix_ids)], dim=1)  # [2, 7, D]
    logits = lm(inputs_embeds=embeds).logits  # [2, 7, V]
    # The last latent (position 2) predicts prefix[0], ..., position 5 predicts prefix[3].
    expected = F.cross_entropy(logits[:, 2:6].reshape(-1, 64), prefix_ids.reshape(-1))
    torch.testing.assert_close(_loss(lm, latents, latent_mask, prefix_ids, prefix_mask), expected)


def test_depends_only_on_latents_and_prefix(lm):
    latents, latent_mask, prefix_ids, prefix_mask = _batch()
    # Two caller batches: different images and questions, same latents and reasoning prefix.
    batch_a = {"pixel_values": torch.rand(2, 3, 64, 64), "question_ids": torch.randint(0, 64, (2, 9))}
    batch_b = {"pixel_values": torch.rand(2, 3, 64, 64), "question_ids": torch.randint(0, 64, (2, 5))}
    losses = []
    for _caller_batch in (batch_a, batch_b):
        # Nothing of the caller's batch other than latents and prefix can even be passed in.
        losses.append(_loss(lm, latents.clone(), latent_mask, prefix_ids, prefix_mask))
    torch.testing.assert_close(losses[0], losses[1], rtol=0, atol=0)

    other_latents = latents + 0.5 * torch.randn_like(latents)
    assert abs(_loss(lm, other_latents, latent_mask, prefix_ids, prefix_mask).item() - losses[0].item()) > 1e-4


def test_padding_does_not_change_the_loss(lm):
    latents, latent_mask, prefix_ids, prefix_mask = _batch()
    reference = _loss(lm, latents, latent_mask, prefix_ids, prefix_mask)

    junk = torch.randn(2, 1, HIDDEN) * 10
    # Masked latent slots at the front and in the middle (e.g. left padding, a halted step).
    padded_latents = torch.cat([junk, latents[:, :1], junk, latents[:, 1:]], dim=1)  # [2, 5, D]
    padded_latent_mask = torch.tensor([[0, 1, 0, 1, 1]] * 2)
    # Pad tokens left and right of the prefix, with mask 0.
    pad = torch.full((2, 1), 7)
    padded_ids = torch.cat([pad, prefix_ids, pad, pad], dim=1)  # [2, 7]
    padded_prefix_mask = torch.tensor([[0, 1, 1, 1, 1, 0, 0]] * 2)
    padded = _loss(lm, padded_latents, padded_latent_mask, padded_ids, padded_prefix_mask)
    torch.testing.assert_close(padded, reference, rtol=1e-5, atol=1e-5)

    # Ragged prefixes: sample 1's last two tokens are padding, equal to computing it on the shorter prefix.
    ragged_mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]])
    ragged = _loss(lm, latents, latent_mask, prefix_ids, ragged_mask)
    first = _loss(lm, latents[:1], latent_mask[:1], prefix_ids[:1], prefix_mask[:1])
    second = _loss(lm, latents[1:], latent_mask[1:], prefix_ids[1:, :2], prefix_mask[1:, :2])
    torch.testing.assert_close(ragged, (4 * first + 2 * second) / 6)  # a mean over the 6 tokens


def test_samples_without_prefix_are_excluded(lm):
    latents, latent_mask, prefix_ids, prefix_mask = _batch()
    no_text = prefix_mask.clone()
    no_text[1] = 0
    loss = _loss(lm, latents, latent_mask, prefix_ids, no_text)
    torch.testing.assert_close(loss, _loss(lm, latents[:1], latent_mask[:1], prefix_ids[:1], prefix_mask[:1]))

    leaf = latents.clone().requires_grad_(True)
    zero = _loss(lm, leaf, latent_mask, prefix_ids, torch.zeros_like(prefix_mask))
    assert zero.item() == 0.0
    zero.backward()  # still on the graph, so every DDP rank can run backward
    assert torch.count_nonzero(leaf.grad) == 0


def test_gradient_reaches_the_latents(lm):
    latents, latent_mask, prefix_ids, prefix_mask = _batch()
    latents.requires_grad_(True)
    _loss(lm, latents, latent_mask, prefix_ids, prefix_mask).backward()
    assert torch.count_nonzero(latents.grad) > 0


def test_bad_inputs_raise(lm):
    latents, latent_mask, prefix_ids, prefix_mask = _batch()
    with pytest.raises(ValueError, match="no valid latent"):
        _loss(lm, latents, torch.zeros_like(latent_mask), prefix_ids, prefix_mask)
    with pytest.raises(ValueError, match="prefix_mask"):
        _loss(lm, latents, latent_mask, prefix_ids, prefix_mask[:, :2])
    with pytest.raises(ValueError, match="latent_mask"):
        _loss(lm, latents, latent_mask[:, :2], prefix_ids, prefix_mask)
