"""The latent loop: cache equivalence, batch equivalence, saliency against eager attention, halting."""

from __future__ import annotations

import copy

import pytest
import torch
from transformers import AutoModelForCausalLM

from lare.modeling.modeling_lare import positions_from_mask


def test_cached_loop_matches_full_reforward(tiny_model, tiny_batch):
    batch, _, _ = tiny_batch
    with torch.no_grad():
        ref = tiny_model.latent_reasoning(**batch, latent_steps=4, use_cache=False)
        fast = tiny_model.latent_reasoning(**batch, latent_steps=4, use_cache=True)
    assert ref.latents.shape == (2, 4, tiny_model.config.latent_tokens, tiny_model.config.text_config.hidden_size)
    assert (ref.latents - fast.latents).abs().max() <= 1e-5
    assert (ref.saliency - fast.saliency).abs().max() <= 1e-5
    assert torch.equal(ref.windows, fast.windows)
    torch.testing.assert_close(fast.saliency.sum(dim=(-1, -2)), torch.ones(2, 4))


def test_padded_batch_equals_samples_one_by_one(tiny_model, tiny_processor, tiny_batch):
    batch, images, texts = tiny_batch
    assert (batch["attention_mask"] == 0).any(), "the batch must actually be padded"
    with torch.no_grad():
        together = tiny_model.generate(**batch, max_new_tokens=6, latent_steps=3, do_sample=False,
                                       return_dict_in_generate=True)
        for i in range(2):
            single = tiny_processor(images=[images[i]], text=[texts[i]], return_tensors="pt")
            alone = tiny_model.generate(**single, max_new_tokens=6, latent_steps=3, do_sample=False,
                                        return_dict_in_generate=True)
            assert (alone.latents[0] - together.latents[i]).abs().max() <= 1e-5
            assert torch.equal(alone.windows[0], together.windows[i])
            assert torch.equal(alone.sequences[0], together.sequences[i])


def test_generate_equals_hand_written_greedy_decode(tiny_model, tiny_batch):
    batch, _, _ = tiny_batch
    cfg = tiny_model.config
    n_new = 5
    with torch.no_grad():
        out = tiny_model.generate(**batch, max_new_tokens=n_new, latent_steps=2, do_sample=False,
                                  eos_token_id=None, return_dict_in_generate=True)
        loop = tiny_model.latent_reasoning(**batch, latent_steps=2, use_cache=True)
        # The cache holds everything up to Z_{T-1}: feed Z_T and <eot>, then one token at a time.
        eot = tiny_model.get_input_embeddings()(torch.full((2, 1), cfg.eot_token_id))  # [2, 1, D]
        embeds = torch.cat([loop.latents[:, -1], eot], dim=1)  # [2, k+1, D]
        mask = torch.cat([loop.attention_mask, torch.ones(2, 1, dtype=torch.long)], dim=1)
        positions = positions_from_mask(mask)[:, -embeds.shape[1]:]
        cache, produced = loop.cache, []
        for _ in range(n_new):
            step = tiny_model(inputs_embeds=embeds, attention_mask=mask, cache=cache, position_ids=positions,
                              use_cache=True)
            token = step.logits[:, -1].argmax(dim=-1, keepdim=True)
            embeds = tiny_model.get_input_embeddings()(token)
            positions = positions[:, -1:] + 1
            produced.append(token)
            mask = torch.cat([mask, torch.ones(2, 1, dtype=torch.long)], dim=1)
    assert torch.equal(out.sequences, torch.cat(produced, dim=1))


