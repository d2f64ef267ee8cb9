"""Stages I–IV in order: each stage starts from the previous stage's final checkpoint; finished stages are skipped.

Re-running a pipeline continues where it stopped: a finished stage (its latest checkpoint is marked finished) is
skipped, an interrupted one resumes from its latest checkpoint, later ones start afterwards.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from lare.training.checkpoint import latest_checkpoint, read_trainer_state
from lare.training.config import PipelineConfig, StageConfig, apply_overrides, read_yaml
from lare.training.loop import TrainResult, train_stage

logger = logging.getLogger(__name__)


def pipeline_stage_configs(pipeline: PipelineConfig, base_dir: str | Path, overrides: dict[str, Any] | None = None
                           ) -> list[StageConfig]:
    """The stage configs as the pipeline runs them, without their model chaining.

    Each gets `run.output_dir = <pipeline output_dir>/<stage name>`; `overrides` (dotted keys) apply to every
    stage after the pipeline's per-stage overrides.
    """
    configs = []
    for index, entry in enumerate(pipeline.stages):
        path = Path(entry.config)
        if not path.is_absolute():
            path = Path(base_dir) / path
        data = apply_overrides(read_yaml(path), {**entry.overrides, **(overrides or {})})
        name = data.get("name") or f"stage{index + 1}"
        data = apply_overrides(data, {"run.output_dir": str(Path(pipeline.output_dir) / str(name))})
        configs.append(StageConfig.from_dict(data))
    names = [config.name for config in configs]
    if len(set(names)) != len(names):
        raise ValueError(f"pipeline stage names must differ (they name the output directories): {names}")
    return configs


def run_pipeline(pipeline: PipelineConfig, base_dir: str | Path, overrides: dict[str, Any] | None = None
                 ) -> list[TrainResult | Path]:
    """Run every stage; return, per stage, its `TrainResult` (or the final checkpoint of a skipped stage)."""
    results: list[TrainResult | Path] = []
    previous: Path | None = None
    for index, config in enumerate(pipeline_stage_configs(pipeline, base_dir, overrides)):
        if previous is not None:
            config = StageConfig.from_dict({**config.to_dict(), "model": {"path": str(previous)}})
        done = latest_checkpoint(config.run.output_dir)
        if done is not None and read_trainer_state(done).finished:
            logger.info("stage %d (%s) already finished at %s; skipping it", index + 1, config.name, done)
            results.append(done)
            previous = done
            continue
        logger.info("stage %d (%s): training into %s", index + 1, config.name, config.run.output_dir)
        result = train_stage(config, resume="auto")
        results.append(result)
        previous = result.checkpoint
    return results
