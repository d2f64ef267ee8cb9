"""Attention statistics: the captured first-token attention equals eager attention, and the statistics equal
a hand-checked example computed by scipy directly."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch
from scipy import stats
from transformers import AutoModelForCausalLM

from lare.analysis.attention_stats import (
    analyze_attention,
    compare_distributions,
    first_token_visual_attention,
    write_attention,
)
from lare.analysis.samples import model_inputs
from lare.modeling.modeling_lare import positions_from_mask


def test_statistics_match_a_hand_checked_example():
    a = np.array([0.1, 0.2, 0.3, 0.4, 0.5])
    b = np.array([0.05, 0.1, 0.15, 0.2])
    result = compare_distributions(a, b)
    # By hand: means 0.3 and 0.125; linear-interpolated percentiles of a: 0.2, 0.3, 0.4 and 0.1 + 0.95·0.4.
    assert result.a.mean == pytest.approx(0.3) and result.b.mean == pytest.approx(0.125)
    assert (result.a.p25, result.a.p50, result.a.p75, result.a.p95) == pytest.approx((0.2, 0.3, 0.4, 0.48))
    assert (result.b.p25, result.b.p50, result.b.p95) == pytest.approx((0.0875, 0.125, 0.1925))
    # Welch: (0.3 − 0.125) / sqrt(0.025/5 + 0.0125/3/4) = 2.2514…
    assert result.t_statistic == pytest.approx(0.175 / np.sqrt(0.025 / 5 + 0.0125 / 12))
    # U of a: pairs with a_i > b_j, ties counting one half: 1.5 + 3.5 + 4 + 4 + 4.
    assert result.u_statistic == 17.0
    welch = stats.ttest_ind(a, b, equal_var=False)
    mann_whitney = stats.mannwhitneyu(a, b, alternative="two-sided")
    assert result.t_statistic == pytest.approx(welch.statistic)
    assert result.t_pvalue == pytest.approx(welch.pvalue)
    assert result.u_statistic == pytest.approx(mann_whitney.statistic)
    assert result.u_pvalue == pytest.approx(mann_whitney.pvalue)
    assert 0.04 < result.t_pvalue < 0.08  # t = 2.25 on ~6.4 degrees of freedom


@pytest.mark.parametrize("latent_steps", [0, 2])
def test_captured_attention_equals_eager_attention(tiny_model, tiny_processor, samples, latent_steps):
    """The first answer token's query (at <eot>, or the last prompt token for T = 0) over the visual keys,
    averaged over heads and every layer, as an eager copy of the LLM computes it on the whole sequence."""
    cfg = tiny_model.config
    inputs = model_inputs(tiny_processor, samples[:3], "cpu")
    assert (inputs["attention_mask"] == 0).any(), "the batch should be left-padded"
    eager = AutoModelForCausalLM.from_config(copy.deepcopy(cfg.text_config), attn_implementation="eager").eval()
    eager.load_state_dict(tiny_model.language_model.state_dict())
    with torch.no_grad():
        captured = first_token_visual_attention(tiny_model, inputs["input_ids"], inputs["attention_mask"],
                                                inputs["pixel_values"], latent_steps)  # [B, Nv]
        embeds, _, visual_positions = tiny_model.embed_inputs(inputs["input_ids"], inputs["pixel_values"])
        mask = inputs["attention_mask"]
        if latent_steps:
            loop = tiny_model.latent_reasoning(**inputs, latent_steps=latent_steps)
            ids = torch.tensor([[cfg.bot_token_id], [cfg.eot_token_id]])
            bot, eot = tiny_model.get_input_embeddings()(ids).unbind(0)  # [1, D] each
            embeds = torch.cat([embeds, bot.expand(3, 1, -1), loop.latents.flatten(1, 2), eot.expand(3, 1, -1)], 1)
            mask = torch.cat([loop.attention_mask, torch.ones(3, 1, dtype=torch.long)], dim=1)
        out = eager.model(inputs_embeds=embeds, attention_mask=mask, position_ids=positions_from_mask(mask),
                          output_attentions=True)
        last_row = torch.stack([layer[:, :, -1] for layer in out.attentions]).mean(dim=(0, 2))  # [B, L]
        reference = last_row.gather(1, visual_positions)  # [B, Nv]
    assert captured.shape == (3, cfg.num_image_tokens)
    torch.testing.assert_close(captured, reference, atol=1e-6, rtol=1e-5)
    assert bool(((captured.sum(dim=1) > 0) & (captured.sum(dim=1) < 1)).all())  # raw mass, not renormalised


def test_analyze_and_write(tiny_model, tiny_processor, samples, tmp_path):
    report = analyze_attention(tiny_model, tiny_processor, samples[:4], batch_size=4, latent_steps=1)
    nv = tiny_model.config.num_image_tokens
    assert report.lare_attention.shape == report.plain_attention.shape == (4, nv)
    assert report.mass.a.n == 4 and report.per_token.a.n == 4 * nv
    assert report.mass.a.mean == pytest.approx(report.lare_attention.sum(axis=1).mean())
    paths = write_attention(report, tmp_path)
    saved = json.loads(paths["json"].read_text())
    assert saved["mass"]["t_pvalue"] == pytest.approx(report.mass.t_pvalue)
    assert np.load(paths["npz"])["lare"].shape == (4, nv)
    assert "Mann–Whitney" in paths["markdown"].read_text()
