"""A stage's training data: validated records (rejects written and counted), the dataset and the collator."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from torch.utils.data import ConcatDataset, Dataset

from lare.data.collate import LaReCollator
from lare.data.dataset import LaReDataset
from lare.data.records import load_records
from lare.processing import LaReProcessor
from lare.training.config import DataSpec

logger = logging.getLogger(__name__)


def prepare_synthetic(spec: DataSpec) -> None:
    """Generate the synthetic benchmark the spec asks for, unless its `train.json` already exists.

    Call it on one process only (it writes files); generation is deterministic from the seed.
    """
    if spec.synthetic is None:
        return
    synthetic = spec.synthetic
    if (Path(synthetic.out_dir) / "train.json").is_file():
        return
    from lare.data.synthetic import generate_synthetic

    logger.info("generating the synthetic benchmark into %s", synthetic.out_dir)
    generate_synthetic(synthetic.out_dir, synthetic.n_train, synthetic.n_test, seed=synthetic.seed)


def build_dataset(spec: DataSpec, rejects_path: Path | None) -> tuple[Dataset, int]:
    """Load and validate every records file; return the dataset and the number of rejected records.

    Args:
        spec: the data section.
        rejects_path: where rejected records go (one JSONL for all sources); None writes nothing (non-main ranks).
    """
    datasets: list[Dataset] = []
    rejected = 0
    reject_lines: list[str] = []
    for index, source in enumerate(spec.records):
        image_root = source.image_root if source.image_root is not None else spec.image_root
        part = None
        if rejects_path is not None:
            part = rejects_path.with_name(f"{rejects_path.stem}.part{index}{rejects_path.suffix}")
        records, summary = load_records(source.path, image_root, on_bad=spec.on_bad, rejects_path=part)
        rejected += summary.n_rejected
        if part is not None:
            reject_lines.extend(line for line in part.read_text(encoding="utf-8").splitlines() if line)
            part.unlink()
        if not records:
            raise ValueError(f"{source.path}: no usable records ({summary.n_rejected} rejected)")
        datasets.append(LaReDataset(records, image_root))
    if rejects_path is not None:
        rejects_path.write_text("".join(line + "\n" for line in reject_lines), encoding="utf-8")
        if rejected:
            logger.warning("%d records rejected, listed in %s", rejected, rejects_path)
    dataset = datasets[0] if len(datasets) == 1 else ConcatDataset(datasets)
    return dataset, rejected


def build_collator(spec: DataSpec, processor: LaReProcessor, prefix_tokens: int) -> Callable:
    """The collator for the spec's target mode; P must match the model's `prefix_tokens`."""
    return LaReCollator(processor, target=spec.target, latent_replaces=spec.latent_replaces,
                        prefix_tokens=prefix_tokens, max_target_tokens=spec.max_target_tokens)
