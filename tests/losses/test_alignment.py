import inspect
import math
import os
import socket
import time

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

from lare.losses.alignment import SemanticAlignment, info_nce_logits, symmetric_info_nce


def _lse(values: list[float]) -> float:
    return math.log(sum(math.exp(v) for v in values))


def test_matches_hand_computed_3x3_and_uses_both_directions():
    tau = 0.25
    a = torch.eye(3)
    b = torch.tensor([[1.0, 1.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 2.0]])
    # By hand: â = e_i, b̂ = [(1,1,0)/√2, (0,1,0), (0,0,1)], so S[i][j] = b̂_j[i] / τ.
    r = 1 / math.sqrt(2)
    s = [[r / tau, 0.0, 0.0], [r / tau, 1 / tau, 0.0], [0.0, 0.0, 1 / tau]]
    a_to_b = sum(-s[i][i] + _lse(s[i]) for i in range(3)) / 3  # rows
    b_to_a = sum(-s[j][j] + _lse([s[i][j] for i in range(3)]) for j in range(3)) / 3  # columns
    expected = (a_to_b + b_to_a) / 2

    loss = symmetric_info_nce(a, b, tau)
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    # The example is asymmetric, so a one-direction loss would be distinguishable.
    assert abs(a_to_b - b_to_a) > 0.1
    assert abs(loss.item() - a_to_b) > 0.05 and abs(loss.item() - b_to_a) > 0.05
    # And the loss is symmetric in its arguments.
    assert symmetric_info_nce(b, a, tau).item() == pytest.approx(expected, rel=1e-6)


def test_temperature_sharpens():
    aligned = torch.eye(4) * 3.0  # a perfectly aligned set: a_i = b_i, orthogonal to the others
    taus = [2.0, 1.0, 0.5, 0.1, 0.05]
    losses = [symmetric_info_nce(aligned, aligned.clone(), t).item() for t in taus]
    assert all(x > y for x, y in zip(losses, losses[1:]))
    # Closed form for orthonormal pairs: log(e^{1/τ} + (B-1)) - 1/τ.
    assert losses[2] == pytest.approx(math.log(math.exp(2.0) + 3) - 2.0, rel=1e-6)
    # τ → ∞ flattens the softmax: the loss tends to log B whatever the inputs.
    assert symmetric_info_nce(torch.randn(4, 5), torch.randn(4, 5), 1e6).item() == pytest.approx(math.log(4), rel=1e-5)


def test_logits_and_targets_single_process():
    a, b = torch.randn(5, 3), torch.randn(5, 3)
    logits, targets = info_nce_logits(a, b, 0.1)
    assert logits.shape == (5, 5)
    torch.testing.assert_close(targets, torch.arange(5))
    torch.testing.assert_close(logits, F.normalize(a, dim=-1) @ F.normalize(b, dim=-1).T / 0.1)


@pytest.mark.parametrize("tau", [0.0, -1.0, float("inf"), float("nan"), True])
def test_bad_temperature_raises(tau):
    with pytest.raises(ValueError):
        symmetric_info_nce(torch.randn(2, 3), torch.randn(2, 3), tau)


def test_shape_mismatch_and_empty_batch_raise():
    with pytest.raises(ValueError):
        symmetric_info_nce(torch.randn(2, 3), torch.randn(3, 3), 0.1)
    with pytest.raises(ValueError):
        symmetric_info_nce(torch.randn(0, 3), torch.randn(0, 3), 0.1)


