"""Cost of a LaRe training step relative to a plain next-token step, on one batch, side by side.

    python benchmarks/train_step.py [--batch-size 4] [--warmup 2] [--steps 5] [--device cpu|cuda]

Three step kinds on the same model and the same batch; a step = forward + backward + AdamW step (everything but
the vision tower trains, as in stages III/IV):
    plain            T = 0: one forward over prompt + targets (the LLaVA / direct baseline)
    lare_all_losses  T = 4, NTP + alignment + image reconstruction + text-prefix reconstruction (λ = .1/.1/.5)
    lare_ntp_only    T = 4, NTP only (λs 0: the latent loop's own cost)
Timings are medians over `--steps` rounds after `--warmup` rounds; within a round the kinds alternate, so slow
drift of a shared machine hits all three alike. Peak memory: on CUDA `torch.cuda.max_memory_allocated` per kind;
on CPU each kind runs in a fresh process and reports the peak RSS growth over its steps (Linux VmHWM, reset through
/proc/self/clear_refs after one warm-up step, minus the RSS before the steps: activations, gradients, temporaries).

Prints one JSON object; `all_losses_over_plain` (target ≤ 2.0) and `ntp_only_over_plain` (target ≤ 1.4) are
time ratios.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import statistics
import time
from typing import Any

import torch
from transformers import CLIPVisionConfig, Qwen2Config

from lare import LaReConfig, LaReForConditionalGeneration

KINDS = {
    "plain": dict(latent_steps=0, align_weight=0.0, image_weight=0.0, text_weight=0.0),
    "lare_all_losses": dict(latent_steps=4, align_weight=0.1, image_weight=0.1, text_weight=0.5),
    "lare_ntp_only": dict(latent_steps=4, align_weight=0.0, image_weight=0.0, text_weight=0.0),
}
TARGETS = {"all_losses_over_plain": 2.0, "ntp_only_over_plain": 1.4}
VOCAB = 8192
PAD, IMAGE, BOT, EOT, EOS = VOCAB - 5, VOCAB - 4, VOCAB - 3, VOCAB - 2, VOCAB - 1
PROMPT_TEXT, TARGET_LEN, RATIONALE_LEN = 48, 64, 96


def mid_size_config() -> LaReConfig:
    """Hidden 512, 8 LLM layers, 224 px / patch 14 → 16×16 = 256 visual tokens; T = 4, k = 4, window 8."""
    vision = CLIPVisionConfig(hidden_size=384, intermediate_size=1536, num_hidden_layers=4, num_attention_heads=6,
                              image_size=224, patch_size=14)
    text = Qwen2Config(vocab_size=VOCAB, hidden_size=512, intermediate_size=1408, num_hidden_layers=8,
                       num_attention_heads=8, num_key_value_heads=4, max_position_embeddings=2048,
                       tie_word_embeddings=False, pad_token_id=PAD, eos_token_id=EOS, bos_token_id=None)
    return LaReConfig(vision_config=vision.to_dict(), text_config=text.to_dict(), extractor_layers=2,
                      extractor_heads=8, extractor_hidden_size=512, latent_steps=4, latent_tokens=4, window=8,
                      image_token_id=IMAGE, bot_token_id=BOT, eot_token_id=EOT, pad_token_id=PAD,
                      eos_token_id=EOS, align_dim=256, prefix_tokens=32)


def make_batch(config: LaReConfig, batch_size: int, device: torch.device) -> dict[str, torch.Tensor]:
    """Random tokens in the collator's layout: prompt [B, text + 256 image tokens], targets, rationale."""
    generator = torch.Generator().manual_seed(0)
    half = PROMPT_TEXT // 2
    words = torch.randint(0, PAD, (batch_size, PROMPT_TEXT), generator=generator)
    image = torch.full((batch_size, config.num_image_tokens), IMAGE)
    input_ids = torch.cat([words[:, :half], image, words[:, half:]], dim=1)  # [B, Lp]
    labels = torch.randint(0, PAD, (batch_size, TARGET_LEN), generator=generator)  # [B, Lt]
    labels[:, -1] = EOS
    rationale = torch.randint(0, PAD, (batch_size, RATIONALE_LEN), generator=generator)  # [B, Lr]
    side = config.vision_config.image_size
    batch = dict(input_ids=input_ids, attention_mask=torch.ones_like(input_ids),
                 pixel_values=torch.randn(batch_size, 3, side, side, generator=generator), labels=labels,
                 rationale_ids=rationale, rationale_mask=torch.ones_like(rationale))
    return {key: value.to(device) for key, value in batch.items()}


def build(device: torch.device) -> tuple[LaReForConditionalGeneration, torch.optim.Optimizer]:
    torch.manual_seed(0)
    model = LaReForConditionalGeneration(mid_size_config()).to(device).train()
    model.vision_tower.requires_grad_(False)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5, weight_decay=0.05)
    return model, optimizer


