"""Latent use (an addition to the paper): do the latents hold their sample's reasoning, and does the answer read it?

Both measurements are teacher-forced on LaRe training batches (`LaReCollator(target="lare")`: prompts, images, the
text after `<eot>` as labels and the explicit rationale), each with a sample's own latents and with another
sample's:

- prefix: the cross-entropy of the rationale tokens that the latents replace, decoded from the latents alone (the
  text-prefix reconstruction of the paper's Eq. 8). Another sample's latents are the batch's latents rolled by one
  sample. Own far below shuffled: the latents hold sample-specific reasoning.
- target: the cross-entropy of the text after `<eot>` (the rest of the rationale, then the answer) in the full model.
  Another sample's latents are the evaluation's `latent_ablation="shuffle"`: every fed-back latent is the
  previous sample's (the batch rolled by one). Own close to shuffled: the answer text hardly reads what the latents hold.

The shuffled accuracy ablation says whether answers change; this says why: whether the content is missing from
the latents, or present and not read. Cross-entropies are in nats per token, over all tokens of all batches.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from lare.analysis.markdown import markdown_table
from lare.data.collate import LaReCollator
from lare.data.dataset import Sample
from lare.losses.next_token import next_token_loss
from lare.losses.prefix import prefix_reconstruction_loss

LATENT_SOURCES = ("own", "shuffled")
REQUIRED_FIELDS = ("input_ids", "attention_mask", "pixel_values", "labels", "rationale_ids", "rationale_mask")


@dataclass
class LatentUse:
    """Per-token cross-entropies with a sample's own and another sample's latents (None: no such tokens)."""

    n_samples: int
    n_prefix_tokens: int
    n_target_tokens: int
    prefix_ce: dict[str, float | None]
    target_ce: dict[str, float | None]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def latent_use_batches(samples: Sequence[Any], processor: Any, prefix_tokens: int, batch_size: int
                       ) -> Iterator[dict[str, torch.Tensor]]:
    """LaRe training batches (`target="lare"`) of `samples` (anything with `Sample`'s fields, e.g. an
    `AnalysisSample`), `batch_size` at a time; a last batch of one sample joins the one before."""
    if batch_size < 2:
        raise ValueError(f"latent use compares a sample's latents with another sample's: batch_size must be >= 2, "
                         f"got {batch_size}")
    collate = LaReCollator(processor, target="lare", prefix_tokens=prefix_tokens)
    bounds = list(range(0, len(samples), batch_size)) + [len(samples)]
    if len(bounds) > 2 and bounds[-1] - bounds[-2] == 1:
        del bounds[-2]
    for start, end in zip(bounds, bounds[1:]):
        yield collate([Sample(id=s.id, image=s.image, question=s.question, target=s.target, rationale=s.rationale,
                              answer=s.answer, family=s.family, boxes=s.boxes) for s in samples[start:end]])


@torch.no_grad()
def measure_latent_use(model: Any, batches: Iterable[dict[str, torch.Tensor]]) -> LatentUse:
    """Teacher-forced prefix and target cross-entropy, own vs another sample's latents, over `batches`."""
    config = model.config
    device = next(model.parameters()).device
    sums = {name: {source: 0.0 for source in LATENT_SOURCES} for name in ("prefix", "target")}
    counts = {"prefix": 0, "target": 0}
    n_samples = 0
    for index, batch in enumerate(batches):
        missing = [name for name in REQUIRED_FIELDS if name not in batch]
        if missing:
            raise ValueError(f"latent use: batch {index} lacks {missing} (use LaReCollator(target='lare'))")
        size = batch["input_ids"].shape[0]
        if size < 2:
            raise ValueError(f"latent use compares a sample's latents with another sample's: batch {index} holds "
                             f"{size} sample; every batch needs at least 2")
        batch = {name: batch[name].to(device) for name in REQUIRED_FIELDS}
        inputs = (batch["input_ids"], batch["attention_mask"], batch["pixel_values"])
        labels = batch["labels"]
        prefix_ids = batch["rationale_ids"][:, :config.prefix_tokens]  # [B, P]
        prefix_mask = batch["rationale_mask"][:, :config.prefix_tokens]  # [B, P]
        n_prefix, n_target = int(prefix_mask.sum()), int((labels != -100).sum())
        n_samples += size
        counts["prefix"] += n_prefix
        counts["target"] += n_target

        own = model.latent_reasoning(*inputs, use_cache=True)
        latents = own.latents.flatten(1, 2)  # [B, T·k, D]
        latent_mask = own.step_mask.repeat_interleave(config.latent_tokens, dim=1)  # [B, T·k]
        if n_prefix:
            for source, shift in (("own", 0), ("shuffled", 1)):
                ce = prefix_reconstruction_loss(
                    model.decoder, model.get_input_embeddings(), model.get_output_embeddings(),
                    latents.roll(shift, dims=0), latent_mask.roll(shift, dims=0), prefix_ids, prefix_mask)
                sums["prefix"][source] += float(ce) * n_prefix
        if n_target:
            shuffled = model.latent_reasoning(*inputs, use_cache=True, latent_ablation="shuffle")
            for source, loop in (("own", own), ("shuffled", shuffled)):
                hidden = model.target_hidden_states(loop, labels)  # [B, Lt, D]
                ce = next_token_loss(model.get_output_embeddings()(hidden).float(), labels)
                sums["target"][source] += float(ce) * n_target
    if n_samples == 0:
        raise ValueError("latent use: no batches to measure")

    def mean(name: str) -> dict[str, float | None]:
        return {source: sums[name][source] / counts[name] if counts[name] else None for source in LATENT_SOURCES}

    return LatentUse(n_samples=n_samples, n_prefix_tokens=counts["prefix"], n_target_tokens=counts["target"],
                     prefix_ce=mean("prefix"), target_ce=mean("target"))


def latent_use_markdown(report: LatentUse) -> str:
    """The two measurements as a markdown table (nats per token)."""
    rows = [
        ["rationale prefix the latents replace, decoded from the latents alone", report.prefix_ce["own"],
         report.prefix_ce["shuffled"], report.n_prefix_tokens],
        ["text after `<eot>` (rest of the rationale, answer), full model", report.target_ce["own"],
         report.target_ce["shuffled"], report.n_target_tokens],
    ]
    header = ["teacher-forced text", "own latents (nats/token)", "another sample's latents (nats/token)", "tokens"]
    return markdown_table(header, rows, digits=3)


def write_latent_use(report: LatentUse, out_dir: str | Path) -> dict[str, Path]:
    """Write `latent_use.json` and `latent_use.md` into `out_dir`."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "latent_use.json", "markdown": out / "latent_use.md"}
    paths["json"].write_text(json.dumps(report.to_dict(), indent=2) + "\n", encoding="utf-8")
    paths["markdown"].write_text("# Latent use\n\n" + latent_use_markdown(report), encoding="utf-8")
    return paths