def test_saliency_equals_eager_attention(tiny_model, tiny_batch):
    """Averaged eager attention probabilities (computed here) equal the captured saliency, without eager."""
    batch, _, _ = tiny_batch
    cfg = tiny_model.config
    assert tiny_model.language_model.config._attn_implementation != "eager"
    eager = AutoModelForCausalLM.from_config(copy.deepcopy(cfg.text_config), attn_implementation="eager")
    eager.load_state_dict(tiny_model.language_model.state_dict())
    eager.eval()
    k, side = cfg.latent_tokens, cfg.grid_size
    with torch.no_grad():
        ref = tiny_model.latent_reasoning(**batch, latent_steps=3, use_cache=False)
        embeds, _, visual_positions = tiny_model.embed_inputs(batch["input_ids"], batch["pixel_values"])
        bot = tiny_model.get_input_embeddings()(torch.full((2, 1), cfg.bot_token_id))
        embeds = torch.cat([embeds, bot], dim=1)
        mask = torch.cat([batch["attention_mask"], torch.ones(2, 1, dtype=torch.long)], dim=1)
        for step in range(3):
            out = eager.model(inputs_embeds=embeds, attention_mask=mask, position_ids=positions_from_mask(mask),
                              output_attentions=True)
            layers = [out.attentions[i] for i in cfg.saliency_layer_indices]  # each [B, H, L, L]
            rows = torch.stack([a[:, :, -k:] for a in layers]).mean(dim=(0, 2, 3))  # [B, L]
            visual = rows.gather(1, visual_positions)
            expected = visual / visual.sum(dim=-1, keepdim=True)
            assert (expected.view(2, side, side) - ref.saliency[:, step]).abs().max() <= 1e-5
            embeds = torch.cat([embeds, ref.latents[:, step]], dim=1)
            mask = torch.cat([mask, torch.ones(2, k, dtype=torch.long)], dim=1)


def test_halting_stops_each_sample_at_its_own_step(tiny_model, tiny_processor, tiny_batch):
    batch, images, texts = tiny_batch
    with torch.no_grad():
        free = tiny_model.latent_reasoning(**batch, latent_steps=4)
    flat = free.latents.flatten(2)  # [B, T, k·D]
    distances = (flat[:, 1:] - flat[:, :-1]).norm(dim=-1) / flat[:, :-1].norm(dim=-1)  # [B, T-1]
    first, second = distances[0, 0].item(), distances[1, 0].item()
    assert abs(first - second) > 1e-4
    threshold = (first + second) / 2
    early = 0 if first < second else 1
    late = 1 - early
    # The late sample stops at the first step whose distance falls under the threshold (or runs all 4).
    below = (distances[late] < threshold).nonzero()
    expected_late = int(below[0, 0]) + 2 if len(below) else 4
    model = tiny_model
    model.config.halting, model.config.halting_threshold = "l2", threshold
    with torch.no_grad():
        out = model.generate(**batch, max_new_tokens=4, latent_steps=4, do_sample=False,
                             return_dict_in_generate=True)
        assert out.latent_steps_taken.tolist()[early] == 2
        assert out.latent_steps_taken.tolist()[late] == expected_late
        assert (out.windows[early, 2:] == -1).all() and (out.latents[early, 2:] == 0).all()
        # The halted sample answers exactly as if it had been run alone for 2 steps without halting.
        model.config.halting = "none"
        single = tiny_processor(images=[images[early]], text=[texts[early]], return_tensors="pt")
        alone = model.generate(**single, max_new_tokens=4, latent_steps=2, do_sample=False,
                               return_dict_in_generate=True)
    assert torch.equal(alone.sequences[0], out.sequences[early])
    assert (alone.latents[0] - out.latents[early, :2]).abs().max() <= 1e-5


def test_training_forward_backpropagates_through_the_cache(tiny_model, tiny_batch):
    batch, _, _ = tiny_batch
    labels = torch.tensor([[10, 11, 12, tiny_model.config.eos_token_id], [13, 14, -100, -100]])
    cfg = tiny_model.config
    cfg.align_weight = cfg.image_weight = cfg.text_weight = 0.0
    tiny_model.train()
    out = tiny_model(**batch, labels=labels)
    out.loss.backward()
    assert torch.isfinite(out.loss)
    assert set(out.losses) == {"ntp", "total"}
    # With next-token loss only, the Extractor gets gradient only through the latents in the KV cache.
    assert tiny_model.extractor.state_in.weight.grad.abs().sum() > 0
    assert tiny_model.projector.linear_1.weight.grad.abs().sum() > 0