def step(model, optimizer, batch: dict[str, torch.Tensor], kind: str) -> dict[str, float]:
    settings = dict(KINDS[kind])
    for name in ("align_weight", "image_weight", "text_weight"):
        setattr(model.config, name, settings[name])
    output = model(**batch, latent_steps=settings["latent_steps"])
    output.loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return output.losses


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_kinds(device: torch.device, batch_size: int, warmup: int, steps: int) -> tuple[dict, dict]:
    model, optimizer = build(device)
    batch = make_batch(model.config, batch_size, device)
    times: dict[str, list[float]] = {kind: [] for kind in KINDS}
    terms: dict[str, list[str]] = {}
    for round_index in range(warmup + steps):
        for kind in KINDS:
            _sync(device)
            started = time.perf_counter()
            losses = step(model, optimizer, batch, kind)
            _sync(device)
            if round_index >= warmup:
                times[kind].append(time.perf_counter() - started)
            terms[kind] = sorted(key for key in losses if key != "total")
    return times, terms


def _status_bytes(field: str) -> int:
    """A `/proc/self/status` memory field (VmRSS, VmHWM) in bytes."""
    with open("/proc/self/status", encoding="ascii") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"/proc/self/status has no {field}")


def _cpu_peak_child(kind: str, batch_size: int, steps: int, queue) -> None:
    device = torch.device("cpu")
    model, optimizer = build(device)
    batch = make_batch(model.config, batch_size, device)
    # One step first: AdamW allocates its moment buffers on the first step, the same for every kind, and that
    # allocation would otherwise be the peak of all three.
    step(model, optimizer, batch, kind)
    # Writing 5 to clear_refs resets the peak-RSS mark (VmHWM) to the current RSS (Linux >= 4.0).
    with open("/proc/self/clear_refs", "w", encoding="ascii") as handle:
        handle.write("5")
    before = _status_bytes("VmRSS")
    for _ in range(steps):
        step(model, optimizer, batch, kind)
    queue.put(_status_bytes("VmHWM") - before)


def peak_memory(device: torch.device, batch_size: int, steps: int) -> tuple[dict[str, int], str]:
    if device.type == "cuda":
        model, optimizer = build(device)
        batch = make_batch(model.config, batch_size, device)
        peaks = {}
        for kind in KINDS:
            step(model, optimizer, batch, kind)  # optimizer state exists before measuring
            torch.cuda.synchronize(device)
            torch.cuda.reset_peak_memory_stats(device)
            for _ in range(steps):
                step(model, optimizer, batch, kind)
            peaks[kind] = torch.cuda.max_memory_allocated(device)
        return peaks, ("torch.cuda.max_memory_allocated over the measured steps, after one warm-up step (model "
                       "and optimizer state included)")
    context = multiprocessing.get_context("spawn")
    peaks = {}
    for kind in KINDS:
        queue = context.Queue()
        child = context.Process(target=_cpu_peak_child, args=(kind, batch_size, steps, queue))
        child.start()
        peaks[kind] = queue.get()
        child.join()
    return peaks, ("CPU: peak RSS growth during the measured steps (VmHWM after resetting it via "
                   "/proc/self/clear_refs, minus VmRSS before the steps), one fresh process per kind, after one "
                   "warm-up step so that AdamW's state already exists: activations, gradients and temporaries")


def run(batch_size: int, warmup: int, steps: int, device_name: str, memory: bool) -> dict[str, Any]:
    device = torch.device(device_name)
    times, terms = time_kinds(device, batch_size, warmup, steps)
    median = {kind: statistics.median(values) for kind, values in times.items()}
    config = mid_size_config()
    result: dict[str, Any] = {
        "all_losses_over_plain": median["lare_all_losses"] / median["plain"],
        "ntp_only_over_plain": median["lare_ntp_only"] / median["plain"],
        "targets": TARGETS,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch_threads": torch.get_num_threads(),
        "median_seconds_per_step": median,
        "seconds_per_step": times,
        "loss_terms": terms,
        "setup": {"batch_size": batch_size, "prompt_tokens": PROMPT_TEXT + config.num_image_tokens,
                  "visual_tokens": config.num_image_tokens, "target_tokens": TARGET_LEN,
                  "rationale_tokens": RATIONALE_LEN, "hidden": config.text_config.hidden_size,
                  "llm_layers": config.text_config.num_hidden_layers, "latent_steps": 4,
                  "latent_tokens": config.latent_tokens, "prefix_tokens": config.prefix_tokens,
                  "warmup_rounds": warmup, "timed_rounds": steps,
                  "step": "forward + backward + AdamW step, all but the vision tower trainable"},
    }
    result["meets_targets"] = {key: result[key] <= target for key, target in TARGETS.items()}
    if memory:
        peaks, method = peak_memory(device, batch_size, steps=2)
        result["peak_memory_bytes"] = peaks
        result["peak_memory_mib"] = {kind: round(value / 2**20, 1) for kind, value in peaks.items()}
        result["peak_memory_over_plain"] = {kind: peaks[kind] / peaks["plain"] for kind in KINDS}
        result["memory_method"] = method
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory measurement")
    args = parser.parse_args()
    result = run(args.batch_size, args.warmup, args.steps, args.device, memory=not args.no_memory)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
