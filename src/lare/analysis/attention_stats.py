"""Attention statistics (the paper's Table 5): attention from the first generated token to the visual tokens.

The query that produces the first answer token is the one at `<eot>` for LaRe (after T latent steps) and at the
last prompt position for the plain model (T = 0). Its attention over the visual keys is captured with the model's
own saliency mechanism: a `SaliencyRecorder` over every layer with one query row, passed to the decoder with the
latent loop's cache. The model stays on SDPA; only that one row's softmax(q·Kᵀ/√d + mask) over the visual keys is
computed (O(N) per head).

Per sample the report keeps
- the visual attention *mass*: the raw (un-normalised) probability on all visual tokens, averaged over heads and
  layers, i.e. the share of the first token's attention that goes to the image, and
- the per-token values [Nv] (the same average, per visual token).
Both distributions (LaRe vs plain) are summarised by their mean and 25/50/75/95th percentiles (numpy's linear
interpolation) and compared with Welch's t-test (`scipy.stats.ttest_ind(equal_var=False)`, means) and a two-sided
Mann–Whitney U test (`scipy.stats.mannwhitneyu`, distributions/medians).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lare.analysis.markdown import markdown_table
from lare.analysis.samples import AnalysisSample, batched, model_inputs
from lare.modeling.modeling_lare import positions_from_mask
from lare.modeling.refocus import SaliencyRecorder

logger = logging.getLogger(__name__)

PERCENTILES = (25, 50, 75, 95)


def _visual_positions(model: Any, input_ids: torch.Tensor) -> torch.Tensor:
    """[B, Nv]: each sample's `<image>` token positions (the prompt sits at the front of every sequence/cache)."""
    is_image = input_ids == model.config.image_token_id  # [B, L]
    return is_image.nonzero()[:, 1].view(input_ids.shape[0], model.config.num_image_tokens)  # [B, Nv]


@torch.no_grad()
def first_token_visual_attention(model: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                                 pixel_values: torch.Tensor, latent_steps: int | None = None) -> torch.Tensor:
    """Attention of the query that emits the first answer token over the visual tokens, for one batch.

    With T ≥ 1 the latent loop runs and `<eot>` is fed on its cache; with T = 0 the prompt is prefilled and its
    last position is the query. Returns [B, Nv], averaged over heads and all layers, not renormalised.
    """
    steps = model.config.latent_steps if latent_steps is None else int(latent_steps)
    layers = list(range(model.config.text_config.num_hidden_layers))
    recorder = SaliencyRecorder(1, layers, _visual_positions(model, input_ids))
    if steps == 0:
        embeds, _, _ = model.embed_inputs(input_ids, pixel_values)  # [B, L, D]
        model.decoder(inputs_embeds=embeds, attention_mask=attention_mask,
                      position_ids=positions_from_mask(attention_mask), use_cache=False, saliency_recorder=recorder)
        return recorder.attention_mass()
    loop = model.latent_reasoning(input_ids, attention_mask, pixel_values, latent_steps=steps, use_cache=True)
    embeds, mask, positions = model.continuation_inputs(loop)  # Z_T and <eot>: the last query is <eot>'s
    model.decoder(inputs_embeds=embeds, attention_mask=mask, position_ids=positions, cache=loop.cache,
                  use_cache=True, saliency_recorder=recorder)
    return recorder.attention_mass()


def collect_visual_attention(model: Any, processor: Any, samples: Sequence[AnalysisSample], batch_size: int = 8,
                             latent_steps: int | None = None) -> np.ndarray:
    """[N, Nv] first-token attention on each visual token, per sample (see `first_token_visual_attention`)."""
    rows = []
    for chunk in batched(samples, batch_size):
        inputs = model_inputs(processor, chunk, model.device)
        rows.append(first_token_visual_attention(model, inputs["input_ids"], inputs["attention_mask"],
                                                 inputs["pixel_values"], latent_steps).float().cpu().numpy())
    return np.concatenate(rows)


@dataclass
class DistributionSummary:
    """Mean and percentiles (25/50/75/95, numpy linear interpolation) of one distribution of n values."""

    n: int
    mean: float
    p25: float
    p50: float
    p75: float
    p95: float

    @classmethod
    def of(cls, values: np.ndarray) -> DistributionSummary:
        values = np.asarray(values, dtype=np.float64).ravel()
        p25, p50, p75, p95 = (float(v) for v in np.percentile(values, PERCENTILES))
        return cls(n=int(values.size), mean=float(values.mean()), p25=p25, p50=p50, p75=p75, p95=p95)


@dataclass
class AttentionComparison:
    """Two distributions (a = LaRe, b = plain) and the tests of a vs b (two-sided)."""

    a: DistributionSummary
    b: DistributionSummary
    t_statistic: float
    t_pvalue: float
    u_statistic: float
    u_pvalue: float


