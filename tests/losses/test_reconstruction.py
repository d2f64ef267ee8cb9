import dataclasses
import json
from unittest import mock

import pytest
import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL

from lare.losses.reconstruction import ImageReconstructor, ReconstructorConfig, crop_windows

D = 24


@pytest.fixture()
def reconstructor() -> ImageReconstructor:
    torch.manual_seed(0)
    return ImageReconstructor(ReconstructorConfig.tiny(D))


def _inputs(seed: int = 0, batch: int = 2):
    g = torch.Generator().manual_seed(seed)
    latents = torch.randn(batch, 4, D, generator=g)
    mask = torch.ones(batch, 4, dtype=torch.long)
    mask[0, 3] = 0
    images = torch.rand(batch, 3, 24, 20, generator=g) * 2 - 1
    return latents, mask, images


# --- config ---------------------------------------------------------------------------------------


def test_config_round_trip_and_presets():
    tiny = ReconstructorConfig.tiny(D)
    assert ReconstructorConfig.from_dict(json.loads(json.dumps(tiny.to_dict()))) == tiny
    assert (tiny.num_train_timesteps, tiny.beta_start, tiny.beta_end, tiny.vae) == (1000, 1e-4, 0.02, None)
    paper = ReconstructorConfig.paper(896, vae="some/kl-f16")
    assert paper.block_out_channels == (96, 192, 384, 512)
    assert (paper.layers_per_block, paper.cross_attention_dim, paper.attention_head_dim) == (3, 768, 64)
    assert paper.down_block_types[1:3] == ("CrossAttnDownBlock2D",) * 2
    assert paper.down_block_types[0] == paper.down_block_types[3] == "DownBlock2D"
    assert paper.up_block_types[1:3] == ("CrossAttnUpBlock2D",) * 2
    assert paper.vae == "some/kl-f16"
    assert paper.attention_levels() == [1, 2, 3]  # the two middle levels and the mid block


@pytest.mark.parametrize(
    "change",
    [
        {"latent_dim": 0},
        {"block_out_channels": (32,)},  # length differs from the block types
        {"down_block_types": ("DownBlock2D", "AttnDownBlock2D")},
        {"attention_head_dim": 12},  # does not divide 64
        {"norm_num_groups": 12},
        {"beta_start": 0.05},  # larger than beta_end
        {"beta_end": 1.5},
        {"sample_size": 15},
        {"vae": ""},
    ],
)
def test_config_validation_names_the_bad_value(change):
    with pytest.raises(ValueError, match=next(iter(change))):
        dataclasses.replace(ReconstructorConfig.tiny(D), **change)


def test_from_dict_rejects_unknown_keys():
    with pytest.raises(ValueError, match="bogus"):
        ReconstructorConfig.from_dict({**ReconstructorConfig.tiny(D).to_dict(), "bogus": 1})


