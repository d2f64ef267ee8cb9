"""`lare analyze heatmaps | reconstruct | probe | attention | steps | precision | latent-use`: the analyses.

Every sub-command takes a saved LaRe model directory (`--model`, with its processor, e.g. the demo checkpoint),
LLaVA-format records (`--data`, e.g. the synthetic `test.json`, images under `--images`), writes its PNG / JSON /
markdown into `--out` and prints the markdown table.

`register_decontaminate(data_subparsers)` adds `lare data decontaminate` (wired by `lare.cli.data`).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("analyze", help="analyses from the paper: heatmaps, reconstruction, probing, "
                                                   "attention statistics, step sweeps, refocus precision")
    commands = parser.add_subparsers(dest="analyze_command", required=True)

    heatmaps = _command(commands, "heatmaps", "per-step refocus heatmaps next to the decoded text (Fig. 3)", limit=8)
    heatmaps.add_argument("--latent-steps", type=int, default=None, help="T (default: the model's)")
    heatmaps.add_argument("--max-new-tokens", type=int, default=32)
    heatmaps.set_defaults(handler=_heatmaps)

    reconstruct = _command(commands, "reconstruct", "images sampled from the latents vs the window crops (Fig. 4)",
                           limit=16)
    reconstruct.add_argument("--sampling-steps", type=int, default=50, help="DDIM steps (default 50)")
    reconstruct.add_argument("--latent-steps", type=int, default=None, help="T (default: the model's)")
    reconstruct.set_defaults(handler=_reconstruct)

    probe = _command(commands, "probe", "latent-vision / latent-text probing with and without the Extractor "
                                        "(Table 6)")
    probe.add_argument("--without-extractor", type=Path, default=None,
                       help="a model trained with refocus=feedback (default: this model switched to feedback)")
    probe.add_argument("--pairs", type=int, default=1000, help="pairs in all (default 1000)")
    probe.add_argument("--positives", type=int, default=500, help="positive pairs (default 500)")
    probe.add_argument("--vision-anchor", choices=("window", "image"), default="window",
                       help="pool the visual tokens inside the refocus windows (default) or the whole image")
    probe.set_defaults(handler=_probe)

    attention = _command(commands, "attention", "first-token attention to the visual tokens, LaRe vs plain "
                                                "(Table 5)")
    attention.add_argument("--plain-model", type=Path, default=None,
                           help="a plain LLaVA-style model (default: this model with T=0)")
    attention.add_argument("--latent-steps", type=int, default=None, help="T of LaRe (default: the model's)")
    attention.set_defaults(handler=_attention)

    steps = _command(commands, "steps", "accuracy and tokens against T, and the halting rules (Fig. 5, Table 4)")
    steps.add_argument("--steps", type=int, nargs="+", default=list(range(9)), help="T values (default 0..8)")
    steps.add_argument("--halting", nargs="*", default=["none", "cosine", "l1", "l2"],
                       choices=("none", "cosine", "l1", "l2"), help="halting rules to compare (default: all)")
    steps.add_argument("--halting-steps", type=int, default=None, help="step budget for the halting rules "
                                                                       "(default: the model's T)")
    steps.add_argument("--halting-threshold", type=float, default=None, help="default: the model's")
    steps.add_argument("--max-new-tokens", type=int, default=32)
    steps.set_defaults(handler=_steps)

    precision = _command(commands, "precision", "fraction of latent steps whose window covers the evidence "
                                                "(synthetic benchmark)")
    precision.add_argument("--latent-steps", type=int, default=None, help="T (default: the model's)")
    precision.set_defaults(handler=_precision)

    latent_use = _command(commands, "latent-use", "teacher-forced cost of the replaced rationale prefix and of the "
                                                  "answer text, own vs another sample's latents")
    latent_use.set_defaults(handler=_latent_use)


def _command(commands: argparse._SubParsersAction, name: str, help_text: str, limit: int | None = None
             ) -> argparse.ArgumentParser:
    parser = commands.add_parser(name, help=help_text)
    parser.add_argument("--model", required=True,
                        help="saved LaRe model directory with its processor, or 'tiny' for a random tiny model")
    parser.add_argument("--data", required=True, type=Path, help="LLaVA-format records (JSON or JSONL)")
    parser.add_argument("--images", type=Path, default=None,
                        help="image root of --data (default: <data dir>/images, else <data dir>)")
    parser.add_argument("--out", required=True, type=Path, help="output directory")
    parser.add_argument("--limit", type=int, default=limit,
                        help=f"only the first N samples (default: {limit if limit is not None else 'all'})")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    return parser


def load_model(path: str | Path, device: str | None = None) -> tuple[Any, Any]:
    """A saved LaRe model and its processor (or, for "tiny", a seeded random tiny model), in eval mode."""
    import torch

    from lare import LaReConfig, LaReForConditionalGeneration, LaReProcessor

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if str(path) == "tiny":
        torch.manual_seed(0)
        model, processor = LaReForConditionalGeneration(LaReConfig.tiny()), LaReProcessor.tiny()
    else:
        model = LaReForConditionalGeneration.from_pretrained(path)
        processor = LaReProcessor.from_pretrained(path)
    return model.to(device).eval(), processor


def _setup(args: argparse.Namespace) -> tuple[Any, Any, list]:
    import torch

    from lare.analysis.samples import load_samples

    torch.manual_seed(args.seed)
    model, processor = load_model(args.model, args.device)
    samples = load_samples(args.data, args.images, args.limit)
    if not samples:
        raise SystemExit(f"no usable samples in {args.data}")
    return model, processor, samples


def _report(paths: dict[str, Path]) -> int:
    markdown = paths.get("markdown")
    if markdown is not None:
        print(markdown.read_text(encoding="utf-8"))
    for kind, path in paths.items():
        print(f"{kind}: {path}")
    return 0


def _heatmaps(args: argparse.Namespace) -> int:
    from lare.analysis.heatmaps import collect_heatmaps, write_heatmaps

    model, processor, samples = _setup(args)
    report = collect_heatmaps(model, processor, samples, args.batch_size, args.max_new_tokens, args.latent_steps)
    return _report(write_heatmaps(report, args.out))


def _reconstruct(args: argparse.Namespace) -> int:
    from lare.analysis.reconstruct import reconstruct_from_latents, write_reconstruction

    model, processor, samples = _setup(args)
    report = reconstruct_from_latents(model, processor, samples, args.batch_size, args.sampling_steps, args.seed,
                                      args.latent_steps)
    return _report(write_reconstruction(report, args.out))


def _probe(args: argparse.Namespace) -> int:
    from lare.analysis.probing import probe_extractor_ablation, write_probe

    model, processor, samples = _setup(args)
    without = load_model(args.without_extractor, args.device)[0] if args.without_extractor else None
    report = probe_extractor_ablation(model, processor, samples, without, args.pairs, args.positives, args.seed,
                                      args.batch_size, args.vision_anchor)
    return _report(write_probe(report, args.out))


def _attention(args: argparse.Namespace) -> int:
    from lare.analysis.attention_stats import analyze_attention, write_attention

    model, processor, samples = _setup(args)
    plain = load_model(args.plain_model, args.device)[0] if args.plain_model else None
    report = analyze_attention(model, processor, samples, plain, args.batch_size, args.latent_steps)
    return _report(write_attention(report, args.out))


def _steps(args: argparse.Namespace) -> int:
    from lare.analysis.step_sweep import sweep_latent_steps, write_step_sweep

    model, processor, samples = _setup(args)
    report = sweep_latent_steps(model, processor, samples, args.steps, args.halting, args.halting_steps,
                                args.halting_threshold, args.batch_size, args.max_new_tokens)
    return _report(write_step_sweep(report, args.out))


def _precision(args: argparse.Namespace) -> int:
    from lare.analysis.refocus_precision import measure_refocus_precision, write_refocus_precision

    model, processor, samples = _setup(args)
    report = measure_refocus_precision(model, processor, samples, args.batch_size, args.latent_steps)
    return _report(write_refocus_precision(report, args.out))


def _latent_use(args: argparse.Namespace) -> int:
    from lare.analysis.latent_use import latent_use_batches, measure_latent_use, write_latent_use

    model, processor, samples = _setup(args)
    batches = latent_use_batches(samples, processor, model.config.prefix_tokens, args.batch_size)
    return _report(write_latent_use(measure_latent_use(model, batches), args.out))


# --------------------------------------------------------------------------------------------------------------
# `lare data decontaminate`
def register_decontaminate(data_subparsers: argparse._SubParsersAction) -> None:
    """Add `decontaminate` to the `lare data` sub-commands."""
    parser = data_subparsers.add_parser(
        "decontaminate", help="remove training records that match a benchmark question+answer or image")
    parser.add_argument("--train", required=True, type=Path, help="training records (LLaVA JSON or JSONL)")
    parser.add_argument("--images", type=Path, default=None,
                        help="image root of --train (default: <train dir>/images, else <train dir>)")
    parser.add_argument("--against", required=True, nargs="+", action="extend", metavar="BENCH",
                        help="benchmark files: NAME=PATH with NAME one of mmbench, mmstar, mmvp, scienceqa, pope "
                             "(read by its loader; repeat NAME for several files), or a LLaVA-format PATH "
                             "(optionally LABEL=PATH)")
    parser.add_argument("--against-images", nargs="*", action="extend", default=[], metavar="NAME=DIR",
                        help="image folder of a benchmark (default: the loader's, or <file dir>/images)")
    parser.add_argument("--vision-model", required=True, type=Path,
                        help="vision tower or dual encoder directory (e.g. CLIP ViT-L/14), read with AutoModel")
    parser.add_argument("--threshold", type=float, default=0.9, help="image cosine similarity (default 0.9)")
    parser.add_argument("--pooling", choices=("pooled", "mean"), default="pooled",
                        help="image embedding: pooled/projected output (default) or mean of patch tokens")
    parser.add_argument("--out", required=True, type=Path, help="output directory")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--device", default=None)
    parser.set_defaults(handler=_decontaminate)


def parse_benchmark_specs(specs: list[str], image_specs: list[str]) -> dict[str, tuple[list[Path], Path | None]]:
    """`NAME=PATH` / bare `PATH` specs → {name: (paths, image folder or None)}; a bare path is named by its stem."""
    images: dict[str, Path] = {}
    for spec in image_specs:
        name, sep, folder = spec.partition("=")
        if not sep or not name or not folder:
            raise SystemExit(f"--against-images takes NAME=DIR, got {spec!r}")
        images[name] = Path(folder)
    groups: dict[str, list[Path]] = {}
    for spec in specs:
        name, sep, path = spec.partition("=")
        if not sep:
            name, path = Path(spec).stem, spec
        groups.setdefault(name, []).append(Path(path))
    unknown = set(images) - set(groups)
    if unknown:
        raise SystemExit(f"--against-images names {sorted(unknown)} match no --against benchmark")
    return {name: (paths, images.get(name)) for name, paths in groups.items()}


def _decontaminate(args: argparse.Namespace) -> int:
    import torch
    from transformers import AutoImageProcessor, AutoModel

    from lare.analysis.decontaminate import benchmark_items_from_records, decontaminate, write_decontamination
    from lare.analysis.samples import default_image_root
    from lare.data.records import load_records
    from lare.evaluation.benchmarks import BENCHMARK_NAMES, get_benchmark

    train_root = args.images or default_image_root(args.train)
    train_records, _ = load_records(args.train, train_root, on_bad="skip")
    items = []
    for name, (paths, folder) in parse_benchmark_specs(args.against, args.against_images).items():
        if name in BENCHMARK_NAMES:
            items += get_benchmark(name).load(paths, folder)
        else:
            for path in paths:
                records, _ = load_records(path, folder or default_image_root(path), on_bad="skip")
                items += benchmark_items_from_records(records, folder or default_image_root(path), name)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    vision_model = AutoModel.from_pretrained(args.vision_model).to(device).eval()
    image_processor = AutoImageProcessor.from_pretrained(args.vision_model)
    report = decontaminate(train_records, items, vision_model, image_processor, args.threshold, train_root,
                           args.batch_size, args.pooling)
    paths = write_decontamination(report, train_records, args.out,
                                  filtered_name=f"{args.train.stem}.decontaminated.json")
    return _report(paths)
