"""`lare demo`: the main job (LaRe vs standard CoT vs direct answer on the embedded synthetic benchmark)."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo", help="train and compare LaRe, standard CoT and direct answer on the synthetic benchmark")
    parser.add_argument("--quick", action="store_true", help="a ~2 minute smoke run (few steps, small corpus)")
    parser.add_argument("--out", type=Path, default=None, help="output directory (default runs/demo)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the data, stage 0, stage I and evaluation")
    parser.add_argument("--finetune-seed", type=int, default=None,
                        help="seed of the runs after stage I (LaRe II-IV, both baselines); default: --seed")
    parser.set_defaults(handler=run_demo_command)


def run_demo_command(args: argparse.Namespace) -> int:
    from lare.demo.config import DemoConfig
    from lare.demo.report import ablation_table, comparison_table, verdict
    from lare.demo.run import run_demo

    overrides = {"seed": args.seed, "finetune_seed": args.finetune_seed}
    if args.out is not None:
        overrides["out_dir"] = args.out
    config = DemoConfig.quick(**overrides) if args.quick else DemoConfig.default(**overrides)
    result = run_demo(config)
    print()
    seeds = f"seed {result.seed}" + (f", fine-tuning seed {result.finetune_seed}"
                                     if result.finetune_seed != result.seed else "")
    print(f"LaRe vs baselines ({seeds}, {result.n_test} test questions):")
    print(comparison_table(result))
    print()
    print("Latent ablation:")
    print(ablation_table(result))
    print()
    print("\n".join(verdict(result)))
    print()
    print(f"Done in {result.wall_s / 60:.1f} min: report in {config.out_dir / 'report.md'} "
          f"(results.json, refocus.png, curves.png beside it).")
    return 0
