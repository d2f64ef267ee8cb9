"""Images reconstructed from the latents (the paper's Fig. 4).

For each sample the latent loop runs, and the model's `ImageReconstructor` samples an image from the sample's
latents by reverse diffusion (DDIM; decoded through the VAE when the reconstructor has one, pixels for the tiny
preset). The target is the image crop under the sample's refocus windows mapped to [-1, 1], built exactly as the
training loss builds it (`model.reconstruction_target`).

Baseline: the same sampling from *shuffled* latents, i.e. each sample conditioned on another sample's latents
(rolled by one across the whole set), with the same initial noise. If the reconstruction from the sample's own
latents is closer to its crop than the one from shuffled latents, the latents carry what the window showed.
Error metrics per sample: MSE over pixels and channels, and PSNR = 10·log10(range² / MSE) with range 2.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lare.analysis.markdown import markdown_table
from lare.analysis.samples import AnalysisSample, batched, model_inputs

logger = logging.getLogger(__name__)

DATA_RANGE = 2.0  # images live in [-1, 1]
# Figure geometry: 3 columns (crop | reconstruction | shuffled) of CELL inches, rows of CELL + title room.
CELL_WIDTH = 2.0
CELL_HEIGHT = 2.2


def psnr(mse: float, data_range: float = DATA_RANGE) -> float:
    """Peak signal-to-noise ratio in dB; infinite for a perfect reconstruction."""
    return math.inf if mse == 0 else 10.0 * math.log10(data_range**2 / mse)


@dataclass
class ReconstructionEntry:
    """One sample's errors against its window crop: from its own latents and from shuffled latents."""

    id: str
    mse: float
    psnr: float
    shuffled_mse: float
    shuffled_psnr: float


@dataclass
class ReconstructionReport:
    """Per-sample errors plus the images (all [N, 3, s, s] in [-1, 1], on CPU) for the figure."""

    entries: list[ReconstructionEntry]
    crops: torch.Tensor
    reconstructions: torch.Tensor
    shuffled: torch.Tensor
    sampling_steps: int
    target: str

    def summary(self) -> dict[str, float]:
        """Mean MSE and mean PSNR, own vs shuffled latents, and the fraction of samples where own wins."""
        def mean(values: list[float]) -> float:
            finite = [v for v in values if math.isfinite(v)]
            return float(np.mean(finite)) if finite else math.inf

        return {
            "mse": mean([e.mse for e in self.entries]),
            "psnr": mean([e.psnr for e in self.entries]),
            "shuffled_mse": mean([e.shuffled_mse for e in self.entries]),
            "shuffled_psnr": mean([e.shuffled_psnr for e in self.entries]),
            "own_better_fraction": float(np.mean([e.mse < e.shuffled_mse for e in self.entries])),
        }


@torch.no_grad()
def reconstruct_from_latents(model: Any, processor: Any, samples: Sequence[AnalysisSample], batch_size: int = 8,
                             sampling_steps: int = 50, seed: int = 0,
                             latent_steps: int | None = None) -> ReconstructionReport:
    """Sample the reconstructor from each sample's latents and from shuffled latents; compare with the crops.

    Args:
        sampling_steps: DDIM steps of each reconstruction.
        seed: seeds the initial noise; sample i gets the same noise for both reconstructions.
    """
    if len(samples) < 2:
        raise ValueError("the shuffled-latent baseline gives each sample another sample's latents: it needs at "
                         f"least 2 samples, got {len(samples)}")
    reconstructor = model.semantic_losses["image"]
    k = model.config.latent_tokens
    size = reconstructor.config.sample_size
    latents, masks, crops = [], [], []
    for chunk in batched(samples, batch_size):
        inputs = model_inputs(processor, chunk, model.device)
        loop = model.latent_reasoning(**inputs, latent_steps=latent_steps, use_cache=True)
        latents.append(loop.latents.flatten(1, 2))  # [B, T·k, D]
        masks.append(loop.step_mask.repeat_interleave(k, dim=1))  # [B, T·k]
        crops.append(model.reconstruction_target(inputs["pixel_values"], loop.windows, loop.step_mask).cpu())
    all_latents, all_masks = torch.cat(latents), torch.cat(masks)  # [N, M, D], [N, M]
    crop = torch.cat(crops)  # [N, 3, s, s]
    own = _sample(reconstructor, all_latents, all_masks, batch_size, sampling_steps, seed)
    # Rolled across the whole set, not within a batch, so every sample gets another sample's latents.
    shuffled = _sample(reconstructor, all_latents.roll(1, dims=0), all_masks.roll(1, dims=0), batch_size,
                       sampling_steps, seed)
    if own.shape[-1] != size:  # a VAE decodes to its own resolution; compare at the crop's
        own = torch.nn.functional.interpolate(own, size=(size, size), mode="bilinear", antialias=True)
        shuffled = torch.nn.functional.interpolate(shuffled, size=(size, size), mode="bilinear", antialias=True)
    mse_own = (own - crop).pow(2).flatten(1).mean(dim=1)  # [N]
    mse_shuffled = (shuffled - crop).pow(2).flatten(1).mean(dim=1)  # [N]
    entries = [ReconstructionEntry(id=s.id, mse=float(a), psnr=psnr(float(a)), shuffled_mse=float(b),
                                   shuffled_psnr=psnr(float(b)))
               for s, a, b in zip(samples, mse_own, mse_shuffled, strict=True)]
    target = f"VAE latents ({reconstructor.config.vae})" if reconstructor.config.vae else "pixels"
    report = ReconstructionReport(entries=entries, crops=crop, reconstructions=own, shuffled=shuffled,
                                  sampling_steps=sampling_steps, target=target)
    logger.info("reconstruction: %s", report.summary())
    return report


