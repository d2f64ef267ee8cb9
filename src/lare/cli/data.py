"""`lare data`: data tools. Sub-commands: `synthetic` (generate the embedded benchmark) and `decontaminate`
(drop training records that match benchmark questions or images)."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `data` command; each data tool is a nested sub-command with its own `handler`."""
    from lare.cli.analyze import register_decontaminate

    parser = subparsers.add_parser("data", help="data tools: generate the synthetic benchmark, decontaminate")
    commands = parser.add_subparsers(dest="data_command", required=True)

    synthetic = commands.add_parser("synthetic", help="generate the synthetic visual-reasoning benchmark")
    synthetic.add_argument("--out", required=True, help="output directory")
    synthetic.add_argument("--train", type=int, default=2000, help="training questions (default 2000)")
    synthetic.add_argument("--test", type=int, default=500, help="test questions (default 500)")
    synthetic.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    synthetic.add_argument("--overwrite", action="store_true", help="replace an existing benchmark in --out")
    synthetic.set_defaults(handler=_synthetic)
    register_decontaminate(commands)


def _synthetic(args: argparse.Namespace) -> int:
    from lare.data.synthetic import generate_synthetic

    summary = generate_synthetic(args.out, args.train, args.test, seed=args.seed, overwrite=args.overwrite)
    print(f"wrote {summary.n_train} train / {summary.n_test} test questions, {summary.n_captions} captions, "
          f"{summary.n_instructions} instructions to {summary.out_dir}")
    print(f"evidence within 1/16 of the image: {summary.small_evidence_fraction:.1%}")
    print(f"{'family':<10} {'train':>6} {'test':>6} {'chance':>7} {'majority':>9}")
    for family, stats in summary.families.items():
        print(f"{family:<10} {stats.n_train:>6} {stats.n_test:>6} {stats.chance:>7.3f} {stats.majority:>9.3f}")
    return 0
