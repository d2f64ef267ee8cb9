"""Refocus heatmaps (the paper's Fig. 3): the image with each latent step's saliency and chosen window."""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image


@dataclass
class RefocusTrace:
    """One sample's refocusing: saliency [T, gh, gw], windows [T, 4] (row0, col0, row1, col1), step_mask [T]."""

    image: Image.Image
    saliency: torch.Tensor
    windows: torch.Tensor
    step_mask: torch.Tensor
    title: str = ""
    text: str = ""


def plot_refocus_grid(traces: list[RefocusTrace], out_path: str | Path, dpi: int = 100) -> Path:
    """Write a PNG with one row per sample: the image, then one panel per latent step, then the decoded text.

    Each step panel overlays the upsampled saliency on the image and outlines the chosen window. Steps a
    halted sample skipped are left blank.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    if not traces:
        raise ValueError("plot_refocus_grid needs at least one trace")
    n_steps = max(int(t.saliency.shape[0]) for t in traces)
    n_cols = n_steps + 2
    fig, axes = plt.subplots(len(traces), n_cols, figsize=(2.0 * n_cols, 2.1 * len(traces)), squeeze=False)
    for row, trace in enumerate(traces):
        pixels = np.asarray(trace.image.convert("RGB"))
        height, width = pixels.shape[:2]
        grid_h, grid_w = trace.saliency.shape[-2:]
        axes[row, 0].imshow(pixels)
        axes[row, 0].set_title(trace.title or "image", fontsize=8)
        for step in range(n_steps):
            ax = axes[row, step + 1]
            if step < trace.saliency.shape[0] and bool(trace.step_mask[step]):
                heat = trace.saliency[step].float().cpu().numpy()
                ax.imshow(pixels)
                ax.imshow(heat, cmap="jet", alpha=0.5, extent=(0, width, height, 0), interpolation="bilinear")
                r0, c0, r1, c1 = (int(v) for v in trace.windows[step])
                cell_h, cell_w = height / grid_h, width / grid_w
                ax.add_patch(Rectangle((c0 * cell_w, r0 * cell_h), (c1 - c0) * cell_w, (r1 - r0) * cell_h,
                                       fill=False, edgecolor="white", linewidth=1.5))
                ax.set_title(f"step {step + 1}", fontsize=8)
            else:
                ax.set_title(f"step {step + 1} (halted)", fontsize=8)
        text_ax = axes[row, -1]
        text_ax.text(0.0, 1.0, "\n".join(textwrap.wrap(trace.text, 28)[:9]), va="top", ha="left", fontsize=7,
                     transform=text_ax.transAxes)
        for ax in axes[row]:
            ax.set_xticks([])
            ax.set_yticks([])
        text_ax.axis("off")
    fig.tight_layout()
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_path, dpi=dpi)
    plt.close(fig)
    return out_path