def compare_distributions(a: np.ndarray, b: np.ndarray) -> AttentionComparison:
    """Summaries of `a` and `b`, Welch's t-test and the two-sided Mann–Whitney U test (U is a's statistic)."""
    from scipy import stats

    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    if a.size < 2 or b.size < 2:
        raise ValueError(f"the tests need at least 2 values per group, got {a.size} and {b.size}")
    t_test = stats.ttest_ind(a, b, equal_var=False)
    u_test = stats.mannwhitneyu(a, b, alternative="two-sided")
    return AttentionComparison(a=DistributionSummary.of(a), b=DistributionSummary.of(b),
                               t_statistic=float(t_test.statistic), t_pvalue=float(t_test.pvalue),
                               u_statistic=float(u_test.statistic), u_pvalue=float(u_test.pvalue))


@dataclass
class AttentionReport:
    """Table 5: per-sample visual attention mass and per-token values, LaRe vs the plain model.

    `lare_attention` / `plain_attention` are [N, Nv] (per sample, per visual token).
    """

    lare_label: str
    plain_label: str
    lare_attention: np.ndarray
    plain_attention: np.ndarray
    mass: AttentionComparison
    per_token: AttentionComparison


def analyze_attention(model: Any, processor: Any, samples: Sequence[AnalysisSample], plain_model: Any | None = None,
                      batch_size: int = 8, latent_steps: int | None = None) -> AttentionReport:
    """Compare first-token visual attention of LaRe (T = `latent_steps` or the model's) with a plain model.

    Args:
        plain_model: the plain (LLaVA-style) model. None uses `model` itself with T = 0, i.e. the same weights
            answering without latents: the paper compares against a separately trained LLaVA, so pass one when
            there is one.
    """
    plain = model if plain_model is None else plain_model
    lare_attention = collect_visual_attention(model, processor, samples, batch_size, latent_steps)  # [N, Nv]
    plain_attention = collect_visual_attention(plain, processor, samples, batch_size, 0)  # [N, Nv]
    steps = model.config.latent_steps if latent_steps is None else latent_steps
    report = AttentionReport(
        lare_label=f"LaRe (T={steps})",
        plain_label="plain (same weights, T=0)" if plain_model is None else "plain model (T=0)",
        lare_attention=lare_attention, plain_attention=plain_attention,
        mass=compare_distributions(lare_attention.sum(axis=1), plain_attention.sum(axis=1)),
        per_token=compare_distributions(lare_attention, plain_attention),
    )
    logger.info("attention: visual mass %.4f (LaRe) vs %.4f (plain), t-test p=%.3g, U-test p=%.3g",
                report.mass.a.mean, report.mass.b.mean, report.mass.t_pvalue, report.mass.u_pvalue)
    return report


def attention_markdown(report: AttentionReport) -> str:
    """Table 5's layout: one row per model and measure, then the tests."""
    rows, tests = [], []
    for measure, comparison in (("visual mass per sample", report.mass), ("per visual token", report.per_token)):
        for label, summary in ((report.lare_label, comparison.a), (report.plain_label, comparison.b)):
            rows.append([measure, label, summary.n, summary.mean, summary.p25, summary.p50, summary.p75, summary.p95])
        tests.append([measure, comparison.t_statistic, f"{comparison.t_pvalue:.3g}", comparison.u_statistic,
                      f"{comparison.u_pvalue:.3g}"])
    return "\n".join([
        "# Attention from the first generated token to the visual tokens",
        "",
        "Raw attention probability (averaged over heads and layers); the mass is its sum over the visual tokens.",
        "",
        markdown_table(["measure", "model", "n", "mean", "p25", "p50", "p75", "p95"], rows, digits=5),
        markdown_table(["measure", "Welch t", "t-test p", "Mann–Whitney U", "U-test p"], tests),
    ])


def write_attention(report: AttentionReport, out_dir: str | Path) -> dict[str, Path]:
    """Write `attention.json` (summaries, tests and per-sample masses), `attention.md` and the per-token values
    `attention_per_token.npz` (arrays `lare` and `plain`, [N, Nv])."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "attention.json", "markdown": out / "attention.md", "npz": out / "attention_per_token.npz"}
    payload = {
        "lare_label": report.lare_label, "plain_label": report.plain_label,
        "mass": asdict(report.mass), "per_token": asdict(report.per_token),
        "lare_mass_per_sample": report.lare_attention.sum(axis=1).tolist(),
        "plain_mass_per_sample": report.plain_attention.sum(axis=1).tolist(),
    }
    paths["json"].write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    paths["markdown"].write_text(attention_markdown(report), encoding="utf-8")
    np.savez_compressed(paths["npz"], lare=report.lare_attention, plain=report.plain_attention)
    return paths
