"""Evidence boxes on the patch grid: which grid cells hold a record's evidence objects.

Shared by the refocus-precision analysis (does a step's window cover the evidence?) and the optional saliency
grounding loss (pull each step's saliency onto the evidence cells).

Covering rule: a window covers an evidence box when their intersection is at least half of the box's area
(`MIN_BOX_OVERLAP`). Grid-to-pixel mapping: the processors LaRe uses (CLIP-style) resize the shortest edge and
centre-crop a square, so the grid spans the centred square of side min(W, H); without centre cropping the grid
spans the whole image.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

MIN_BOX_OVERLAP = 0.5
Box = tuple[float, float, float, float]  # (x0, y0, x1, y1) in pixels, end-exclusive


def window_to_pixels(window: Sequence[int], grid: tuple[int, int], image_size: tuple[int, int],
                     centre_crop: bool = True) -> Box:
    """A window (row0, col0, row1, col1) on the `grid` (gh, gw) → its pixel box in an image of size (W, H)."""
    width, height = image_size
    grid_h, grid_w = grid
    if centre_crop:
        side = min(width, height)
        left, top, span_w, span_h = (width - side) / 2, (height - side) / 2, side, side
    else:
        left, top, span_w, span_h = 0.0, 0.0, width, height
    row0, col0, row1, col1 = window
    cell_w, cell_h = span_w / grid_w, span_h / grid_h
    return (left + col0 * cell_w, top + row0 * cell_h, left + col1 * cell_w, top + row1 * cell_h)


def covers(window_box: Box, evidence_box: Sequence[float], min_overlap: float = MIN_BOX_OVERLAP) -> bool:
    """Whether the window's intersection with the evidence box is at least `min_overlap` of the box's area."""
    x0, y0, x1, y1 = evidence_box
    area = max(0.0, x1 - x0) * max(0.0, y1 - y0)
    if area == 0:
        return False
    inter_w = min(window_box[2], x1) - max(window_box[0], x0)
    inter_h = min(window_box[3], y1) - max(window_box[1], y0)
    intersection = max(0.0, inter_w) * max(0.0, inter_h)
    return intersection >= min_overlap * area - 1e-9  # tolerance: grid cells of fractional pixel size


def box_cells(box: Sequence[float], image_size: tuple[int, int], grid: tuple[int, int],
              centre_crop: bool = True) -> torch.Tensor:
    """[gh·gw] float mask in raster order: 1 on the grid cell(s) that hold `box`.

    A cell holds the box when it covers it (the half-area rule of `covers`, computed for every cell at once: the
    collator runs this on every training batch). A box larger than a cell is covered by no single cell; it then
    marks every cell it overlaps, so every non-empty box marks at least one cell.
    """
    grid_h, grid_w = grid
    left, top, right, bottom = window_to_pixels((0, 0, grid_h, grid_w), grid, image_size, centre_crop)
    xs = torch.linspace(left, right, grid_w + 1, dtype=torch.float64)  # [gw+1] cell edges
    ys = torch.linspace(top, bottom, grid_h + 1, dtype=torch.float64)  # [gh+1]
    x0, y0, x1, y1 = (float(v) for v in box)
    area = max(0.0, x1 - x0) * max(0.0, y1 - y0)
    if area == 0:
        return torch.zeros(grid_h * grid_w)
    inter_w = (torch.minimum(xs[1:], torch.tensor(x1)) - torch.maximum(xs[:-1], torch.tensor(x0))).clamp_min(0)
    inter_h = (torch.minimum(ys[1:], torch.tensor(y1)) - torch.maximum(ys[:-1], torch.tensor(y0))).clamp_min(0)
    intersection = (inter_h[:, None] * inter_w[None, :]).flatten()  # [gh·gw]
    held = intersection >= MIN_BOX_OVERLAP * area - 1e-9  # tolerance as in `covers`
    return (held if held.any() else intersection > 0).float()


def evidence_cells(boxes: Sequence[Sequence[float]] | None, image_size: tuple[int, int], grid: tuple[int, int],
                   centre_crop: bool = True) -> torch.Tensor:
    """[n_boxes, gh·gw]: `box_cells` of each box, in the record's order (the order its reasoning visits them)."""
    if not boxes:
        return torch.zeros(0, grid[0] * grid[1])
    return torch.stack([box_cells(box, image_size, grid, centre_crop) for box in boxes])
