"""`lare demo`: the main job (LaRe vs standard CoT vs direct answer on the embedded synthetic benchmark)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lare.demo.config import DemoConfig


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo", help="train and compare LaRe, standard CoT and direct answer on the synthetic benchmark")
    parser.add_argument("--quick", action="store_true", help="a ~2 minute smoke run (few steps, small corpus)")
    parser.add_argument("--out", type=Path, default=None, help="output directory (default runs/demo)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the data, stage 0, stage I and evaluation")
    parser.add_argument("--finetune-seed", type=int, default=None,
                        help="seed of the runs after stage I (LaRe II-IV, both baselines); default: --seed")
    parser.add_argument("--latent-replaces", metavar="STAGE=MODE", action="append", default=[],
                        help="what the latents replace in a LaRe stage (stage2|stage3|stage4 = prefix|all|none; "
                             "default stage3=none, the others prefix); repeatable")
    parser.add_argument("--no-grounding", action="store_true",
                        help="train LaRe exactly as the paper does: no saliency grounding loss and no training "
                             "windows on the evidence (docs/demo-experiments.md)")
    parser.add_argument("--window", type=int, default=None,
                        help="side of the refocus window in patch-grid cells (default 1: one object)")
    parser.set_defaults(handler=run_demo_command)


def _latent_replaces(pairs: list[str]) -> dict[str, str] | None:
    """`["stage3=prefix"]` → the default stage map with stage3 set to "prefix"; None when no pair is given."""
    from lare.demo.config import DemoConfig

    if not pairs:
        return None
    modes = dict(DemoConfig().latent_replaces)
    for pair in pairs:
        stage, sep, mode = pair.partition("=")
        if not sep or stage not in modes:
            raise SystemExit(f"--latent-replaces: expected STAGE=MODE with STAGE one of {sorted(modes)}, got "
                             f"{pair!r}")
        modes[stage] = mode
    return modes


def demo_config(args: argparse.Namespace) -> DemoConfig:
    """The `DemoConfig` that the command-line options ask for."""
    from lare.demo.config import DemoConfig

    overrides = {"seed": args.seed, "finetune_seed": args.finetune_seed}
    latent_replaces = _latent_replaces(args.latent_replaces)
    if latent_replaces is not None:
        overrides["latent_replaces"] = latent_replaces
    if args.out is not None:
        overrides["out_dir"] = args.out
    if args.no_grounding:
        overrides.update(grounding_weight=0.0, evidence_windows_in_training=False)
    if args.window is not None:
        overrides["window"] = args.window
    try:
        return DemoConfig.quick(**overrides) if args.quick else DemoConfig.default(**overrides)
    except ValueError as error:
        raise SystemExit(f"lare demo: {error}") from error


def run_demo_command(args: argparse.Namespace) -> int:
    from lare.demo.report import ablation_table, comparison_table, type_table, verdict
    from lare.demo.run import run_demo

    config = demo_config(args)
    result = run_demo(config)
    print()
    seeds = f"seed {result.seed}" + (f", fine-tuning seed {result.finetune_seed}"
                                     if result.finetune_seed != result.seed else "")
    print(f"LaRe vs baselines ({seeds}, {result.n_test} test questions):")
    print(comparison_table(result))
    print()
    types = type_table(result)
    if types:
        print("Accuracy by question type:")
        print(types)
        print()
    print("Latent ablation:")
    print(ablation_table(result))
    print()
    print("\n".join(verdict(result)))
    print()
    print(f"Done in {result.wall_s / 60:.1f} min: report in {config.out_dir / 'report.md'} "
          f"(results.json, refocus.png, curves.png beside it).")
    return 0
