"""Shared helpers for the training tests: tiny stage configs on a tiny synthetic corpus, subprocess runners."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml
from safetensors.torch import load_file

from lare.training.config import StageConfig, apply_overrides, read_yaml

REPO = Path(__file__).resolve().parents[2]
TINY_CONFIGS = REPO / "configs" / "tiny"
PAPER_CONFIGS = REPO / "configs"

# Run `lare` in a child interpreter (the console script may not be on PATH in every environment).
LARE = [sys.executable, "-c", "import sys; from lare.cli import main; sys.exit(main(sys.argv[1:]))"]


def child_env() -> dict[str, str]:
    """One thread per process: bit-reproducible CPU math across processes, and no oversubscription."""
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false",
               PYTHONPATH=os.pathsep.join(filter(None, [str(REPO / "src"), env.get("PYTHONPATH")])))
    return env


def tiny_stage(stage: int, data_dir: Path, output_dir: Path, **overrides: Any) -> StageConfig:
    """`configs/tiny/stage<stage>.yaml` on the test corpus, starting from a fresh tiny model.

    Stages II–IV normally start from the previous stage's checkpoint; here they start from the tiny preset
    so that each can be tested alone. `overrides` are dotted keys with `__` for dots (`run__max_steps=2`).
    """
    data = read_yaml(TINY_CONFIGS / f"stage{stage}.yaml")
    data["model"] = {"preset": "tiny", "tokenizer_corpus": "synthetic"}
    data["data"]["synthetic"] = None
    data["data"]["records"] = [str(data_dir / Path(source).name) for source in data["data"]["records"]]
    data["data"]["image_root"] = str(data_dir / "images")
    dotted = {"run.output_dir": str(output_dir), "run.batch_size": 2, "run.save_every": 0,
              "run.keep_last": None, "run.log_with": "none"}
    dotted.update({key.replace("__", "."): value for key, value in overrides.items()})
    return StageConfig.from_dict(apply_overrides(data, dotted))


def write_config(config: StageConfig, path: Path) -> Path:
    path.write_text(yaml.safe_dump(config.to_dict(), sort_keys=False), encoding="utf-8")
    return path


def run_lare(args: list[str], cwd: Path, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run([*LARE, *args], cwd=cwd, env=child_env(), capture_output=True, text=True,
                          timeout=timeout)


def weights(checkpoint: Path) -> dict:
    return load_file(str(checkpoint / "model.safetensors"))


def max_abs_diff(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k].double() - b[k].double()).abs().max()) if a[k].numel() else 0.0 for k in a)