def test_attention_head_dim_is_the_real_head_dim(reconstructor):
    # diffusers reads its own `attention_head_dim` as a head count; ours must be the per-head size.
    attentions = [m for n, m in reconstructor.unet.named_modules() if n.endswith("attn2")]
    assert attentions and all(m.inner_dim // m.heads == 8 for m in attentions)


# --- denoising loss -------------------------------------------------------------------------------


def test_forward_noises_the_encoded_target_with_the_scheduler(reconstructor):
    latents, mask, images = _inputs()
    scheduler = reconstructor.scheduler
    with mock.patch.object(scheduler, "add_noise", wraps=scheduler.add_noise) as add_noise:
        loss = reconstructor(latents, mask, images, generator=torch.Generator().manual_seed(0))
    add_noise.assert_called_once()
    x0, noise, timesteps = add_noise.call_args.args
    torch.testing.assert_close(x0, reconstructor.encode_target(images))
    assert x0.shape == noise.shape == (2, 3, 16, 16)
    assert timesteps.shape == (2,) and timesteps.dtype == torch.long
    assert 0 <= int(timesteps.min()) and int(timesteps.max()) < 1000
    assert loss.dim() == 0 and loss.item() > 0


def test_gradient_reaches_projection_and_unet(reconstructor):
    latents, mask, images = _inputs()
    latents.requires_grad_(True)
    reconstructor(latents, mask, images, generator=torch.Generator().manual_seed(0)).backward()
    assert torch.count_nonzero(reconstructor.latent_proj.weight.grad) > 0
    assert torch.count_nonzero(reconstructor.unet.conv_in.weight.grad) > 0
    assert torch.count_nonzero(reconstructor.unet.mid_block.attentions[0].transformer_blocks[0].attn2.to_k.weight.grad) > 0
    assert torch.count_nonzero(latents.grad[0, :3]) > 0
    assert torch.count_nonzero(latents.grad[0, 3]) == 0  # the masked latent is invisible to the U-Net


def test_forward_is_seeded_and_masked_latents_do_not_matter(reconstructor):
    latents, mask, images = _inputs()
    first = reconstructor(latents, mask, images, generator=torch.Generator().manual_seed(3))
    changed = latents.clone()
    changed[0, 3] = 100.0  # masked slot
    second = reconstructor(changed, mask, images, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(first, second)
    third = reconstructor(latents, mask, images, generator=torch.Generator().manual_seed(4))
    assert not torch.allclose(first, third)


def test_pixel_target_is_the_antialiased_resize(reconstructor):
    images = torch.rand(2, 3, 32, 32) * 2 - 1
    expected = F.interpolate(images, size=(16, 16), mode="bilinear", antialias=True, align_corners=False)
    torch.testing.assert_close(reconstructor.encode_target(images), expected)
    already = torch.rand(1, 3, 16, 16)
    assert torch.equal(reconstructor.encode_target(already), already)


def test_sample_shape_and_determinism(reconstructor):
    latents, mask, _ = _inputs()
    first = reconstructor.sample(latents, mask, steps=2, generator=torch.Generator().manual_seed(0))
    assert first.shape == (2, 3, 16, 16) and first.dtype == torch.float32
    assert float(first.abs().max()) <= 1.0
    again = reconstructor.sample(latents, mask, steps=2, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(first, again, rtol=0, atol=0)
    other = reconstructor.sample(latents, mask, steps=2, generator=torch.Generator().manual_seed(1))
    assert not torch.allclose(first, other)
    ddpm = reconstructor.sample(latents, steps=2, generator=torch.Generator().manual_seed(0), sampler="ddpm")
    assert ddpm.shape == (2, 3, 16, 16)
    # Sampling must not disturb the training scheduler.
    assert reconstructor.scheduler.num_inference_steps is None


def test_bad_inputs_raise(reconstructor):
    latents, mask, images = _inputs()
    with pytest.raises(ValueError, match="no valid latent"):
        reconstructor(latents, torch.zeros_like(mask), images)
    with pytest.raises(ValueError, match="latents"):
        reconstructor(latents[..., :5], mask, images)
    with pytest.raises(ValueError, match="steps"):
        reconstructor.sample(latents, steps=0)


# --- frozen VAE -----------------------------------------------------------------------------------


def test_vae_is_loaded_by_path_frozen_and_unregistered(tmp_path):
    torch.manual_seed(0)
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        block_out_channels=(8, 16),
        latent_channels=4,
        norm_num_groups=8,
        sample_size=16,
    )
    vae.save_pretrained(tmp_path / "vae")
    reconstructor = ImageReconstructor(ReconstructorConfig.tiny(D, vae=str(tmp_path / "vae")))
    loaded = reconstructor.vae
    assert loaded is not None
    torch.testing.assert_close(loaded.encoder.conv_in.weight, vae.encoder.conv_in.weight)

    vae_params = {id(p) for p in loaded.parameters()}
    assert not vae_params & {id(p) for p in reconstructor.parameters()}
    assert not any(key.startswith(("vae", "_frozen")) for key in reconstructor.state_dict())
    assert all(not p.requires_grad for p in loaded.parameters())

    latents, mask, images = _inputs()
    target = reconstructor.encode_target(images)
    assert target.shape == (2, 4, 8, 8)  # the VAE's latent shape: 4 channels, 16 px / 2
    assert reconstructor.unet.config.in_channels == 4

    reconstructor.train()
    assert not loaded.training  # .train() does not reach the unregistered VAE
    reconstructor(latents, mask, images, generator=torch.Generator().manual_seed(0)).backward()
    assert all(p.grad is None for p in loaded.parameters())
    assert reconstructor.latent_proj.weight.grad is not None

    images_out = reconstructor.sample(latents, mask, steps=2, generator=torch.Generator().manual_seed(0))
    assert images_out.shape == (2, 3, 16, 16)


# --- crop_windows ---------------------------------------------------------------------------------


def test_crop_windows_exact_pixels():
    pixels = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).reshape(2, 3, 8, 8)
    # A 4×4 grid on 8×8 pixels: one patch = 2×2 pixels.
    windows = torch.tensor(
        [
            [[0, 0, 1, 1], [1, 1, 2, 2], [3, 3, 4, 4]],  # union (0,0)-(2,2); the last step is masked out
            [[2, 1, 4, 3], [2, 2, 4, 3], [0, 0, 1, 1]],  # union (2,1)-(4,3)
        ]
    )
    step_mask = torch.tensor([[True, True, False], [True, True, False]])
    out = crop_windows(pixels, windows, step_mask, grid=(4, 4), out_size=4)
    assert out.shape == (2, 3, 4, 4)
    assert torch.equal(out[0], pixels[0, :, 0:4, 0:4])
    assert torch.equal(out[1], pixels[1, :, 4:8, 2:6])


def test_crop_windows_resizes_and_rounds_outwards():
    pixels = torch.rand(1, 3, 10, 10)
    # Grid 4×4 on 10 px: rows 1..3 → pixels floor(2.5)=2 .. ceil(7.5)=8.
    out = crop_windows(pixels, torch.tensor([[[1, 0, 3, 4]]]), torch.tensor([[True]]), grid=(4, 4), out_size=5)
    expected = F.interpolate(pixels[:, :, 2:8, 0:10], size=(5, 5), mode="bilinear", antialias=True, align_corners=False)
    torch.testing.assert_close(out, expected)


def test_crop_windows_rejects_bad_windows():
    pixels = torch.rand(1, 3, 8, 8)
    with pytest.raises(ValueError, match="no valid step"):
        crop_windows(pixels, torch.tensor([[[0, 0, 1, 1]]]), torch.tensor([[False]]), grid=(4, 4), out_size=4)
    with pytest.raises(ValueError, match="outside"):
        crop_windows(pixels, torch.tensor([[[0, 0, 5, 1]]]), torch.tensor([[True]]), grid=(4, 4), out_size=4)
    with pytest.raises(ValueError, match="outside"):
        crop_windows(pixels, torch.tensor([[[2, 0, 2, 1]]]), torch.tensor([[True]]), grid=(4, 4), out_size=4)
