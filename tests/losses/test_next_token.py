import math

import pytest
import torch

from lare.losses.next_token import next_token_loss


def _manual_ce(row: list[float], target: int) -> float:
    return -row[target] + math.log(sum(math.exp(x) for x in row))


def test_token_mean_over_supervised_positions_only():
    logits = torch.tensor(
        [
            [[1.0, 2.0, 0.5], [0.0, 0.0, 3.0], [9.0, -9.0, 9.0]],
            [[2.0, 1.0, 0.0], [5.0, 5.0, 5.0], [0.3, 0.2, 0.1]],
        ]
    )
    labels = torch.tensor([[1, 2, -100], [0, -100, -100]])
    expected = (
        _manual_ce([1.0, 2.0, 0.5], 1) + _manual_ce([0.0, 0.0, 3.0], 2) + _manual_ce([2.0, 1.0, 0.0], 0)
    ) / 3  # a token mean: sample 0 has 2 supervised tokens, sample 1 has 1
    assert next_token_loss(logits, labels).item() == pytest.approx(expected, rel=1e-6)


def test_no_shift_inside():
    # Position i's logits put all mass on labels[i]; any internal shift would make the loss large.
    labels = torch.tensor([[3, 1, 4, 1]])
    logits = torch.nn.functional.one_hot(labels, 5).float() * 50.0  # [1, 4, 5]
    assert next_token_loss(logits, labels).item() < 1e-6


def test_no_supervised_token_gives_graph_connected_zero():
    logits = torch.randn(2, 3, 7, requires_grad=True)
    loss = next_token_loss(logits, torch.full((2, 3), -100))
    assert loss.item() == 0.0
    loss.backward()
    assert logits.grad is not None and torch.count_nonzero(logits.grad) == 0


def test_half_precision_logits_reduce_in_float32():
    logits = torch.randn(2, 3, 11)
    labels = torch.randint(0, 11, (2, 3))
    loss = next_token_loss(logits.half(), labels)
    assert loss.dtype == torch.float32
    assert loss.item() == pytest.approx(next_token_loss(logits.half().float(), labels).item(), rel=1e-6)


@pytest.mark.parametrize(
    "logits, labels",
    [
        (torch.randn(2, 3), torch.zeros(2, dtype=torch.long)),
        (torch.randn(2, 3, 5), torch.zeros(2, 4, dtype=torch.long)),
        (torch.randn(2, 3, 5), torch.zeros(2, 3)),
    ],
)
def test_bad_inputs_raise(logits, labels):
    with pytest.raises(ValueError):
        next_token_loss(logits, labels)