def test_grounding_loss_trains_the_attention_that_builds_the_saliency(tiny_model, tiny_batch):
    batch, _, _ = tiny_batch
    labels = torch.tensor([[10, 11, 12, tiny_model.config.eos_token_id], [13, 14, -100, -100]])
    cfg = tiny_model.config
    cfg.align_weight = cfg.image_weight = cfg.text_weight = 0.0
    evidence = torch.zeros(2, 2, cfg.grid_size ** 2)  # [B, Nb, Nv]
    evidence[0, 0, 5] = evidence[0, 1, 40] = 1.0  # two boxes; sample 1 has none
    tiny_model.train()
    assert "ground" not in tiny_model(**batch, labels=labels, evidence_mask=evidence).losses  # weight 0: off

    cfg.grounding_weight = 2.0
    out = tiny_model(**batch, labels=labels, evidence_mask=evidence)
    saliency = out.saliency.flatten(2)  # [B, T, Nv]
    steps = saliency.shape[1]
    cells = [5 if t < steps // 2 else 40 for t in range(steps)]  # each box gets half of the steps, in order
    expected = -torch.stack([saliency[0, t, cell] for t, cell in enumerate(cells)]).log().mean()
    assert out.losses["ground"] == pytest.approx(float(expected.detach()), rel=1e-5)
    assert out.losses["total"] == pytest.approx(out.losses["ntp"] + 2.0 * out.losses["ground"], rel=1e-5)
    # The saliency is the recorded attention itself, not a detached copy: the loss reaches the query weights
    # of the layers that build it.
    tiny_model.zero_grad()
    from lare.losses.grounding import evidence_per_step, saliency_grounding_loss

    saliency_grounding_loss(saliency, out.latent_steps_taken[:, None] > torch.arange(steps),
                            evidence_per_step(evidence, steps)).backward()
    layer = tiny_model.decoder.layers[cfg.saliency_layer_indices[-1]]
    assert layer.self_attn.q_proj.weight.grad.abs().sum() > 0


def test_evidence_windows_steer_training_steps_only(tiny_model, tiny_batch):
    batch, _, _ = tiny_batch
    labels = torch.tensor([[10, 11, 12, tiny_model.config.eos_token_id], [13, 14, -100, -100]])
    cfg = tiny_model.config
    side, window = cfg.grid_size, cfg.window
    evidence = torch.zeros(2, 2, side ** 2)
    evidence[0, 0, 0] = evidence[0, 1, side ** 2 - 1] = 1.0  # top-left cell, then bottom-right cell
    cfg.evidence_windows_in_training = True
    tiny_model.train()
    out = tiny_model(**batch, labels=labels, evidence_mask=evidence)
    steps = out.windows.shape[1]
    for t in range(steps):
        row0, col0, row1, col1 = out.windows[0, t].tolist()
        if t < steps // 2:
            assert (row0, col0) == (0, 0)  # the only window over the top-left cell
        else:
            assert (row1, col1) == (side, side)  # a window over the bottom-right cell
    tiny_model.eval()
    with torch.no_grad():
        plain = tiny_model.latent_reasoning(**batch)
        steered = tiny_model.latent_reasoning(**batch, window_evidence=evidence[:, [0, 0, 1, 1]])
        teacher_forced = tiny_model(**batch, labels=labels, evidence_mask=evidence)
    assert torch.equal(plain.windows[1], steered.windows[1])  # no evidence: the model's own windows
    assert not torch.equal(plain.windows[0], steered.windows[0])
    assert torch.equal(teacher_forced.windows, plain.windows)  # in eval mode the forward keeps its own windows


def test_reconstruction_target_is_the_window_crop_in_minus_one_to_one(tiny_model, tiny_batch):
    import numpy as np
    import torch.nn.functional as F

    batch, images, _ = tiny_batch
    whole = tiny_model.config.copy_with(use_window=False)
    model = type(tiny_model)(whole).eval()
    with torch.no_grad():
        loop = model.latent_reasoning(**batch, latent_steps=1)
        crops = model.reconstruction_target(batch["pixel_values"], loop.windows, loop.step_mask)
    pixels = torch.stack([torch.from_numpy(np.asarray(im, dtype=np.float32)).permute(2, 0, 1) for im in images])
    size = model.semantic_losses["image"].config.sample_size
    expected = F.interpolate(pixels / 127.5 - 1.0, size=(size, size), mode="bilinear", antialias=True,
                             align_corners=False)
    assert crops.shape == expected.shape
    assert (crops - expected).abs().max() < 1e-4
