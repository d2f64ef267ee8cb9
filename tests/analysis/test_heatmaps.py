"""Refocus heatmaps: traces from a model, and the PNG / JSON / markdown they are written to."""

from __future__ import annotations

import json

import torch

from lare.analysis.heatmaps import (
    COLUMN_WIDTH,
    ROW_HEIGHT,
    RefocusTrace,
    collect_heatmaps,
    plot_refocus_grid,
    write_heatmaps,
)
from tests.analysis.pngs import assert_png


def test_collect_and_write_heatmaps(tiny_model, tiny_processor, samples, tmp_path):
    chosen = samples[:3]
    report = collect_heatmaps(tiny_model, tiny_processor, chosen, batch_size=2, max_new_tokens=3, latent_steps=2)
    side = tiny_model.config.grid_size
    assert [e.id for e in report.entries] == [s.id for s in chosen]
    for trace, entry in zip(report.traces, report.entries, strict=True):
        assert trace.saliency.shape == (2, side, side)
        torch.testing.assert_close(trace.saliency.sum(dim=(-1, -2)), torch.ones(2))  # each step sums to 1
        assert entry.steps_taken == 2 and len(entry.windows) == 2
        for r0, c0, r1, c1 in entry.windows:
            assert 0 <= r0 < r1 <= side and 0 <= c0 < c1 <= side
            assert r1 - r0 == tiny_model.config.window
    paths = write_heatmaps(report, tmp_path)
    # Columns: image, T steps, text; one row per sample; 100 dpi.
    assert_png(paths["png"], (round(COLUMN_WIDTH * (2 + 2) * 100), round(ROW_HEIGHT * 3 * 100)))
    saved = json.loads(paths["json"].read_text())
    assert saved["samples"][0]["windows"] == report.entries[0].windows
    assert paths["markdown"].read_text().count("| test_") == 3


def test_halted_steps_are_drawn_blank(samples, tmp_path):
    saliency = torch.rand(3, 8, 8)
    trace = RefocusTrace(image=samples[0].image, saliency=saliency / saliency.sum(dim=(1, 2), keepdim=True),
                         windows=torch.tensor([[0, 0, 4, 4], [2, 2, 6, 6], [-1, -1, -1, -1]]),
                         step_mask=torch.tensor([True, True, False]), title="q", text="an answer")
    path = plot_refocus_grid([trace], tmp_path / "one.png")
    assert_png(path, (round(COLUMN_WIDTH * 5 * 100), round(ROW_HEIGHT * 100)))
