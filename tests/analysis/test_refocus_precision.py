"""Refocus precision: the covering rule, the exact random-window baseline and the aggregation (hand-checked)."""

from __future__ import annotations

import json

import pytest
import torch

from lare.analysis.refocus_precision import (
    covers,
    measure_refocus_precision,
    random_window_coverage,
    refocus_precision,
    window_hits,
    window_to_pixels,
    write_refocus_precision,
)

GRID = (8, 8)
SIZE = (64, 64)  # 8 px cells
BOX = [20, 2, 28, 10]  # 8×8 px, 64 px² (a synthetic-benchmark small object)


def test_window_to_pixels_with_and_without_centre_crop():
    assert window_to_pixels((0, 3, 4, 7), GRID, SIZE) == (24.0, 0.0, 56.0, 32.0)
    # A 128×64 image centre-cropped to 64×64: the grid starts 32 px in.
    assert window_to_pixels((0, 0, 8, 8), GRID, (128, 64), centre_crop=True) == (32.0, 0.0, 96.0, 64.0)
    assert window_to_pixels((0, 0, 8, 8), GRID, (128, 64), centre_crop=False) == (0.0, 0.0, 128.0, 64.0)


@pytest.mark.parametrize("window, expected", [
    ((0, 0, 4, 4), True),  # px [0, 32)²: the box lies inside
    ((0, 3, 4, 7), True),  # x [24, 56): 4 of the box's 8 columns → exactly half of its area
    ((1, 0, 5, 4), False),  # y [8, 40): 2 of 8 rows → a quarter
    ((0, 4, 4, 8), False),  # x [32, 64): no overlap
])
def test_covering_rule(window, expected):
    assert window_hits(window, [BOX], GRID, SIZE) is expected


def test_covers_needs_half_the_box():
    assert covers((0, 0, 10, 10), [5, 0, 15, 10])  # 50 of 100 px²
    assert not covers((0, 0, 10, 10), [6, 0, 16, 10])  # 40 of 100 px²
    assert not covers((0, 0, 10, 10), [3, 3, 3, 3])  # empty box


def test_random_window_baseline_is_exact():
    # 5×5 positions of a 4×4 window. Rows: only row0 = 0 overlaps all 8 box rows (row0 = 1: 2 rows, too few);
    # columns col0 = 0, 1, 2 contain the box and col0 = 3 covers half of it: 4 of 25 positions.
    assert random_window_coverage([BOX], GRID, (4, 4), SIZE) == pytest.approx(4 / 25)
    assert random_window_coverage([BOX], GRID, (8, 8), SIZE) == 1.0


def test_precision_per_family_and_step():
    windows = torch.tensor([
        [[0, 0, 4, 4], [0, 4, 4, 8]],  # hit, miss
        [[0, 3, 4, 7], [-1, -1, -1, -1]],  # hit, halted
        [[0, 0, 4, 4], [0, 0, 4, 4]],  # no boxes: skipped
    ])
    step_mask = torch.tensor([[True, True], [True, False], [True, True]])
    report = refocus_precision(windows, step_mask, [[BOX], [BOX], None], ["a", "b", "a"], [SIZE] * 3, GRID,
                               ids=["s0", "s1", "s2"])
    assert (report.n_samples, report.n_skipped) == (2, 1)
    assert (report.overall.n_steps, report.overall.hits) == (3, 2)
    assert report.per_family["a"].precision == pytest.approx(0.5)
    assert report.per_family["b"].precision == 1.0
    assert report.per_step[1].precision == 1.0 and report.per_step[2].precision == 0.0
    assert report.per_step[2].n_steps == 1  # the halted step is not scored
    assert report.overall.baseline == pytest.approx(4 / 25)
    assert report.per_sample[0] == {"id": "s0", "family": "a", "hits": [True, False], "baseline": pytest.approx(0.16)}


def test_measure_on_the_synthetic_benchmark(tiny_model, tiny_processor, samples, tmp_path):
    report = measure_refocus_precision(tiny_model, tiny_processor, samples, batch_size=6, latent_steps=2)
    assert report.n_samples + report.n_skipped == len(samples)
    assert report.overall.n_steps == 2 * report.n_samples
    assert set(report.per_family) <= {"mmbench", "mmstar", "mmvp", "pope", "scienceqa"}
    assert sum(cell.n_steps for cell in report.per_family.values()) == report.overall.n_steps
    assert 0.0 < report.overall.baseline < 1.0
    paths = write_refocus_precision(report, tmp_path)
    assert json.loads(paths["json"].read_text())["overall"]["n_steps"] == report.overall.n_steps
    assert "random window" in paths["markdown"].read_text()
