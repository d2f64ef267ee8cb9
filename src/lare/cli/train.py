"""`lare train`: run one training stage (`--config`) or the stage I–IV pipeline (`--pipeline`).

    lare train --config configs/stage2.yaml --max-steps 100 --optim.lr.extractor=1e-4
    lare train --pipeline configs/tiny/pipeline.yaml
    torchrun --nproc_per_node 8 $(which lare) train --config configs/stage3.yaml   # DDP; accelerate launch too

Any config key can be overridden with `--section.key=value` (YAML syntax for the value).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

_FLAG_KEYS = {"max_steps": "run.max_steps", "output_dir": "run.output_dir", "save_every": "run.save_every",
              "seed": "run.seed"}


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `train` command."""
    parser = subparsers.add_parser(
        "train", help="train one stage (--config) or stages I-IV (--pipeline)",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--config", help="a stage config (YAML)")
    source.add_argument("--pipeline", help="a pipeline config (YAML) chaining stages I-IV")
    parser.add_argument("--max-steps", type=int, help="optimizer steps (run.max_steps)")
    parser.add_argument("--output-dir", help="run directory (run.output_dir; with --pipeline: the pipeline's)")
    parser.add_argument("--save-every", type=int, help="checkpoint every N steps (run.save_every)")
    parser.add_argument("--seed", type=int, help="random seed (run.seed)")
    parser.add_argument("--resume", metavar="auto|PATH",
                        help="continue from the output dir's latest checkpoint (auto) or from PATH")
    # Free-form `--section.key=value` arguments reach `args.overrides` (see `lare.cli.main`).
    parser.set_defaults(handler=_train, accepts_overrides=True)


def _overrides(args: argparse.Namespace, pipeline: bool) -> dict[str, Any]:
    from lare.training.config import parse_override_args

    overrides = parse_override_args(args.overrides)
    for flag, key in _FLAG_KEYS.items():
        value = getattr(args, flag)
        if value is not None and not (pipeline and flag == "output_dir"):
            overrides[key] = value
    return overrides


def _train(args: argparse.Namespace) -> int:
    from lare.training.config import ConfigError
    from lare.training.nonfinite import NonFiniteLossError

    try:
        if args.pipeline:
            return _run_pipeline(args)
        return _run_stage(args)
    except ConfigError as error:
        print(f"lare train: config error: {error}", file=sys.stderr)
        return 2
    except NonFiniteLossError as error:
        print(f"lare train: {error}", file=sys.stderr)
        return 1


def _run_stage(args: argparse.Namespace) -> int:
    from lare.training.config import load_stage_config
    from lare.training.loop import train_stage

    config = load_stage_config(args.config, _overrides(args, pipeline=False))
    result = train_stage(config, resume=args.resume)
    _report(config.name, result.checkpoint, result.metrics_path)
    return 0


def _run_pipeline(args: argparse.Namespace) -> int:
    from lare.training.config import ConfigError, load_pipeline_config
    from lare.training.pipeline import run_pipeline

    if args.resume not in (None, "auto"):
        raise ConfigError("--resume with --pipeline: only 'auto' (stages always continue from their own "
                          "checkpoints)")
    pipeline, base_dir = load_pipeline_config(args.pipeline)
    if args.output_dir is not None:
        pipeline.output_dir = args.output_dir
    results = run_pipeline(pipeline, base_dir, _overrides(args, pipeline=True))
    for result in results:
        checkpoint = result if isinstance(result, Path) else result.checkpoint
        metrics = checkpoint.parent / "metrics.jsonl"
        _report(checkpoint.parent.name, checkpoint, metrics)
    return 0


def _report(name: str, checkpoint: Path, metrics_path: Path) -> None:
    from lare.training.loop import LOSS_TERMS
    from lare.training.metrics_log import read_metrics, summarize_curves

    if int(os.environ.get("RANK", "0")) != 0:
        return  # under torchrun / accelerate launch, one report is enough
    rows = read_metrics(metrics_path)
    print(f"{name}: {len(rows)} steps, final checkpoint {checkpoint} (loss means over the first / last fifth)")
    for term, curve in summarize_curves(rows, LOSS_TERMS).items():
        print(f"  {term:<6} first {curve['first']:.4f}  last {curve['last']:.4f}  change {curve['change']:+.4f}")
