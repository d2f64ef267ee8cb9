"""Refocus heatmaps (the paper's Fig. 3): the image with each latent step's saliency and chosen window.

`plot_refocus_grid` draws traces; `collect_heatmaps` produces them from a model and samples (one greedy
generation each), and `write_heatmaps` writes the PNG, a JSON with every window and a markdown table.
"""

from __future__ import annotations

import json
import logging
import textwrap
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from lare.analysis.markdown import markdown_table
from lare.analysis.refocus_generation import generate_with_refocus
from lare.analysis.samples import AnalysisSample

logger = logging.getLogger(__name__)

# Figure geometry, in inches at `dpi`; the PNG is exactly (cols·COLUMN_WIDTH·dpi) × (rows·ROW_HEIGHT·dpi) pixels.
COLUMN_WIDTH = 2.0
ROW_HEIGHT = 2.1


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
    halted sample skipped are left blank. The PNG is (T + 2)·COLUMN_WIDTH·dpi wide and rows·ROW_HEIGHT·dpi high.
    """
    from lare.analysis.figures import pyplot, save_figure

    plt = pyplot()
    from matplotlib.patches import Rectangle

    if not traces:
        raise ValueError("plot_refocus_grid needs at least one trace")
    n_steps = max(int(t.saliency.shape[0]) for t in traces)
    n_cols = n_steps + 2
    fig, axes = plt.subplots(len(traces), n_cols, figsize=(COLUMN_WIDTH * n_cols, ROW_HEIGHT * len(traces)),
                             squeeze=False)
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
    return save_figure(fig, out_path, dpi)


@dataclass
class HeatmapEntry:
    """One sample of a heatmap report, JSON-ready: windows [T][4] in patch-grid cells, −1 for halted steps."""

    id: str
    question: str
    prediction: str
    answer: str | None
    correct: bool | None
    steps_taken: int
    windows: list[list[int]] = field(default_factory=list)


@dataclass
class HeatmapReport:
    """What `collect_heatmaps` produced: one trace (for the figure) and one entry (for JSON/markdown) per sample."""

    traces: list[RefocusTrace]
    entries: list[HeatmapEntry]
    grid_size: int
    latent_steps: int


def collect_heatmaps(model: Any, processor: Any, samples: Sequence[AnalysisSample], batch_size: int = 4,
                     max_new_tokens: int = 32, latent_steps: int | None = None) -> HeatmapReport:
    """Generate each sample's answer greedily and keep its per-step saliency [T, gh, gw] and windows [T, 4].

    Args:
        latent_steps: T (default: the model's); must be at least 1, since T = 0 has nothing to draw.
    """
    steps = model.config.latent_steps if latent_steps is None else latent_steps
    if steps < 1:
        raise ValueError(f"refocus heatmaps need latent_steps >= 1, got {steps}")
    answers = generate_with_refocus(model, processor, samples, batch_size, max_new_tokens, steps)
    traces, entries = [], []
    for sample, answer in zip(samples, answers, strict=True):
        traces.append(RefocusTrace(image=sample.image, saliency=answer.saliency, windows=answer.windows,
                                   step_mask=answer.step_mask, title=sample.short_question[:34], text=answer.text))
        entries.append(HeatmapEntry(id=sample.id, question=sample.short_question, prediction=answer.text,
                                    answer=sample.answer, correct=answer.correct, steps_taken=answer.steps_taken,
                                    windows=answer.windows.tolist()))
    logger.info("heatmaps: %d samples, T = %d", len(samples), steps)
    return HeatmapReport(traces=traces, entries=entries, grid_size=model.config.grid_size, latent_steps=steps)


def heatmap_markdown(report: HeatmapReport) -> str:
    """One row per sample: question, answer, correctness, steps taken and each step's window."""
    rows = []
    for entry in report.entries:
        windows = " ".join(f"r{r0}:{r1},c{c0}:{c1}" for r0, c0, r1, c1 in entry.windows if r0 >= 0)
        rows.append([entry.id, entry.question, entry.prediction, entry.answer, entry.correct, entry.steps_taken,
                     windows])
    header = ["id", "question", "prediction", "answer", "correct", "steps", "windows (rows, cols)"]
    return (f"# Refocus heatmaps (T = {report.latent_steps}, {report.grid_size}×{report.grid_size} patch grid)\n\n"
            + markdown_table(header, rows))


def write_heatmaps(report: HeatmapReport, out_dir: str | Path, dpi: int = 100) -> dict[str, Path]:
    """Write `heatmaps.png` (one row per sample), `heatmaps.json` and `heatmaps.md` into `out_dir`."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"png": plot_refocus_grid(report.traces, out / "heatmaps.png", dpi=dpi),
             "json": out / "heatmaps.json", "markdown": out / "heatmaps.md"}
    payload = {"latent_steps": report.latent_steps, "grid_size": report.grid_size,
               "samples": [asdict(entry) for entry in report.entries]}
    paths["json"].write_text(json.dumps(payload, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    paths["markdown"].write_text(heatmap_markdown(report), encoding="utf-8")
    return paths
