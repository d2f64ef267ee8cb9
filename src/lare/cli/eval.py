"""`lare eval run | score`: generate benchmark predictions with a model, and score any model's predictions."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from lare.evaluation.answer_extraction import EXTRACTIONS

logger = logging.getLogger(__name__)

_BENCHMARKS = ("mmbench", "mmstar", "mmvp", "scienceqa", "pope")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("eval", help="run and score the benchmarks (MMBench, MMStar, MMVP, ScienceQA, POPE)")
    commands = parser.add_subparsers(dest="eval_command", required=True)

    run = commands.add_parser("run", help="generate predictions for a benchmark (batched, resumable)")
    run.add_argument("--model", required=True, type=Path, help="model directory (save_pretrained output)")
    run.add_argument("--benchmark", required=True, choices=_BENCHMARKS)
    run.add_argument("--data", required=True, type=Path, action="append",
                     help="benchmark file in its official format; repeat for POPE's split files")
    run.add_argument("--images", type=Path, help="image folder, for formats that reference image files")
    run.add_argument("--method", default="lare", choices=("lare", "cot", "direct"))
    run.add_argument("--latent-ablation", default="none", choices=("none", "zero", "shuffle", "noise"))
    run.add_argument("--out", required=True, type=Path, help="predictions JSONL; an existing file is resumed")
    run.add_argument("--batch-size", type=int, default=8)
    run.add_argument("--max-new-tokens", type=int, default=None,
                     help="generation budget (default: 32 for direct and lare, 256 for cot)")
    run.add_argument("--limit", type=int, default=None, help="only the first N questions (smoke tests)")
    run.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    run.set_defaults(handler=_run)

    score = commands.add_parser("score", help="score a predictions file with the benchmark's official rule")
    score.add_argument("--benchmark", required=True, choices=_BENCHMARKS)
    score.add_argument("--data", required=True, type=Path, action="append",
                       help="benchmark file; repeat for POPE's split files (random, popular, adversarial)")
    score.add_argument("--predictions", required=True, type=Path)
    score.add_argument("--mode", default="official", choices=("official", "lmms-eval"),
                       help="scoring convention (default: the benchmark's official rule)")
    score.add_argument("--answer-extraction", default="none", choices=EXTRACTIONS,
                       help="final: score only the text from the last 'The answer is' on (chain-of-thought "
                            "outputs); final_option: the same, and an option named by its text counts as its "
                            "letter; none (default): the official rule reads the raw prediction")
    score.add_argument("--allow-missing", action="store_true",
                       help="score questions without a prediction as empty answers instead of failing")
    score.add_argument("--out", type=Path, default=None,
                       help="metrics JSON (default: the predictions path with suffix .metrics.json)")
    score.set_defaults(handler=_score)


def _score(args: argparse.Namespace) -> int:
    from lare.evaluation.scoring import score_predictions

    metrics = score_predictions(args.benchmark, args.data, args.predictions, args.mode, args.allow_missing,
                                args.answer_extraction)
    out = args.out or args.predictions.with_suffix(".metrics.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(metrics, indent=2, ensure_ascii=False)
    out.write_text(text + "\n", encoding="utf-8")
    print(text)
    logger.info("metrics written to %s", out)
    return 0


def _run(args: argparse.Namespace) -> int:
    from lare.evaluation.runner import run_from_directory

    out = run_from_directory(
        model_dir=args.model,
        benchmark=args.benchmark,
        data_paths=args.data,
        images=args.images,
        method=args.method,
        latent_ablation=args.latent_ablation,
        out_path=args.out,
        batch_size=args.batch_size,
        max_new_tokens=args.max_new_tokens,
        limit=args.limit,
        device=args.device,
    )
    print(out)
    return 0