def _alignment_batch(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    latents = torch.randn(4, 3, 8, generator=g)
    latent_mask = torch.tensor([[1, 1, 1], [1, 1, 0], [1, 0, 0], [1, 1, 1]])
    text = torch.randn(4, 5, 8, generator=g)
    text_mask = torch.tensor([[1, 1, 1, 0, 0], [0, 0, 0, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]])
    visual = torch.randn(4, 6, 8, generator=g)
    return latents, latent_mask, text, text_mask, visual


def test_semantic_alignment_excludes_samples_without_text():
    torch.manual_seed(0)
    module = SemanticAlignment(8, shared_dim=16)
    latents, latent_mask, text, text_mask, visual = _alignment_batch()
    loss = module(latents, latent_mask, text, text_mask, visual, temperature=0.1)

    z = module.latent_pool(latents, latent_mask)
    keep = torch.tensor([0, 2, 3])
    expected = symmetric_info_nce(z, module.visual_pool(visual, torch.ones(4, 6)), 0.1) + symmetric_info_nce(
        z[keep], module.text_pool(text[keep], text_mask[keep]), 0.1
    )
    torch.testing.assert_close(loss, expected)

    text_changed = text.clone()
    text_changed[1] = 1e3  # the text-less sample's hidden states must not matter
    torch.testing.assert_close(module(latents, latent_mask, text_changed, text_mask, visual, temperature=0.1), loss)


def test_semantic_alignment_skips_text_term_below_two_samples():
    torch.manual_seed(0)
    module = SemanticAlignment(8, shared_dim=16)
    latents, latent_mask, text, _, visual = _alignment_batch()
    text_mask = torch.zeros(4, 5, dtype=torch.long)
    text_mask[2, :2] = 1  # a single sample with text: nothing to contrast it with
    loss = module(latents, latent_mask, text, text_mask, visual, temperature=0.1)
    vision_only = symmetric_info_nce(module.latent_pool(latents, latent_mask), module.visual_pool(visual, torch.ones(4, 6)), 0.1)
    torch.testing.assert_close(loss, vision_only)
    loss.backward()
    # The skipped head still gets a (zero) gradient so DDP sees every parameter used.
    assert all(p.grad is not None and torch.count_nonzero(p.grad) == 0 for p in module.text_pool.parameters())
    assert any(torch.count_nonzero(p.grad) > 0 for p in module.latent_pool.parameters())


def test_semantic_alignment_defaults():
    assert inspect.signature(SemanticAlignment).parameters["shared_dim"].default == 256
    module = SemanticAlignment(8, visual_dim=12)
    assert module.visual_pool.in_dim == 12 and module.latent_pool.out_dim == 256


# --- distributed (gloo, 2 processes) -----------------------------------------------------------

SIZES = [[2, 2], [3, 1], [2, 0]]  # rows per rank, including unequal and empty ranks
TAU = 0.3


def _global_data(n: int):
    g = torch.Generator().manual_seed(n)
    return torch.randn(n, 5, generator=g), torch.randn(n, 5, generator=g)


def _weights():
    g = torch.Generator().manual_seed(123)
    return torch.randn(5, 4, generator=g), torch.randn(5, 4, generator=g)


def _ddp_worker(rank: int, world: int, port: int, out_dir: str) -> None:
    # A forked child must not reuse the parent's OpenMP pool (it can hang); one thread is plenty here.
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        results = []
        for sizes in SIZES:
            x, y = _global_data(sum(sizes))
            start = sum(sizes[:rank])
            x_local, y_local = x[start : start + sizes[rank]], y[start : start + sizes[rank]]
            w_a, w_b = (w.clone().requires_grad_(True) for w in _weights())
            a, b = x_local @ w_a, y_local @ w_b
            logits, targets = info_nce_logits(a, b, TAU)
            loss = symmetric_info_nce(a, b, TAU)
            loss.backward()
            results.append(
                {
                    "logits_shape": tuple(logits.shape),
                    "targets": targets,
                    "loss": loss.detach(),
                    "grad_a": w_a.grad.clone(),
                    "grad_b": w_b.grad.clone(),
                }
            )
        # SemanticAlignment: each rank has one sample with text, so the global count (2) enables the text term.
        torch.manual_seed(0)
        module = SemanticAlignment(8, shared_dim=16)
        latents, latent_mask, text, text_mask, visual = _alignment_batch()
        text_mask = text_mask.clone()
        text_mask[3] = 0  # globally: samples 0 and 2 have text, one per rank
        local = slice(2 * rank, 2 * rank + 2)
        aligned = module(latents[local], latent_mask[local], text[local], text_mask[local], visual[local], temperature=TAU)
        aligned.backward()
        results.append({"loss": aligned.detach(), "grads": [p.grad.clone() for p in module.parameters()]})
        torch.save(results, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_distributed_matches_single_process(tmp_path):
    world = 2
    # fork, not spawn: the children inherit the imported modules instead of re-importing lare (seconds each).
    method = "fork" if "fork" in torch.multiprocessing.get_all_start_methods() else "spawn"
    workers = mp.start_processes(
        _ddp_worker, args=(world, _free_port(), str(tmp_path)), nprocs=world, join=False, start_method=method
    )
    deadline = time.monotonic() + 120
    while not workers.join(timeout=1):  # raises if a worker failed
        if time.monotonic() > deadline:
            for process in workers.processes:
                process.kill()
            pytest.fail("distributed workers did not finish in 120 s")
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(world)]

    for case, sizes in enumerate(SIZES):
        x, y = _global_data(sum(sizes))
        w_a, w_b = (w.clone().requires_grad_(True) for w in _weights())
        reference = symmetric_info_nce(x @ w_a, y @ w_b, TAU)  # single process, the global batch
        reference.backward()
        per_rank = [ranks[r][case] for r in range(world)]
        for r, result in enumerate(per_rank):
            assert result["logits_shape"] == (sizes[r], sum(sizes))  # negatives span the global batch
            torch.testing.assert_close(result["targets"], torch.arange(sizes[r]) + sum(sizes[:r]))
        # Σ_r l_r = W · L, and DDP's gradient average reproduces the single-process gradient.
        torch.testing.assert_close(sum(res["loss"] for res in per_rank) / world, reference.detach())
        torch.testing.assert_close(sum(res["grad_a"] for res in per_rank) / world, w_a.grad)
        torch.testing.assert_close(sum(res["grad_b"] for res in per_rank) / world, w_b.grad)

    torch.manual_seed(0)
    module = SemanticAlignment(8, shared_dim=16)
    latents, latent_mask, text, text_mask, visual = _alignment_batch()
    text_mask = text_mask.clone()
    text_mask[3] = 0
    reference = module(latents, latent_mask, text, text_mask, visual, temperature=TAU)
    reference.backward()
    per_rank = [ranks[r][-1] for r in range(world)]
    torch.testing.assert_close(sum(res["loss"] for res in per_rank) / world, reference.detach())
    for i, p in enumerate(module.parameters()):
        torch.testing.assert_close(sum(res["grads"][i] for res in per_rank) / world, p.grad)
