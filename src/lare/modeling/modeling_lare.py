"""LaReForConditionalGeneration: embedding, the KV-cached latent refocusing loop, training forward and generation.

Sequence layout: [chat prefix] <image>×Nv question [assistant prefix] <bot> Z1 … ZT <eot> text <eos>.
The loop prefills once, then feeds each Zt (k embeddings) as one incremental forward on the same cache; the
answer is decoded from that cache, so nothing is prefilled twice.
"""

from __future__ import annotations

import copy
import logging
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, GenerationMixin, PreTrainedModel
from transformers.cache_utils import DynamicCache

from lare.modeling.configuration_lare import LaReConfig
from lare.modeling.extractor import Extractor
from lare.modeling.outputs import LaReGenerateOutput, LaReOutput, LatentReasoningOutput
from lare.modeling.refocus import (
    SALIENCY_ATTENTION,
    SaliencyRecorder,
    gather_window,
    register_saliency_attention,
    select_window,
)
from lare.modeling.vision import MultiModalProjector, VisionTower

logger = logging.getLogger(__name__)

LATENT_ABLATIONS = ("none", "zero", "shuffle", "noise")


def register_auto_classes() -> None:
    """Make `AutoConfig` / `AutoModel` / `AutoModelForImageTextToText` know the "lare" model type; idempotent."""
    from transformers import AutoModelForImageTextToText

    AutoConfig.register(LaReConfig.model_type, LaReConfig, exist_ok=True)
    for auto_class in (AutoModel, AutoModelForImageTextToText):
        auto_class.register(LaReConfig, LaReForConditionalGeneration, exist_ok=True)


def positions_from_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """[B, L] 0/1 mask → position ids [B, L] counting only attended tokens (left padding gets 0)."""
    positions = attention_mask.long().cumsum(-1) - 1
    return positions.masked_fill(attention_mask == 0, 0)


class LaRePreTrainedModel(PreTrainedModel):
    config_class = LaReConfig
    base_model_prefix = "lare"
    main_input_name = "input_ids"
    input_modalities = ("image", "text")
    supports_gradient_checkpointing = False
    _supports_sdpa = True
    _supports_attention_backend = True
    _no_split_modules = ["Extractor"]

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        # Sub-models (vision tower, LLM) initialise themselves; LaRe's own linear layers use the LLM's std.
        std = self.config.text_config.initializer_range
        if isinstance(module, nn.Linear) and not self._inside_backbone(module):
            nn.init.normal_(module.weight, mean=0.0, std=std)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        else:
            super()._init_weights(module)

    def _inside_backbone(self, module: nn.Module) -> bool:
        # Built once: `_init_weights` runs for every module, so a scan per call would be quadratic.
        if "_backbone_module_ids" not in self.__dict__:
            self._backbone_module_ids = {id(sub) for backbone in (self.language_model, self.vision_tower)
                                         for sub in backbone.modules()}
        return id(module) in self._backbone_module_ids


