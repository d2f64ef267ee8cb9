"""select_window: the sum-pooled argmax, and its restriction to evidence cells (training with evidence windows)."""

from __future__ import annotations

import torch

from lare.modeling.refocus import select_window


def _grid(values: list[list[float]]) -> torch.Tensor:
    return torch.tensor(values)[None]  # [1, gh, gw]


def test_argmax_of_the_sum_pooled_saliency():
    saliency = _grid([[0.0, 0.1, 0.0], [0.0, 0.2, 0.3], [0.0, 0.3, 0.1]])
    assert select_window(saliency, 1).tolist() == [[1, 2, 2, 3]]
    assert select_window(saliency, 2).tolist() == [[1, 1, 3, 3]]  # 0.2 + 0.3 + 0.3 + 0.1


def test_allowed_cells_restrict_the_window_to_those_over_them():
    saliency = _grid([[0.0, 0.1, 0.0], [0.0, 0.2, 0.3], [0.0, 0.3, 0.1]])
    allowed = torch.zeros(1, 3, 3)
    allowed[0, 0, 1] = 1.0
    assert select_window(saliency, 1, allowed).tolist() == [[0, 1, 1, 2]]
    # Window 2: the best of the windows that contain cell (0, 1).
    assert select_window(saliency, 2, allowed).tolist() == [[0, 1, 2, 3]]


def test_a_sample_without_allowed_cells_is_unrestricted():
    saliency = torch.cat([_grid([[0.1, 0.9], [0.0, 0.0]]), _grid([[0.1, 0.9], [0.0, 0.0]])])
    allowed = torch.zeros(2, 2, 2)
    allowed[0, 1, 0] = 1.0
    assert select_window(saliency, 1, allowed).tolist() == [[1, 0, 2, 1], [0, 1, 1, 2]]
