import pytest
import torch

from lare.losses.pooling import HybridMeanMaxPool


def _identity_pool(dim: int) -> HybridMeanMaxPool:
    """A pool whose projection is the identity, so its output is exactly [mean ‖ max]."""
    pool = HybridMeanMaxPool(dim, 2 * dim)
    with torch.no_grad():
        pool.proj.weight.copy_(torch.eye(2 * dim))
        pool.proj.bias.zero_()
    return pool


def test_masked_mean_and_max_ignore_padding():
    tokens = torch.tensor(
        [
            [[1.0, -2.0], [3.0, 4.0], [100.0, 100.0]],  # last token padded, with a value that would win the max
            [[-5.0, -6.0], [-1.0, -7.0], [-3.0, 2.0]],
        ]
    )
    mask = torch.tensor([[1, 1, 0], [1, 0, 1]])
    out = _identity_pool(2)(tokens, mask)
    expected = torch.tensor(
        [
            [(1 + 3) / 2, (-2 + 4) / 2, 3.0, 4.0],
            [(-5 - 3) / 2, (-6 + 2) / 2, -3.0, 2.0],
        ]
    )
    torch.testing.assert_close(out, expected)


def test_padded_tokens_get_no_gradient_and_do_not_change_output():
    pool = HybridMeanMaxPool(4, 3)
    tokens = torch.randn(2, 5, 4, requires_grad=True)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 0, 0, 0, 0]], dtype=torch.bool)
    out = pool(tokens, mask)
    out.sum().backward()
    assert torch.count_nonzero(tokens.grad[~mask]) == 0
    changed = tokens.detach().clone()
    changed[~mask] = torch.randn_like(changed[~mask]) * 1e3
    torch.testing.assert_close(pool(changed, mask), out.detach())


def test_all_zero_row_is_an_error():
    pool = HybridMeanMaxPool(4, 3)
    with pytest.raises(ValueError, match=r"rows \[1\]"):
        pool(torch.randn(2, 3, 4), torch.tensor([[1, 0, 0], [0, 0, 0]]))


@pytest.mark.parametrize("in_dim, out_dim", [(0, 3), (4, -1), (4.0, 3), (True, 3)])
def test_bad_dims_raise(in_dim, out_dim):
    with pytest.raises(ValueError):
        HybridMeanMaxPool(in_dim, out_dim)


def test_shape_mismatch_raises():
    pool = HybridMeanMaxPool(4, 3)
    with pytest.raises(ValueError):
        pool(torch.randn(2, 3, 5), torch.ones(2, 3))
    with pytest.raises(ValueError):
        pool(torch.randn(2, 3, 4), torch.ones(2, 4))