class LaReForConditionalGeneration(LaRePreTrainedModel, GenerationMixin):
    """A LaRe model: vision tower → projector → causal LLM, with the Extractor-driven latent loop.

    `forward(**batch)` with `labels` trains (next-token loss plus the semantic-augmentation losses whose λ > 0);
    `latent_reasoning` runs only the loop; `generate` runs the loop and then transformers' own generation from
    the loop's cache.
    """

    _tied_weights_keys: dict[str, str] = {}

    def __init__(self, config: LaReConfig) -> None:
        super().__init__(config)
        register_saliency_attention()
        register_auto_classes()
        self.vision_tower = VisionTower(copy.deepcopy(config.vision_config), config.vision_feature_select_strategy)
        text_config = copy.deepcopy(config.text_config)
        self.language_model = AutoModelForCausalLM.from_config(text_config, attn_implementation=SALIENCY_ATTENTION)
        hidden = config.text_config.hidden_size
        self.projector = MultiModalProjector(config.vision_config.hidden_size, hidden, config.projector_hidden_act)
        self.extractor = Extractor(
            model_size=hidden,
            hidden_size=config.extractor_hidden_size,
            num_layers=config.extractor_layers,
            num_heads=config.extractor_heads,
            ffn_multiplier=config.extractor_ffn_multiplier,
            norm_eps=config.text_config.rms_norm_eps,
        )
        # One logit per hidden-state tensor (embeddings + every layer): the learned "mix" reasoning state.
        self.state_layer_logits = nn.Parameter(torch.zeros(config.text_config.num_hidden_layers + 1))
        self.semantic_losses = self._build_semantic_losses(config)
        self.post_init()
        self.extractor.match_embedding_scale(self.get_input_embeddings().weight)

    @staticmethod
    def _build_semantic_losses(config: LaReConfig) -> nn.ModuleDict:
        from lare.losses.alignment import SemanticAlignment
        from lare.losses.reconstruction import ImageReconstructor, ReconstructorConfig

        hidden = config.text_config.hidden_size
        if config.reconstructor is not None:
            recon_config = ReconstructorConfig.from_dict({**config.reconstructor, "latent_dim": hidden})
        else:
            recon_config = ReconstructorConfig.tiny(latent_dim=hidden)
        return nn.ModuleDict({
            "alignment": SemanticAlignment(hidden, shared_dim=config.align_dim),
            "image": ImageReconstructor(recon_config),
        })

    # ------------------------------------------------------------------------------------------------------
    # Plumbing expected by PreTrainedModel / GenerationMixin
    def get_input_embeddings(self) -> nn.Module:
        return self.language_model.get_input_embeddings()

    def set_input_embeddings(self, value: nn.Module) -> None:
        self.language_model.set_input_embeddings(value)

    def get_output_embeddings(self) -> nn.Module:
        return self.language_model.get_output_embeddings()

    def set_output_embeddings(self, value: nn.Module) -> None:
        self.language_model.set_output_embeddings(value)

    @property
    def decoder(self) -> nn.Module:
        """The LLM without its head (e.g. `Qwen2Model`)."""
        return self.language_model.get_decoder()

    # ------------------------------------------------------------------------------------------------------
    # Embedding
    def encode_images(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W] → projected visual tokens [B, Nv, D]."""
        features = self.vision_tower(pixel_values.to(self.dtype))  # [B, Nv, Dv]
        return self.projector(features)  # [B, Nv, D]

    def embed_inputs(self, input_ids: torch.Tensor, pixel_values: torch.Tensor | None
                     ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """Token embeddings with the `<image>` slots replaced by visual tokens.

        Each sequence holds either one image's `<image>` tokens or none (a text-only sample, whose row of
        `pixel_values` is a stand-in and is not encoded). Returns embeddings [B, L, D], visual features [B, Nv, D]
        and their positions [B, Nv]; the last two are None unless every sequence has an image.
        """
        embeds = self.get_input_embeddings()(input_ids)  # [B, L, D]
        is_image = input_ids == self.config.image_token_id  # [B, L]
        n_slots = is_image.sum(dim=-1)  # [B]
        if pixel_values is None:
            if bool(n_slots.any()):
                raise ValueError(f"input_ids hold {int(n_slots.max())} <image> tokens but no pixel_values were given")
            return embeds, None, None
        if pixel_values.shape[0] != input_ids.shape[0]:
            raise ValueError(f"got {pixel_values.shape[0]} images for {input_ids.shape[0]} sequences: "
                             "each sequence takes exactly one image")
        expected = self.config.num_image_tokens
        wrong = (n_slots != expected) & (n_slots != 0)  # [B]
        if bool(wrong.any()):
            bad = int(wrong.nonzero()[0, 0])
            raise ValueError(f"sequence {bad} holds {int(n_slots[bad])} <image> tokens, but one image needs "
                             f"{expected}: the text and the images do not match")
        has_image = n_slots == expected  # [B]
        if not bool(has_image.any()):
            return embeds, None, None
        visual = self.encode_images(pixel_values[has_image])  # [B_img, Nv, D]
        embeds = embeds.masked_scatter(is_image[..., None], visual.to(embeds.dtype))  # [B, L, D]
        if not bool(has_image.all()):
            return embeds, None, None
        positions = is_image.nonzero()[:, 1].view(input_ids.shape[0], expected)  # [B, Nv]
        return embeds, visual, positions

    # ------------------------------------------------------------------------------------------------------
    # The latent loop
    def _reasoning_state(self, hidden_states: tuple[torch.Tensor, ...], rows: int) -> torch.Tensor:
        """Hidden states of the last `rows` positions → S_t [B, k, D] (learned layer mix or the last layer)."""
        if self.config.state_layers == "last":
            return hidden_states[-1][:, -rows:]
        stacked = torch.stack([h[:, -rows:] for h in hidden_states])  # [L+1, B, k, D]
        weights = self.state_layer_logits.softmax(dim=0).to(stacked.dtype)  # [L+1]
        return torch.einsum("l,lbkd->bkd", weights, stacked)  # [B, k, D]

    def _run_decoder(self, embeds: torch.Tensor, attention_mask: torch.Tensor, positions: torch.Tensor,
                     cache: DynamicCache | None, recorder: SaliencyRecorder | None, want_hidden: bool):
        return self.decoder(
            inputs_embeds=embeds,
            attention_mask=attention_mask,
            position_ids=positions,
            cache=cache,
            use_cache=cache is not None,
            output_hidden_states=want_hidden,
            saliency_recorder=recorder,
        )

    @staticmethod
    def _ablate(latents: torch.Tensor, ablation: str, generator: torch.Generator | None) -> torch.Tensor:
        """Evaluation-time latent ablations that test whether the answer depends on the latents."""
        if ablation == "none":
            return latents
        if ablation == "zero":
            return torch.zeros_like(latents)
        if ablation == "noise":
            rms = latents.float().pow(2).mean(dim=-1, keepdim=True).sqrt()  # [B, k, 1]
            noise = torch.randn(latents.shape, generator=generator, device=latents.device, dtype=torch.float32)
            return (noise * rms).to(latents.dtype)
        if latents.shape[0] < 2:
            raise ValueError("latent_ablation='shuffle' gives each sample another sample's latents: it needs a "
                             "batch of at least 2")
        return latents.roll(shifts=1, dims=0)

    def _halting_distance(self, current: torch.Tensor, previous: torch.Tensor) -> torch.Tensor:
        """Per-sample distance between consecutive latents [B, k, D] → [B] (scale-free for l1/l2)."""
        current, previous = current.float(), previous.float()
        if self.config.halting == "cosine":
            return 1.0 - F.cosine_similarity(current, previous, dim=-1).mean(dim=-1)
        diff = current - previous
        if self.config.halting == "l1":
            return diff.abs().mean(dim=(1, 2)) / previous.abs().mean(dim=(1, 2)).clamp_min(1e-12)
        return diff.flatten(1).norm(dim=-1) / previous.flatten(1).norm(dim=-1).clamp_min(1e-12)

    def latent_reasoning(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        pixel_values: torch.Tensor | None = None,
        latent_steps: int | None = None,
        use_cache: bool = True,
        latent_ablation: str = "none",
        generator: torch.Generator | None = None,
        window_evidence: torch.Tensor | None = None,
        **unused: Any,
    ) -> LatentReasoningOutput:
        """Run the latent refocusing loop on a left-padded batch.

        With `use_cache=True` the prompt is prefilled once and every Z_t is one incremental k-token forward.
        `use_cache=False` is the reference path: the whole sequence is re-forwarded at every step. Both give
        the same latents, saliency and windows. The returned cache (cached path) holds the prompt, `<bot>` and
        Z_1 … Z_{T−1}; the last latents are `pending_embeds`, fed with `<eot>` by whoever continues
        (`continuation_inputs`), so no forward runs only to fill the cache. `window_evidence` [B, T, Nv] (training
        with `evidence_windows_in_training`) restricts step t's window to those over its evidence cells.
        """
        steps = self.config.latent_steps if latent_steps is None else int(latent_steps)
        if steps < 1:
            raise ValueError(f"latent_reasoning needs latent_steps >= 1, got {steps}")
        if latent_ablation not in LATENT_ABLATIONS:
            raise ValueError(f"latent_ablation must be one of {list(LATENT_ABLATIONS)}, got {latent_ablation!r}")
        if pixel_values is None:
            raise ValueError("latent_reasoning refocuses on the image: pixel_values are required")
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        cfg = self.config
        k, side = cfg.latent_tokens, cfg.grid_size
        batch = input_ids.shape[0]
        device = input_ids.device

        prompt_embeds, visual, visual_positions = self.embed_inputs(input_ids, pixel_values)
        if visual is None:
            bad = int((input_ids == cfg.image_token_id).sum(dim=-1).eq(0).nonzero()[0, 0])
            raise ValueError(f"sequence {bad} holds no <image> tokens: latent reasoning refocuses on an image, so "
                             "every sequence needs one (train text-only samples with latent_steps=0)")
        bot = self.get_input_embeddings()(torch.full((batch, 1), cfg.bot_token_id, device=device))  # [B, 1, D]
        embeds = torch.cat([prompt_embeds, bot], dim=1)  # [B, L+1, D]
        mask = torch.cat([attention_mask, attention_mask.new_ones(batch, 1)], dim=1)  # [B, L+1]
        cache = DynamicCache(config=self.decoder.config) if use_cache else None
        want_hidden = cfg.state_layers == "mix" or cfg.refocus == "feedback"

        latents, saliencies, windows, step_masks = [], [], [], []
        active = torch.ones(batch, dtype=torch.bool, device=device)  # not halted yet
        steps_taken = torch.zeros(batch, dtype=torch.long, device=device)
        previous: torch.Tensor | None = None
        new_embeds = embeds
        for step in range(steps):
            recorder = SaliencyRecorder(k, cfg.saliency_layer_indices, visual_positions)
            positions = positions_from_mask(mask)
            if use_cache:
                out = self._run_decoder(new_embeds, mask, positions[:, -new_embeds.shape[1]:], cache, recorder,
                                        want_hidden)
            else:
                out = self._run_decoder(embeds, mask, positions, None, recorder, want_hidden)
            hidden_states = out.hidden_states if want_hidden else (out.last_hidden_state,)
            saliency = recorder.saliency()  # [B, Nv]
            if cfg.use_window:
                allowed = None if window_evidence is None else window_evidence[:, step].view(batch, side, side)
                window = select_window(saliency.view(batch, side, side), cfg.window, allowed)  # [B, 4]
                features = gather_window(visual, window, cfg.window, side)  # [B, w·w, D]
            else:
                window = torch.tensor([0, 0, side, side], device=device).expand(batch, 4)
                features = visual  # [B, Nv, D]
            if cfg.refocus == "extractor":
                state = self._reasoning_state(hidden_states, k)  # [B, k, D]
                latent = self.extractor(state, features)  # [B, k, D]
            else:
                # "w/o Extractor": Coconut/MCOUT-style, the last hidden states are the next inputs.
                latent = hidden_states[-1][:, -k:]  # [B, k, D]
            latent = self._ablate(latent, latent_ablation, generator).to(embeds.dtype)

            latents.append(latent * active[:, None, None])
            saliencies.append(saliency * active[:, None])
            windows.append(torch.where(active[:, None], window, torch.full_like(window, -1)))
            step_masks.append(active.clone())
            steps_taken += active.long()

            new_embeds = latent
            mask = torch.cat([mask, active[:, None].to(mask.dtype).expand(batch, k)], dim=1)  # [B, L'+k]
            if not use_cache:
                embeds = torch.cat([embeds, latent], dim=1)
            if cfg.halting != "none" and previous is not None:
                active = active & (self._halting_distance(latent, previous) >= cfg.halting_threshold)
            previous = latent
            if not bool(active.any()):
                break

        ran = len(latents)
        pad = steps - ran
        latents_t = torch.stack(latents, dim=1)  # [B, t, k, D]
        saliency_t = torch.stack(saliencies, dim=1).view(batch, ran, side, side)  # [B, t, gh, gw]
        windows_t = torch.stack(windows, dim=1)  # [B, t, 4]
        step_mask_t = torch.stack(step_masks, dim=1)  # [B, t]
        if pad:
            latents_t = F.pad(latents_t, (0, 0, 0, 0, 0, pad))
            saliency_t = F.pad(saliency_t, (0, 0, 0, 0, 0, pad))
            windows_t = F.pad(windows_t, (0, 0, 0, pad), value=-1)
            step_mask_t = F.pad(step_mask_t, (0, pad), value=False)
        return LatentReasoningOutput(
            latents=latents_t,
            saliency=saliency_t,
            windows=windows_t,
            step_mask=step_mask_t,
            latent_steps_taken=steps_taken,
            attention_mask=mask,
            cache=cache,
            pending_embeds=new_embeds if use_cache else None,
            visual_features=visual,
        )

    def continuation_inputs(self, loop: LatentReasoningOutput, extra_mask: torch.Tensor | None = None
                            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """What continues a cached loop: the pending last latents, then `<eot>`.

        Returns embeddings [B, k+1, D], the attention mask over cache + these [B, L'+1] and their position ids
        [B, k+1]. With `extra_mask` [B, n] (e.g. targets), the mask and positions also cover n tokens that the
        caller appends after `<eot>`.
        """
        if loop.cache is None or loop.pending_embeds is None:
            raise ValueError("continuation_inputs needs the output of latent_reasoning(use_cache=True)")
        batch = loop.pending_embeds.shape[0]
        eot_ids = torch.full((batch, 1), self.config.eot_token_id, device=loop.pending_embeds.device)
        embeds = torch.cat([loop.pending_embeds, self.get_input_embeddings()(eot_ids)], dim=1)  # [B, k+1, D]
        parts = [loop.attention_mask, loop.attention_mask.new_ones(batch, 1)]
        if extra_mask is not None:
            parts.append(extra_mask.to(loop.attention_mask.dtype))
        mask = torch.cat(parts, dim=1)  # [B, L'+1(+n)]
        n_new = embeds.shape[1] + (0 if extra_mask is None else extra_mask.shape[1])
        return embeds, mask, positions_from_mask(mask)[:, -n_new:]

    # ------------------------------------------------------------------------------------------------------
    # Forward: training (prompt + loop + targets) and generation steps (incremental, from the cache)
    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        pixel_values: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        rationale_ids: torch.Tensor | None = None,
        rationale_mask: torch.Tensor | None = None,
        evidence_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        cache: DynamicCache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        latent_steps: int | None = None,
        use_cache: bool | None = None,
        logits_to_keep: int = 0,
        **kwargs: Any,
    ) -> LaReOutput:
        """Training forward (`labels` [B, Lt] right-padded with −100: the text after `<eot>`) or a decoding step.

        When `cache` already holds tokens this is one generation step: plain LLM forward on new ids.
        Otherwise it embeds the image, runs the latent loop (T = `latent_steps` or the config's), then runs
        `<eot>` + targets on the same cache and returns the total loss and each term in `losses`.
        `evidence_mask` [B, Nb, Nv] (the collator's, per evidence box) feeds the optional saliency grounding
        (`grounding_weight`, `evidence_windows_in_training`; `lare.losses.grounding`).
        """
        if cache is not None and cache.get_seq_length() > 0 or (labels is None and pixel_values is None):
            return self._decode_step(input_ids, inputs_embeds, attention_mask, position_ids, cache, use_cache,
                                     logits_to_keep)
        steps = self.config.latent_steps if latent_steps is None else int(latent_steps)
        if labels is None:
            # Prefill for generation without latents (T = 0): a plain multimodal forward.
            embeds, _, _ = self.embed_inputs(input_ids, pixel_values)
            return self._decode_step(None, embeds, attention_mask, position_ids, cache, use_cache, logits_to_keep)
        if steps == 0:
            return self._plain_training_forward(input_ids, attention_mask, pixel_values, labels)
        return self._latent_training_forward(input_ids, attention_mask, pixel_values, labels, rationale_ids,
                                             rationale_mask, evidence_mask, steps)

    def _decode_step(self, input_ids, inputs_embeds, attention_mask, position_ids, cache, use_cache,
                     logits_to_keep: int) -> LaReOutput:
        if inputs_embeds is None:
            inputs_embeds = self.get_input_embeddings()(input_ids)
        if position_ids is None and attention_mask is not None:
            position_ids = positions_from_mask(attention_mask)[:, -inputs_embeds.shape[1]:]
        out = self.decoder(inputs_embeds=inputs_embeds, attention_mask=attention_mask, position_ids=position_ids,
                           cache=cache, use_cache=use_cache if use_cache is not None else cache is not None)
        hidden = out.last_hidden_state[:, -logits_to_keep:] if logits_to_keep else out.last_hidden_state
        return LaReOutput(logits=self.get_output_embeddings()(hidden), cache=out.cache)

    def _ntp_loss(self, hidden: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """hidden [B, Lt, D] aligned so position i predicts labels[:, i]."""
        from lare.losses.next_token import next_token_loss

        logits = self.get_output_embeddings()(hidden)  # [B, Lt, V]
        return next_token_loss(logits.float(), labels)

    def _target_inputs(self, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """labels [B, Lt] (−100 = padding) → target embeddings [B, Lt, D] and their mask [B, Lt]."""
        target_mask = (labels != -100).long()
        target_ids = labels.masked_fill(labels == -100, self.config.pad_token_id)
        return self.get_input_embeddings()(target_ids), target_mask

    def _plain_training_forward(self, input_ids, attention_mask, pixel_values, labels) -> LaReOutput:
        """T = 0 (the direct / CoT baselines): one forward over prompt + targets."""
        prompt_embeds, _, _ = self.embed_inputs(input_ids, pixel_values)
        target_embeds, target_mask = self._target_inputs(labels)
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        mask = torch.cat([attention_mask, target_mask], dim=1)
        out = self.decoder(inputs_embeds=torch.cat([prompt_embeds, target_embeds], dim=1), attention_mask=mask,
                           position_ids=positions_from_mask(mask), use_cache=False)
        n_targets = labels.shape[1]
        hidden = out.last_hidden_state[:, -n_targets - 1:-1]  # [B, Lt, D]: the token before each target
        ntp = self._ntp_loss(hidden, labels)
        return LaReOutput(loss=ntp, losses={"ntp": float(ntp.detach())})

    def _latent_training_forward(self, input_ids, attention_mask, pixel_values, labels, rationale_ids,
                                 rationale_mask, evidence_mask, steps: int) -> LaReOutput:
        from lare.losses.grounding import evidence_per_step, saliency_grounding_loss

        cfg = self.config
        grounded = evidence_mask is not None and (cfg.grounding_weight > 0 or cfg.evidence_windows_in_training)
        step_evidence = evidence_per_step(evidence_mask, steps) if grounded else None  # [B, T, Nv]
        # Evidence windows steer training only: a teacher-forced evaluation (model.eval()) keeps the model's own.
        steer = cfg.evidence_windows_in_training and self.training
        loop = self.latent_reasoning(input_ids, attention_mask, pixel_values, latent_steps=steps, use_cache=True,
                                     window_evidence=step_evidence if steer else None)
        ntp = self._ntp_loss(self.target_hidden_states(loop, labels), labels)  # from <eot> on
        total = ntp
        losses = {"ntp": float(ntp.detach())}
        latents = loop.latents.flatten(1, 2)  # [B, T·k, D]
        latent_mask = loop.step_mask.repeat_interleave(cfg.latent_tokens, dim=1)  # [B, T·k]
        if cfg.align_weight > 0:
            align = self._alignment_loss(latents, latent_mask, loop.visual_features, rationale_ids, rationale_mask)
            total = total + cfg.align_weight * align
            losses["align"] = float(align.detach())
        if cfg.image_weight > 0:
            image = self.semantic_losses["image"](latents, latent_mask, self.reconstruction_target(
                pixel_values, loop.windows, loop.step_mask))
            total = total + cfg.image_weight * image
            losses["image"] = float(image.detach())
        if cfg.text_weight > 0 and rationale_ids is not None and bool(rationale_mask.any()):
            from lare.losses.prefix import prefix_reconstruction_loss

            prefix = prefix_reconstruction_loss(
                self.decoder, self.get_input_embeddings(), self.get_output_embeddings(), latents, latent_mask,
                rationale_ids[:, : cfg.prefix_tokens], rationale_mask[:, : cfg.prefix_tokens],
            )
            total = total + cfg.text_weight * prefix
            losses["text"] = float(prefix.detach())
        if cfg.grounding_weight > 0 and step_evidence is not None:
            grounding = saliency_grounding_loss(loop.saliency.flatten(2), loop.step_mask, step_evidence)
            total = total + cfg.grounding_weight * grounding
            losses["ground"] = float(grounding.detach())
        losses["total"] = float(total.detach())
        return LaReOutput(loss=total, losses=losses, latents=loop.latents, saliency=loop.saliency,
                          windows=loop.windows, latent_steps_taken=loop.latent_steps_taken)

    def target_hidden_states(self, loop: LatentReasoningOutput, labels: torch.Tensor) -> torch.Tensor:
        """Continue a cached loop with Z_T, `<eot>` and the targets; return the state that predicts each target.

        labels [B, Lt] (−100 = padding) → hidden states [B, Lt, D], row j at the position before target j (`<eot>`
        for the first). Consumes `loop.cache`.
        """
        target_embeds, target_mask = self._target_inputs(labels)
        continuation, mask, positions = self.continuation_inputs(loop, extra_mask=target_mask)
        embeds = torch.cat([continuation, target_embeds], dim=1)  # [B, k+1+Lt, D]: Z_T, <eot>, targets
        out = self.decoder(inputs_embeds=embeds, attention_mask=mask, position_ids=positions, cache=loop.cache,
                           use_cache=True)
        n_targets = labels.shape[1]
        return out.last_hidden_state[:, -n_targets - 1:-1]  # [B, Lt, D]

    def _alignment_loss(self, latents, latent_mask, visual, rationale_ids, rationale_mask) -> torch.Tensor:
        batch = latents.shape[0]
        text_hidden = latents.new_zeros(batch, 1, latents.shape[-1])  # [B, 1, D]: no reasoning text
        text_mask = latents.new_zeros(batch, 1, dtype=torch.long)
        if rationale_ids is not None and bool(rationale_mask.any()):
            # The explicit reasoning's hidden states are a stop-gradient target: read the LLM, don't move it.
            with torch.no_grad():
                text_hidden = self.decoder(
                    input_ids=rationale_ids, attention_mask=rationale_mask,
                    position_ids=positions_from_mask(rationale_mask), use_cache=False,
                ).last_hidden_state  # [B, Lr, D]
            text_mask = rationale_mask
        return self.semantic_losses["alignment"](latents, latent_mask, text_hidden, text_mask, visual,
                                                 temperature=self.config.align_temperature)

    def reconstruction_target(self, pixel_values: torch.Tensor, windows: torch.Tensor, step_mask: torch.Tensor
                              ) -> torch.Tensor:
        """The image crop under the chosen windows, mapped from the processor's normalisation to [-1, 1].

        pixel_values [B, 3, H, W], windows [B, T, 4], step_mask [B, T] → [B, 3, s, s] (s: the reconstructor's size).
        """
        from lare.losses.reconstruction import crop_windows

        reconstructor = self.semantic_losses["image"]
        side = self.config.grid_size
        crops = crop_windows(pixel_values.float(), windows, step_mask, (side, side),
                             reconstructor.config.sample_size)  # [B, 3, s, s]
        mean = torch.tensor(self.config.image_mean, device=crops.device)[:, None, None]
        std = torch.tensor(self.config.image_std, device=crops.device)[:, None, None]
        return (crops * std + mean) * 2.0 - 1.0  # [B, 3, s, s] in [-1, 1]

    # ------------------------------------------------------------------------------------------------------
    # Generation
    @torch.no_grad()
    def generate(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        pixel_values: torch.Tensor | None = None,
        latent_steps: int | None = None,
        latent_ablation: str = "none",
        generator: torch.Generator | None = None,
        **generate_kwargs: Any,
    ):
        """Latent loop, then transformers' generation continuing from the loop's cache.

        Returns new token ids [B, n_new], or with `return_dict_in_generate=True` a `LaReGenerateOutput` whose
        `sequences` are the new tokens and which carries latents, saliency, windows and latent_steps_taken.
        All usual generation arguments (sampling, `max_new_tokens`, `eos_token_id`, streamers) pass through.
        """
        if input_ids is None:
            raise ValueError("generate needs input_ids (use the processor to build them)")
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        steps = self.config.latent_steps if latent_steps is None else int(latent_steps)
        return_dict = bool(generate_kwargs.get("return_dict_in_generate", False))
        generate_kwargs.setdefault("pad_token_id", self.config.pad_token_id)
        if steps == 0:
            out = super().generate(input_ids=input_ids, attention_mask=attention_mask, pixel_values=pixel_values,
                                   **generate_kwargs)
            loop = None
        else:
            loop = self.latent_reasoning(input_ids, attention_mask, pixel_values, latent_steps=steps,
                                         latent_ablation=latent_ablation, generator=generator)
            batch = input_ids.shape[0]
            continuation, full_mask, _ = self.continuation_inputs(loop)  # [B, k+1, D]: Z_T, <eot>
            n_slots = loop.attention_mask.shape[1] - input_ids.shape[1] - 1
            # Ids stand in for the latent slots; generation embeds only the uncached tail (Z_T, <eot>) from
            # `inputs_embeds`, so the rows before it are never read.
            filler = torch.full((batch, n_slots), self.config.pad_token_id, dtype=input_ids.dtype,
                                device=input_ids.device)
            bot = torch.full((batch, 1), self.config.bot_token_id, dtype=input_ids.dtype, device=input_ids.device)
            eot = torch.full((batch, 1), self.config.eot_token_id, dtype=input_ids.dtype, device=input_ids.device)
            full_ids = torch.cat([input_ids, bot, filler, eot], dim=1)
            inputs_embeds = continuation.new_zeros(batch, full_ids.shape[1], continuation.shape[-1])
            inputs_embeds[:, -continuation.shape[1]:] = continuation  # [B, L_full, D]
            out = super().generate(input_ids=full_ids, attention_mask=full_mask, cache=loop.cache,
                                   inputs_embeds=inputs_embeds, **generate_kwargs)
            input_ids = full_ids
        sequences = out.sequences if return_dict else out
        new_tokens = sequences[:, input_ids.shape[1]:]
        if not return_dict:
            return new_tokens
        fields = {key: value for key, value in out.items() if key != "sequences"}
        if loop is not None:
            fields.update(latents=loop.latents, saliency=loop.saliency, windows=loop.windows,
                          latent_steps_taken=loop.latent_steps_taken)
        else:
            fields.update(latent_steps_taken=torch.zeros(new_tokens.shape[0], dtype=torch.long,
                                                         device=new_tokens.device))
        return LaReGenerateOutput(sequences=new_tokens, **fields)

    # ------------------------------------------------------------------------------------------------------
    # Building from pretrained backbones
    @classmethod
    def from_backbones(cls, vision: str, llm: str, tokenizer: Any = None, image_processor: Any = None,
                       **overrides: Any) -> LaReForConditionalGeneration:
        """Build a LaRe model from a pretrained vision tower and causal LLM (local directories or Hub ids).

        Adds `<image>`, `<bot>` and `<eot>` to the LLM's tokenizer (or the given one), resizes the embeddings and
        initialises the new rows from the mean of the existing ones. LaRe's own modules start from random init.
        The image normalisation (for the reconstruction target) is read from the vision tower's image processor
        when it has one.
        """
        from transformers import AutoTokenizer, CLIPImageProcessorPil

        from lare.processing import add_lare_special_tokens

        tokenizer = tokenizer if tokenizer is not None else AutoTokenizer.from_pretrained(llm)
        ids = add_lare_special_tokens(tokenizer)
        if image_processor is None:
            try:
                image_processor = CLIPImageProcessorPil.from_pretrained(vision)
            except OSError:
                logger.warning("no image processor in %s: keeping the default CLIP image normalisation", vision)
        vision_config = AutoConfig.from_pretrained(vision)
        vision_config = getattr(vision_config, "vision_config", vision_config)  # CLIPModel → its vision half
        text_config = AutoConfig.from_pretrained(llm)
        settings = dict(
            vision_config=vision_config.to_dict(), text_config=text_config.to_dict(),
            image_token_id=ids["image"], bot_token_id=ids["bot"], eot_token_id=ids["eot"],
            pad_token_id=ids["pad"], eos_token_id=tokenizer.eos_token_id,
        )
        if image_processor is not None:
            settings.update(image_mean=list(image_processor.image_mean), image_std=list(image_processor.image_std))
        settings.update(overrides)
        config = LaReConfig(**settings)
        model = cls(config)
        language_model = AutoModelForCausalLM.from_pretrained(llm, attn_implementation=SALIENCY_ATTENTION)
        old_vocab = language_model.get_input_embeddings().weight.shape[0]
        if len(tokenizer) > old_vocab:
            language_model.resize_token_embeddings(len(tokenizer), mean_resizing=True)
        model.language_model = language_model
        model.config.text_config = copy.deepcopy(language_model.config)
        vision_model = AutoModel.from_pretrained(vision)
        if hasattr(vision_model.config, "vision_config"):  # a dual encoder such as CLIPModel: keep its vision half
            vision_model = vision_model.vision_model
        model.vision_tower.encoder.load_state_dict(vision_model.state_dict())
        model.extractor.match_embedding_scale(model.get_input_embeddings().weight)
        return model
