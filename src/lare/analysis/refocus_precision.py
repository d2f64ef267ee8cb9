"""Refocus precision (an addition to the paper): how often does a latent step's window cover the evidence?

On the synthetic benchmark every record carries the pixel boxes of its evidence objects. For each sample and each
latent step that ran, the step's window (patch-grid cells) is mapped to image pixels and checked against the boxes.

Covering rule (`lare.data.evidence`): a window covers an evidence box when their intersection is at least half of
the box's area; a box entirely inside the window is the special case of a full overlap. A step is a hit when its
window covers at least one of the sample's boxes.

Baseline: a window placed uniformly at random. For a sample it is computed exactly, as the fraction of all
(gh − w + 1)·(gw − w + 1) window positions that cover a box, and it is averaged over exactly the same
(sample, step) pairs as the precision, so the two numbers are directly comparable per family and per step.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lare.analysis.markdown import markdown_table
from lare.analysis.samples import AnalysisSample, batched, model_inputs
from lare.data.evidence import MIN_BOX_OVERLAP, covers, window_to_pixels

logger = logging.getLogger(__name__)


def window_hits(window: Sequence[int], boxes: Sequence[Sequence[float]], grid: tuple[int, int],
                image_size: tuple[int, int], centre_crop: bool = True) -> bool:
    """Whether the window covers at least one of `boxes`."""
    pixels = window_to_pixels(window, grid, image_size, centre_crop)
    return any(covers(pixels, box) for box in boxes)


def random_window_coverage(boxes: Sequence[Sequence[float]], grid: tuple[int, int], window: tuple[int, int],
                           image_size: tuple[int, int], centre_crop: bool = True) -> float:
    """Exact probability that a uniformly placed window of (rows, cols) cells covers one of `boxes`."""
    grid_h, grid_w = grid
    win_h, win_w = window
    positions = [(r, c) for r in range(grid_h - win_h + 1) for c in range(grid_w - win_w + 1)]
    hits = sum(window_hits((r, c, r + win_h, c + win_w), boxes, grid, image_size, centre_crop) for r, c in positions)
    return hits / len(positions)


@dataclass
class PrecisionCell:
    """Hits over the (sample, step) pairs of one group, against the random-window baseline on the same pairs."""

    n_steps: int = 0
    hits: int = 0
    baseline_sum: float = 0.0

    @property
    def precision(self) -> float | None:
        return self.hits / self.n_steps if self.n_steps else None

    @property
    def baseline(self) -> float | None:
        return self.baseline_sum / self.n_steps if self.n_steps else None

    def add(self, hit: bool, baseline: float) -> None:
        self.n_steps += 1
        self.hits += int(hit)
        self.baseline_sum += baseline

    def to_json(self) -> dict[str, Any]:
        return {"n_steps": self.n_steps, "hits": self.hits, "precision": self.precision, "baseline": self.baseline}


@dataclass
class RefocusPrecisionReport:
    """Refocus precision overall, per question family and per step (1-based), with the random baseline.

    `per_sample` holds, per scored sample: id, family, hits per valid step (list of bool) and its baseline.
    """

    overall: PrecisionCell
    per_family: dict[str, PrecisionCell]
    per_step: dict[int, PrecisionCell]
    n_samples: int
    n_skipped: int
    per_sample: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "rule": f"window ∩ box ≥ {MIN_BOX_OVERLAP:g} · box area, for at least one evidence box",
            "overall": self.overall.to_json(),
            "per_family": {name: cell.to_json() for name, cell in self.per_family.items()},
            "per_step": {str(step): cell.to_json() for step, cell in self.per_step.items()},
            "n_samples": self.n_samples,
            "n_skipped_without_boxes": self.n_skipped,
            "per_sample": self.per_sample,
        }


def refocus_precision(windows: torch.Tensor, step_mask: torch.Tensor, boxes: Sequence[Sequence[Sequence[float]] | None],
                      families: Sequence[str | None], image_sizes: Sequence[tuple[int, int]], grid: tuple[int, int],
                      ids: Sequence[str] | None = None, centre_crop: bool = True) -> RefocusPrecisionReport:
    """Score windows against evidence boxes.

    Args:
        windows: [N, T, 4] (row0, col0, row1, col1) per sample and step, on the `grid` (gh, gw).
        step_mask: [N, T] bool, the steps that ran.
        boxes: per sample, its evidence boxes in pixels (None or empty: the sample is skipped and counted).
        families: per sample, its question family (None is grouped as "unknown").
        image_sizes: per sample, the image size (W, H) the boxes refer to.
        ids: per sample, its id (for `per_sample`).
    """
    n = windows.shape[0]
    if not (len(boxes) == len(families) == len(image_sizes) == n and step_mask.shape == windows.shape[:2]):
        raise ValueError("refocus_precision: windows [N, T, 4], step_mask [N, T], boxes, families and image_sizes "
                         f"must agree on N; got {tuple(windows.shape)}, {tuple(step_mask.shape)}, {len(boxes)}, "
                         f"{len(families)}, {len(image_sizes)}")
    overall, per_family, per_step = PrecisionCell(), {}, {}
    per_sample, skipped = [], 0
    for i in range(n):
        if not boxes[i]:
            skipped += 1
            continue
        family = families[i] or "unknown"
        hits, baselines = [], {}
        for step in range(windows.shape[1]):
            if not bool(step_mask[i, step]):
                continue
            window = [int(v) for v in windows[i, step]]
            size = (window[2] - window[0], window[3] - window[1])
            if size not in baselines:  # every window of a run has the same size; cache the exact baseline
                baselines[size] = random_window_coverage(boxes[i], grid, size, image_sizes[i], centre_crop)
            hit = window_hits(window, boxes[i], grid, image_sizes[i], centre_crop)
            hits.append(hit)
            for cell in (overall, per_family.setdefault(family, PrecisionCell()),
                         per_step.setdefault(step + 1, PrecisionCell())):
                cell.add(hit, baselines[size])
        per_sample.append({"id": ids[i] if ids is not None else str(i), "family": family, "hits": hits,
                           "baseline": float(np.mean(list(baselines.values()))) if baselines else None})
    if skipped:
        logger.info("refocus precision: %d of %d samples have no evidence boxes and are not scored", skipped, n)
    return RefocusPrecisionReport(overall=overall, per_family=dict(sorted(per_family.items())),
                                  per_step=dict(sorted(per_step.items())), n_samples=n - skipped, n_skipped=skipped,
                                  per_sample=per_sample)


@torch.no_grad()
def measure_refocus_precision(model: Any, processor: Any, samples: Sequence[AnalysisSample], batch_size: int = 8,
                              latent_steps: int | None = None) -> RefocusPrecisionReport:
    """Run the latent loop (no decoding needed) on `samples` and score its windows against their evidence boxes."""
    windows, masks = [], []
    for chunk in batched(samples, batch_size):
        inputs = model_inputs(processor, chunk, model.device)
        loop = model.latent_reasoning(**inputs, latent_steps=latent_steps)
        windows.append(loop.windows.cpu())  # [B, T, 4]
        masks.append(loop.step_mask.cpu())  # [B, T]
    side = model.config.grid_size
    centre_crop = bool(getattr(processor.image_processor, "do_center_crop", False))
    return refocus_precision(torch.cat(windows), torch.cat(masks), [s.boxes for s in samples],
                             [s.family for s in samples], [s.image.size for s in samples], (side, side),
                             ids=[s.id for s in samples], centre_crop=centre_crop)


def refocus_precision_markdown(report: RefocusPrecisionReport) -> str:
    """Per-family and per-step tables of precision vs the random-window baseline (for the demo report too)."""
    def rows(cells: dict[Any, PrecisionCell]) -> list[list[Any]]:
        return [[name, cell.n_steps, cell.precision, cell.baseline,
                 None if cell.precision is None else cell.precision - cell.baseline] for name, cell in cells.items()]

    header = ["precision", "steps scored", "window covers evidence", "random window", "difference"]
    text = [
        "# Refocus precision",
        "",
        f"Fraction of latent steps whose window covers an evidence box (window ∩ box ≥ {MIN_BOX_OVERLAP:g} of the "
        f"box), against a uniformly random window of the same size. {report.n_samples} samples scored, "
        f"{report.n_skipped} without evidence boxes skipped.",
        "",
        markdown_table(["family", *header[1:]], rows({**report.per_family, "all": report.overall})),
        markdown_table(["step", *header[1:]], rows(report.per_step)),
    ]
    return "\n".join(text)


def write_refocus_precision(report: RefocusPrecisionReport, out_dir: str | Path) -> dict[str, Path]:
    """Write `refocus_precision.json` and `refocus_precision.md` into `out_dir`."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "refocus_precision.json", "markdown": out / "refocus_precision.md"}
    paths["json"].write_text(json.dumps(report.to_json(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    paths["markdown"].write_text(refocus_precision_markdown(report), encoding="utf-8")
    return paths
