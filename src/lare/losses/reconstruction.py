"""Image reconstruction from the latents (the paper's Eq. 7): a conditional denoising loss.

A small diffusers ``UNet2DConditionModel`` cross-attends to the (projected) latent tokens and predicts
the noise ε added by a ``DDPMScheduler`` (linear β) to the target: the image crop under the refocus
windows, either as pixels or as latents of an optional frozen ``AutoencoderKL``.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL, DDIMScheduler, DDPMScheduler, UNet2DConditionModel
from diffusers.utils.torch_utils import randn_tensor
from torch import nn

logger = logging.getLogger(__name__)

_DOWN_BLOCKS = frozenset({"DownBlock2D", "CrossAttnDownBlock2D"})
_UP_BLOCKS = frozenset({"UpBlock2D", "CrossAttnUpBlock2D"})


def _is_positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


@dataclass
class ReconstructorConfig:
    """Settings of :class:`ImageReconstructor`.

    Attributes:
        latent_dim: ``D``, the size of the latent tokens that condition the U-Net.
        sample_size: side length, in pixels, of the square reconstruction target (the crop is resized to
            it). With a VAE the U-Net works on ``sample_size / f`` latents (``f`` = the VAE's
            downsampling factor).
        in_channels: image channels (3).
        block_out_channels: U-Net channels per resolution level.
        layers_per_block: ResNet layers per U-Net block.
        cross_attention_dim: size the latents are projected to before the U-Net cross-attends to them.
        attention_head_dim: the real per-head dimension of the U-Net's attention layers; the number of
            heads of a level is its channel count divided by this.
        down_block_types: diffusers block names, one per level (``DownBlock2D`` / ``CrossAttnDownBlock2D``).
        up_block_types: diffusers block names, one per level, coarse to fine (``UpBlock2D`` /
            ``CrossAttnUpBlock2D``). The mid block always cross-attends.
        norm_num_groups: GroupNorm groups; must divide every entry of ``block_out_channels``.
        num_train_timesteps: DDPM diffusion steps.
        beta_start: first β of the linear schedule.
        beta_end: last β of the linear schedule.
        vae: directory or Hub id of a frozen ``AutoencoderKL`` (loaded with ``from_pretrained``) whose
            latents are the target; ``None`` reconstructs pixels.
    """

    latent_dim: int
    block_out_channels: tuple[int, ...]
    layers_per_block: int
    cross_attention_dim: int
    attention_head_dim: int
    down_block_types: tuple[str, ...]
    up_block_types: tuple[str, ...]
    sample_size: int = 16
    in_channels: int = 3
    norm_num_groups: int = 32
    num_train_timesteps: int = 1000
    beta_start: float = 1e-4
    beta_end: float = 0.02
    vae: str | None = field(default=None)

    def __post_init__(self) -> None:
        # from_dict / YAML give lists; tuples keep the config hashable and comparable.
        self.block_out_channels = tuple(self.block_out_channels)
        self.down_block_types = tuple(self.down_block_types)
        self.up_block_types = tuple(self.up_block_types)
        for name in (
            "latent_dim",
            "sample_size",
            "in_channels",
            "layers_per_block",
            "cross_attention_dim",
            "attention_head_dim",
            "norm_num_groups",
            "num_train_timesteps",
        ):
            if not _is_positive_int(getattr(self, name)):
                raise ValueError(f"ReconstructorConfig.{name} must be a positive int, got {getattr(self, name)!r}")
        levels = len(self.block_out_channels)
        if levels == 0 or not all(_is_positive_int(c) for c in self.block_out_channels):
            raise ValueError(
                f"ReconstructorConfig.block_out_channels must be a non-empty tuple of positive ints, got {self.block_out_channels!r}"
            )
        if len(self.down_block_types) != levels or len(self.up_block_types) != levels:
            raise ValueError(
                "ReconstructorConfig: block_out_channels, down_block_types and up_block_types must have the same "
                f"length, got {levels}, {len(self.down_block_types)} and {len(self.up_block_types)}"
            )
        bad = [b for b in self.down_block_types if b not in _DOWN_BLOCKS]
        if bad:
            raise ValueError(f"ReconstructorConfig.down_block_types: unsupported {bad}; use {sorted(_DOWN_BLOCKS)}")
        bad = [b for b in self.up_block_types if b not in _UP_BLOCKS]
        if bad:
            raise ValueError(f"ReconstructorConfig.up_block_types: unsupported {bad}; use {sorted(_UP_BLOCKS)}")
        for channels in self.block_out_channels:
            if channels % self.norm_num_groups:
                raise ValueError(
                    f"ReconstructorConfig.norm_num_groups={self.norm_num_groups} does not divide block_out_channels entry {channels}"
                )
        for level in self.attention_levels():
            if self.block_out_channels[level] % self.attention_head_dim:
                raise ValueError(
                    f"ReconstructorConfig.attention_head_dim={self.attention_head_dim} does not divide "
                    f"block_out_channels[{level}]={self.block_out_channels[level]}, a level with attention"
                )
        if self.sample_size % 2 ** (levels - 1):
            raise ValueError(
                f"ReconstructorConfig.sample_size={self.sample_size} must be divisible by 2**(levels-1)={2 ** (levels - 1)}"
            )
        for name in ("beta_start", "beta_end"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1:
                raise ValueError(f"ReconstructorConfig.{name} must be a float in (0, 1), got {value!r}")
        if self.beta_start >= self.beta_end:
            raise ValueError(
                f"ReconstructorConfig: beta_start={self.beta_start} must be smaller than beta_end={self.beta_end}"
            )
        if self.vae is not None and (not isinstance(self.vae, str) or not self.vae):
            raise ValueError(f"ReconstructorConfig.vae must be None or a non-empty path / Hub id, got {self.vae!r}")

    def attention_levels(self) -> list[int]:
        """Indices of the levels whose blocks (down, up, or the mid block at the last level) have attention."""
        levels = len(self.block_out_channels)
        with_attention = {levels - 1}  # the mid block, at the coarsest level
        with_attention.update(i for i, b in enumerate(self.down_block_types) if b.startswith("CrossAttn"))
        # up block j runs at level (levels - 1 - j).
        with_attention.update(levels - 1 - j for j, b in enumerate(self.up_block_types) if b.startswith("CrossAttn"))
        return sorted(with_attention)

    def to_dict(self) -> dict[str, Any]:
        """A JSON/YAML-friendly dict (tuples become lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ReconstructorConfig:
        """Inverse of :meth:`to_dict`; unknown keys are an error rather than being silently dropped."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"ReconstructorConfig.from_dict: unknown keys {unknown}")
        return cls(**data)

    @classmethod
    def tiny(cls, latent_dim: int, vae: str | None = None) -> ReconstructorConfig:
        """A CPU-sized preset: a 2-level U-Net on a 16×16 pixel target; runs a step in milliseconds."""
        return cls(
            latent_dim=latent_dim,
            sample_size=16,
            block_out_channels=(32, 64),
            layers_per_block=1,
            cross_attention_dim=32,
            attention_head_dim=8,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
            norm_num_groups=8,
            vae=vae,
        )

    @classmethod
    def paper(cls, latent_dim: int, vae: str) -> ReconstructorConfig:
        """The paper's U-Net (Table 7) on latents of a frozen KL VAE (the paper uses KL-16).

        Blocks (96, 192, 384, 512), 3 layers per block, cross-attention dim 768, head dim 64, cross-attention
        in the two middle levels (and the mid block). The crop is resized to 256 px, i.e. a 16×16 latent
        for an f=16 VAE.

        Args:
            latent_dim: the latent (LLM hidden) size.
            vae: directory or Hub id of the ``AutoencoderKL``.
        """
        return cls(
            latent_dim=latent_dim,
            sample_size=256,
            block_out_channels=(96, 192, 384, 512),
            layers_per_block=3,
            cross_attention_dim=768,
            attention_head_dim=64,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
            norm_num_groups=32,
            vae=vae,
        )


class ImageReconstructor(nn.Module):
    """Conditional ε-prediction denoiser that reconstructs the refocused image crop from the latents.

    Trainable parts: ``latent_proj`` (``D → cross_attention_dim``) and ``unet``. The optional VAE is
    loaded from ``config.vae``, frozen (``requires_grad=False``, eval mode, run under ``no_grad``) and
    deliberately **not registered** as a submodule: it is absent from ``parameters()`` (so no optimizer
    trains it), from ``state_dict()`` (checkpoints stay small; the config keeps its path) and from
    ``.to()`` / ``.train()``. It follows the input's device lazily when used and stays in eval mode.

    Images are expected in ``[-1, 1]`` (the range the DDPM target and a KL VAE both assume); map
    processor-normalised pixel values back to it before calling.
    """

    def __init__(self, config: ReconstructorConfig) -> None:
        super().__init__()
        self.config = config
        channels, size = config.in_channels, config.sample_size
        vae: AutoencoderKL | None = None
        if config.vae is not None:
            vae = AutoencoderKL.from_pretrained(config.vae)
            vae.requires_grad_(False)
            vae.eval()
            if vae.config.in_channels != config.in_channels:
                raise ValueError(
                    f"VAE {config.vae!r} takes {vae.config.in_channels} channels, config.in_channels is {config.in_channels}"
                )
            factor = 2 ** (len(vae.config.block_out_channels) - 1)
            if size % factor or (size // factor) % 2 ** (len(config.block_out_channels) - 1):
                raise ValueError(
                    f"sample_size={size} must be divisible by the VAE factor {factor}, and the latent size by "
                    f"2**(U-Net levels - 1)={2 ** (len(config.block_out_channels) - 1)}"
                )
            channels, size = vae.config.latent_channels, size // factor
            logger.info("Reconstruction target: %s latents, %d×%d×%d", config.vae, channels, size, size)
        # A plain tuple is not registered by nn.Module, which is exactly what keeps the frozen VAE out
        # of parameters(), state_dict() and the optimizer.
        self._frozen_vae: tuple[AutoencoderKL, ...] = (vae,) if vae is not None else ()
        self.target_channels = channels
        self.target_size = size

        self.latent_proj = nn.Linear(config.latent_dim, config.cross_attention_dim)
        # diffusers' UNet2DConditionModel reads `attention_head_dim` as the number of heads per level
        # (a documented naming quirk; `num_attention_heads` is rejected), so heads are derived here from
        # the real head dim. Levels without attention ignore the value.
        attention_levels = set(config.attention_levels())
        heads = tuple(
            c // config.attention_head_dim if i in attention_levels else 1
            for i, c in enumerate(config.block_out_channels)
        )
        self.unet = UNet2DConditionModel(
            sample_size=size,
            in_channels=channels,
            out_channels=channels,
            down_block_types=config.down_block_types,
            up_block_types=config.up_block_types,
            block_out_channels=config.block_out_channels,
            layers_per_block=config.layers_per_block,
            cross_attention_dim=config.cross_attention_dim,
            attention_head_dim=heads,
            norm_num_groups=config.norm_num_groups,
        )
        self.scheduler = DDPMScheduler(**self._scheduler_kwargs())

    @property
    def vae(self) -> AutoencoderKL | None:
        """The frozen VAE, or ``None`` when the target is pixels."""
        return self._frozen_vae[0] if self._frozen_vae else None

    def _scheduler_kwargs(self) -> dict[str, Any]:
        return {
            "num_train_timesteps": self.config.num_train_timesteps,
            "beta_start": self.config.beta_start,
            "beta_end": self.config.beta_end,
            "beta_schedule": "linear",
            "prediction_type": "epsilon",
            # Pixels live in [-1, 1], so clipping the predicted x0 while sampling is safe; scaled VAE
            # latents do not, and clipping them would distort the decoded image.
            "clip_sample": self.vae is None,
        }

    def _vae_on(self, device: torch.device) -> AutoencoderKL:
        vae = self.vae
        if vae is None:
            raise RuntimeError("ImageReconstructor has no VAE (config.vae is None)")
        return vae.to(device)  # no-op when already there; the VAE is not moved by self.to()

    def encode_target(self, images: torch.Tensor) -> torch.Tensor:
        """The clean diffusion target ``x0`` of a batch of images.

        Args:
            images: ``[B, 3, H, W]`` in ``[-1, 1]``.

        Returns:
            Without a VAE, ``[B, 3, s, s]``: the images resized to ``s = sample_size`` (antialiased bilinear).
            With a VAE, ``[B, C_vae, s/f, s/f]``: the posterior mode of the resized images, shifted by
            ``shift_factor`` (when the VAE has one) and scaled by ``scaling_factor``. No gradient flows
            through the VAE.
        """
        if images.dim() != 4 or images.shape[1] != self.config.in_channels:
            raise ValueError(f"images must be [B, {self.config.in_channels}, H, W], got shape {tuple(images.shape)}")
        size = self.config.sample_size
        pixels = images
        if tuple(images.shape[-2:]) != (size, size):
            pixels = F.interpolate(
                images.float(), size=(size, size), mode="bilinear", antialias=True, align_corners=False
            )  # [B, 3, s, s]
        if self.vae is None:
            return pixels
        vae = self._vae_on(images.device)
        with torch.no_grad():
            posterior = vae.encode(pixels.to(vae.dtype)).latent_dist
            # The mode, not a sample: a deterministic target; KL-VAE posteriors are nearly deterministic.
            x0 = posterior.mode()  # [B, C_vae, s/f, s/f]
            shift = vae.config.shift_factor or 0.0
            return (x0 - shift) * vae.config.scaling_factor

    def _condition(
        self, latents: torch.Tensor, latent_mask: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        if latents.dim() != 3 or latents.shape[-1] != self.config.latent_dim:
            raise ValueError(f"latents must be [B, M, {self.config.latent_dim}], got shape {tuple(latents.shape)}")
        if latent_mask is not None:
            if latent_mask.shape != latents.shape[:2]:
                raise ValueError(
                    f"latent_mask shape {tuple(latent_mask.shape)} does not match latents' [B, M] = {tuple(latents.shape[:2])}"
                )
            empty = (~latent_mask.bool().any(dim=-1)).nonzero().flatten()
            if empty.numel() > 0:
                raise ValueError(f"ImageReconstructor: samples {empty.tolist()} have no valid latent to condition on")
            latent_mask = latent_mask.to(self.unet.dtype)  # [B, M]; diffusers turns it into an additive bias
        cond = self.latent_proj(latents.to(self.latent_proj.weight.dtype))  # [B, M, cross_attention_dim]
        return cond, latent_mask

    def forward(
        self,
        latents: torch.Tensor,
        latent_mask: torch.Tensor | None,
        images: torch.Tensor,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """ε-prediction loss ``‖ε − ε_θ(√ᾱ_t x0 + √(1−ᾱ_t) ε, t, latents)‖²`` (mean over all elements).

        Args:
            latents: ``[B, M, D]`` all latent tokens of each sample.
            latent_mask: ``[B, M]`` (1 = valid latent) or ``None`` (all valid); masked latents are hidden
                from the U-Net's cross-attention.
            images: ``[B, 3, H, W]`` in ``[-1, 1]``: the reconstruction target (the window crop, see
                :func:`crop_windows`).
            generator: seeds the noise and the timesteps (drawn uniformly from ``[0, num_train_timesteps)``).

        Returns:
            A 0-dim float32 tensor.
        """
        if images.shape[0] != latents.shape[0]:
            raise ValueError(f"images batch {images.shape[0]} does not match latents batch {latents.shape[0]}")
        cond, mask = self._condition(latents, latent_mask)  # [B, M, C_x], [B, M]
        x0 = self.encode_target(images).to(self.unet.dtype)  # [B, C, s, s]
        noise = randn_tensor(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)  # [B, C, s, s]
        # Drawn on the generator's device so a CPU generator seeds GPU training reproducibly.
        timesteps = torch.randint(
            0,
            self.scheduler.config.num_train_timesteps,
            (x0.shape[0],),
            generator=generator,
            device=generator.device if generator is not None else x0.device,
        ).to(x0.device)  # [B]
        noisy = self.scheduler.add_noise(x0, noise, timesteps)  # [B, C, s, s]
        predicted = self.unet(noisy, timesteps, encoder_hidden_states=cond, encoder_attention_mask=mask).sample
        return F.mse_loss(predicted.float(), noise.float())

    @torch.no_grad()
    def sample(
        self,
        latents: torch.Tensor,
        latent_mask: torch.Tensor | None = None,
        steps: int = 50,
        generator: torch.Generator | None = None,
        sampler: Literal["ddim", "ddpm"] = "ddim",
    ) -> torch.Tensor:
        """Generate images from latents by reverse diffusion (the paper's Fig. 4).

        Args:
            latents: ``[B, M, D]``.
            latent_mask: ``[B, M]`` or ``None``.
            steps: number of denoising steps, ``1 ≤ steps ≤ num_train_timesteps``.
            generator: seeds the initial noise (and DDPM's per-step noise): a fixed seed gives the same images.
            sampler: ``"ddim"`` (deterministic given the initial noise, η = 0) or ``"ddpm"`` (ancestral).

        Returns:
            ``[B, 3, h, w]`` float32 images in ``[-1, 1]``: ``h = w = sample_size``, decoded through the
            VAE when there is one.
        """
        if not _is_positive_int(steps) or steps > self.config.num_train_timesteps:
            raise ValueError(f"steps must be an int in [1, {self.config.num_train_timesteps}], got {steps!r}")
        if sampler == "ddim":
            scheduler: DDIMScheduler | DDPMScheduler = DDIMScheduler(**self._scheduler_kwargs())
        elif sampler == "ddpm":
            scheduler = DDPMScheduler(**self._scheduler_kwargs())
        else:
            raise ValueError(f"sampler must be 'ddim' or 'ddpm', got {sampler!r}")
        cond, mask = self._condition(latents, latent_mask)  # [B, M, C_x], [B, M]
        device = cond.device
        # A fresh scheduler per call: set_timesteps mutates it, and the training one must stay intact.
        scheduler.set_timesteps(steps, device=device)
        shape = (latents.shape[0], self.target_channels, self.target_size, self.target_size)
        x = randn_tensor(shape, generator=generator, device=device, dtype=self.unet.dtype)  # [B, C, s', s']
        x = x * scheduler.init_noise_sigma
        for t in scheduler.timesteps:
            model_input = scheduler.scale_model_input(x, t)  # [B, C, s', s']
            eps = self.unet(model_input, t, encoder_hidden_states=cond, encoder_attention_mask=mask).sample
            x = scheduler.step(eps, t, x, generator=generator).prev_sample  # [B, C, s', s']
        if self.vae is not None:
            vae = self._vae_on(device)
            shift = vae.config.shift_factor or 0.0
            x = vae.decode((x / vae.config.scaling_factor + shift).to(vae.dtype)).sample  # [B, 3, s, s]
        return x.float().clamp(-1.0, 1.0)


def crop_windows(
    pixel_values: torch.Tensor,
    windows: torch.Tensor,
    step_mask: torch.Tensor,
    grid: tuple[int, int],
    out_size: int,
) -> torch.Tensor:
    """The image crop under the chosen refocus windows: the reconstruction target.

    For each sample, the bounding box of the union of its valid windows (in patch-grid coordinates) is
    converted to pixels (rows scale by ``H / gh``, columns by ``W / gw``; starts round down, ends round
    up, so the box always covers the windows), cropped, and resized to ``out_size × out_size`` with
    antialiased bilinear interpolation (a non-square box is stretched). A box that is already
    ``out_size × out_size`` is returned unresampled.

    Args:
        pixel_values: ``[B, C, H, W]``, any value range (it is preserved up to interpolation).
        windows: ``[B, T, 4]`` integer ``(row0, col0, row1, col1)``, end-exclusive, on a ``gh × gw`` grid.
        step_mask: ``[B, T]`` bool; false marks a step that did not run (halted); its window is ignored.
        grid: ``(gh, gw)``, the patch grid of the vision tower.
        out_size: side length of the output.

    Returns:
        ``[B, C, out_size, out_size]`` in ``pixel_values``' dtype.

    Raises:
        ValueError: on bad shapes, a sample with no valid step, or a valid window outside the grid / empty.
    """
    if pixel_values.dim() != 4:
        raise ValueError(f"pixel_values must be [B, C, H, W], got shape {tuple(pixel_values.shape)}")
    batch, _, height, width = pixel_values.shape
    if windows.dim() != 3 or windows.shape[0] != batch or windows.shape[-1] != 4:
        raise ValueError(f"windows must be [{batch}, T, 4], got shape {tuple(windows.shape)}")
    if step_mask.shape != windows.shape[:2]:
        raise ValueError(f"step_mask shape {tuple(step_mask.shape)} does not match windows' [B, T] = {tuple(windows.shape[:2])}")
    grid_h, grid_w = grid
    if not (_is_positive_int(grid_h) and _is_positive_int(grid_w)):
        raise ValueError(f"grid must be two positive ints, got {grid!r}")
    if not _is_positive_int(out_size):
        raise ValueError(f"out_size must be a positive int, got {out_size!r}")

    valid = step_mask.bool()  # [B, T]
    empty = (~valid.any(dim=-1)).nonzero().flatten()
    if empty.numel() > 0:
        raise ValueError(f"crop_windows: samples {empty.tolist()} have no valid step")
    boxes = windows.long().cpu()  # [B, T, 4]; a handful of integers, the loop below reads them
    valid_cpu = valid.cpu()  # [B, T]
    row0, col0, row1, col1 = boxes.unbind(-1)  # each [B, T]
    bad = valid_cpu & ((row0 < 0) | (col0 < 0) | (row1 > grid_h) | (col1 > grid_w) | (row0 >= row1) | (col0 >= col1))
    if bad.any():
        sample, step = bad.nonzero()[0].tolist()
        raise ValueError(
            f"crop_windows: window {boxes[sample, step].tolist()} of sample {sample}, step {step} is empty or "
            f"outside the {grid_h}×{grid_w} grid"
        )

    crops = []
    for i in range(batch):
        sel = valid_cpu[i]  # [T]
        r0, c0 = int(row0[i][sel].min()), int(col0[i][sel].min())
        r1, c1 = int(row1[i][sel].max()), int(col1[i][sel].max())
        top, left = r0 * height // grid_h, c0 * width // grid_w
        bottom, right = -(-r1 * height // grid_h), -(-c1 * width // grid_w)  # integer ceil
        crop = pixel_values[i : i + 1, :, top:bottom, left:right]  # [1, C, h, w]
        if crop.shape[-2:] != (out_size, out_size):
            crop = F.interpolate(
                crop.float(), size=(out_size, out_size), mode="bilinear", antialias=True, align_corners=False
            ).to(pixel_values.dtype)  # [1, C, out, out]
        crops.append(crop)
    return torch.cat(crops, dim=0)  # [B, C, out, out]