def _sample(reconstructor: Any, latents: torch.Tensor, masks: torch.Tensor, batch_size: int, steps: int,
            seed: int) -> torch.Tensor:
    """Reconstruct [N, 3, s, s] in batches; the noise of batch j depends only on (seed, j), not on the latents."""
    images = []
    for j, start in enumerate(range(0, latents.shape[0], batch_size)):
        generator = torch.Generator(device=latents.device).manual_seed(seed * 1_000_003 + j)
        chunk = slice(start, start + batch_size)
        images.append(reconstructor.sample(latents[chunk], masks[chunk], steps=steps, generator=generator).cpu())
    return torch.cat(images)  # [N, 3, s, s]


def _to_uint8(image: torch.Tensor) -> np.ndarray:
    """[3, s, s] in [-1, 1] → [s, s, 3] uint8."""
    return ((image.clamp(-1, 1) + 1.0) * 127.5).round().byte().permute(1, 2, 0).numpy()


def plot_reconstructions(report: ReconstructionReport, out_path: str | Path, max_rows: int = 16,
                         dpi: int = 100) -> Path:
    """Rows = samples, columns = window crop | reconstruction | shuffled-latent reconstruction, with MSE/PSNR.

    The PNG is 3·CELL_WIDTH·dpi wide and rows·CELL_HEIGHT·dpi high (rows = min(N, max_rows)).
    """
    from lare.analysis.figures import pyplot, save_figure

    plt = pyplot()

    rows = min(len(report.entries), max_rows)
    if rows == 0:
        raise ValueError("plot_reconstructions needs at least one sample")
    fig, axes = plt.subplots(rows, 3, figsize=(3 * CELL_WIDTH, rows * CELL_HEIGHT), squeeze=False)
    for i in range(rows):
        entry = report.entries[i]
        panels = (
            (report.crops[i], f"{entry.id[:18]}: crop"),
            (report.reconstructions[i], f"own  MSE {entry.mse:.3f} / {entry.psnr:.1f} dB"),
            (report.shuffled[i], f"shuffled  MSE {entry.shuffled_mse:.3f} / {entry.shuffled_psnr:.1f} dB"),
        )
        for ax, (image, title) in zip(axes[i], panels, strict=True):
            ax.imshow(_to_uint8(image), interpolation="nearest")
            ax.set_title(title, fontsize=7)
            ax.set_xticks([])
            ax.set_yticks([])
    return save_figure(fig, out_path, dpi)


def reconstruction_markdown(report: ReconstructionReport) -> str:
    """The mean errors (own vs shuffled latents) and one row per sample."""
    summary = report.summary()
    head = markdown_table(
        ["latents", "MSE", "PSNR (dB)"],
        [["own", summary["mse"], summary["psnr"]], ["shuffled (baseline)", summary["shuffled_mse"],
                                                     summary["shuffled_psnr"]]],
        digits=4,
    )
    rows = [[e.id, e.mse, e.psnr, e.shuffled_mse, e.shuffled_psnr] for e in report.entries]
    return "\n".join([
        "# Reconstruction from latents (Fig. 4)", "",
        f"Target: the window crop in [-1, 1] ({report.target}); {report.sampling_steps} DDIM steps; the own "
        f"latents beat the shuffled ones on {summary['own_better_fraction']:.0%} of the samples.", "",
        head,
        markdown_table(["id", "MSE", "PSNR", "shuffled MSE", "shuffled PSNR"], rows, digits=4),
    ])


def write_reconstruction(report: ReconstructionReport, out_dir: str | Path, max_rows: int = 16) -> dict[str, Path]:
    """Write `reconstruction.png`, `reconstruction.json` and `reconstruction.md` into `out_dir`."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"png": plot_reconstructions(report, out / "reconstruction.png", max_rows),
             "json": out / "reconstruction.json", "markdown": out / "reconstruction.md"}
    payload = {"target": report.target, "sampling_steps": report.sampling_steps, "summary": report.summary(),
               "samples": [asdict(e) for e in report.entries]}
    # PSNR of a perfect reconstruction is infinite; JSON has no infinity, so it is written as null.
    text = json.dumps(payload, indent=2, default=str).replace("Infinity", "null")
    paths["json"].write_text(text + "\n", encoding="utf-8")
    paths["markdown"].write_text(reconstruction_markdown(report), encoding="utf-8")
    return paths
