"""Typed, validated stage configuration: what one training stage builds, trains, reads and writes.

A stage config is a YAML file with five sections (`model`, `data`, `optim`, `loss`, `run`) plus a `name`. Every
section is a dataclass; unknown keys, wrong types and out-of-range values are errors that name the dotted key
(`optim.lr.projetor`). Command-line overrides use the same dotted keys (`--optim.lr.projector=1e-3`), and the
resolved config is written next to every checkpoint so a run can always be reproduced.

Relative paths in a stage config (records, image roots, output dir) are relative to the working directory.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

MODULE_GROUPS = ("vision_tower", "projector", "language_model", "extractor", "semantic_losses")
"""Parameter groups a stage can train; `lare.training.stages` maps parameter names onto them."""

MIXED_PRECISION = ("no", "bf16", "fp16", "auto")
TRACKERS = ("auto", "none", "tensorboard", "wandb")


class ConfigError(ValueError):
    """A stage or pipeline config that cannot be used; the message names the dotted key."""


# --------------------------------------------------------------------------------------------------------------
# Sections
@dataclass
class BackboneSpec:
    """Pretrained parts for `LaReForConditionalGeneration.from_backbones` (local directories or Hub ids)."""

    vision: str
    llm: str


@dataclass
class ModelSpec:
    """Where the model comes from: exactly one of `preset`, `path` or `from_backbones`.

    Attributes:
        preset: "tiny" builds `LaReConfig.tiny()` with random weights (the CPU demo).
        path: a saved LaRe directory (`save_pretrained` output, e.g. a previous stage's final checkpoint).
        from_backbones: pretrained vision tower and LLM to start stage I from.
        overrides: `LaReConfig` fields for `preset` / `from_backbones` (`text_config` / `vision_config` may be
            partial dicts, merged into the preset's).
        tokenizer_corpus: tiny preset only: "synthetic" trains the offline tokenizer on the synthetic
            benchmark's vocabulary as well (its words become single tokens), "base" uses the fixed corpus alone.
    """

    preset: Literal["tiny"] | None = None
    path: str | None = None
    from_backbones: BackboneSpec | None = None
    overrides: dict[str, Any] = field(default_factory=dict)
    tokenizer_corpus: Literal["base", "synthetic"] = "synthetic"

    def validate(self, key: str) -> None:
        given = [name for name in ("preset", "path", "from_backbones") if getattr(self, name) is not None]
        if len(given) != 1:
            raise ConfigError(f"{key}: give exactly one of preset, path, from_backbones (got {given or 'none'})")
        if self.path is not None and self.overrides:
            raise ConfigError(f"{key}.overrides: a saved model keeps its architecture; set loss fields in `loss`")


@dataclass
class RecordSource:
    """One records file (LLaVA JSON or JSONL) and the directory its `image` paths are relative to."""

    path: str
    image_root: str | None = None


@dataclass
class SyntheticSpec:
    """Generate the embedded synthetic benchmark into `out_dir` when its `train.json` is missing."""

    out_dir: str
    n_train: int = 2000
    n_test: int = 500
    seed: int = 0

    def validate(self, key: str) -> None:
        _positive(f"{key}.n_train", self.n_train)
        _positive(f"{key}.n_test", self.n_test)


@dataclass
class DataSpec:
    """Training data.

    Attributes:
        records: records files; a plain string uses `image_root`, a `{path, image_root}` entry its own root.
        image_root: default image directory for the records files.
        target: what follows `<eot>` ("lare": rationale minus what the latents replace, then the answer;
            "cot": full rationale + answer; "direct": answer only).
        latent_replaces: "prefix" (the first P rationale tokens), "all" (the whole rationale) or "none" (nothing:
            the whole rationale follows the latents, a curriculum stage before "prefix").
        on_bad: "skip" rejects bad records into `rejects` (counted and logged); "raise" stops at the first.
        rejects: JSONL file of rejected records; None writes `<output_dir>/rejects.jsonl`.
        max_target_tokens: cut targets (eos included) to this many tokens.
        num_workers: DataLoader worker processes.
        synthetic: generate the synthetic benchmark first (used by the tiny demo configs).
    """

    records: list[RecordSource] = field(default_factory=list)
    image_root: str | None = None
    target: Literal["lare", "cot", "direct"] = "lare"
    latent_replaces: Literal["prefix", "all", "none"] = "prefix"
    on_bad: Literal["skip", "raise"] = "skip"
    rejects: str | None = None
    max_target_tokens: int | None = None
    num_workers: int = 0
    synthetic: SyntheticSpec | None = None

    def validate(self, key: str) -> None:
        if not self.records:
            raise ConfigError(f"{key}.records: give at least one records file")
        if self.max_target_tokens is not None:
            _positive(f"{key}.max_target_tokens", self.max_target_tokens)
        if self.num_workers < 0:
            raise ConfigError(f"{key}.num_workers must be >= 0, got {self.num_workers}")
        if self.synthetic is not None:
            self.synthetic.validate(f"{key}.synthetic")


@dataclass
class OptimSpec:
    """AdamW and its schedule. The groups named in `lr` train; every other group is frozen.

    Attributes:
        lr: learning rate per module group (keys from `MODULE_GROUPS`).
        weight_decay: AdamW decoupled weight decay (not applied to biases, norms and other 1-D parameters).
        betas, eps: AdamW moments.
        warmup_ratio: fraction of the steps with linear warmup (floor of ratio × steps).
        schedule: "cosine" (to 0 after warmup) or "constant" (after warmup).
        grad_clip: max global gradient norm; None disables clipping (the norm is still logged).
        grad_accum: micro-batches per optimizer step.
    """

    lr: dict[str, float] = field(default_factory=dict)
    weight_decay: float = 0.05
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    warmup_ratio: float = 0.03
    schedule: Literal["cosine", "constant"] = "cosine"
    grad_clip: float | None = 1.0
    grad_accum: int = 1

    def validate(self, key: str) -> None:
        if not self.lr:
            raise ConfigError(f"{key}.lr: name at least one module group to train ({', '.join(MODULE_GROUPS)})")
        for group, value in self.lr.items():
            if group not in MODULE_GROUPS:
                raise ConfigError(f"{key}.lr.{group}: unknown module group (known: {', '.join(MODULE_GROUPS)})")
            if not value > 0 or not math.isfinite(value):
                raise ConfigError(f"{key}.lr.{group} must be a positive number, got {value}")
        if self.weight_decay < 0:
            raise ConfigError(f"{key}.weight_decay must be >= 0, got {self.weight_decay}")
        if not all(0 <= beta < 1 for beta in self.betas):
            raise ConfigError(f"{key}.betas must both lie in [0, 1), got {list(self.betas)}")
        if not self.eps > 0:
            raise ConfigError(f"{key}.eps must be > 0, got {self.eps}")
        if not 0 <= self.warmup_ratio < 1:
            raise ConfigError(f"{key}.warmup_ratio must lie in [0, 1), got {self.warmup_ratio}")
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise ConfigError(f"{key}.grad_clip must be > 0 or null, got {self.grad_clip}")
        _positive(f"{key}.grad_accum", self.grad_accum)


@dataclass
class LossSpec:
    """Loss settings that override the model config for this stage (None keeps the model's value).

    Attributes:
        latent_steps: T; 0 trains the plain LLaVA-style forward (stage I).
        align_weight, image_weight, text_weight: λ1, λ2, λ3; 0 skips the term entirely.
        grounding_weight: the saliency grounding loss's weight (not in the paper; needs records with boxes).
        evidence_windows_in_training: take each step's window over its evidence box (not in the paper).
        prefix_tokens: P, the rationale tokens the latents replace (also used by the collator).
    """

    latent_steps: int | None = None
    align_weight: float | None = None
    image_weight: float | None = None
    text_weight: float | None = None
    grounding_weight: float | None = None
    evidence_windows_in_training: bool | None = None
    prefix_tokens: int | None = None

    def validate(self, key: str) -> None:
        if self.latent_steps is not None and self.latent_steps < 0:
            raise ConfigError(f"{key}.latent_steps must be >= 0, got {self.latent_steps}")
        for name in ("align_weight", "image_weight", "text_weight", "grounding_weight"):
            value = getattr(self, name)
            if value is not None and (value < 0 or not math.isfinite(value)):
                raise ConfigError(f"{key}.{name} must be a finite number >= 0, got {value}")
        if self.prefix_tokens is not None:
            _positive(f"{key}.prefix_tokens", self.prefix_tokens)


@dataclass
class RunSpec:
    """Length, batching, checkpointing and logging of the run.

    Attributes:
        output_dir: checkpoints (`step-N/`), `metrics.jsonl`, `config.yaml`, rejects.
        max_steps: optimizer steps; None runs `epochs` over the data.
        epochs: passes over the data when `max_steps` is None.
        batch_size: samples per process per micro-batch (global batch = batch_size × processes × grad_accum).
        save_every: checkpoint every N steps (0: only at the end); a final checkpoint is always written.
        keep_last: keep this many most recent checkpoints (None keeps all).
        seed: model init, data order and the training RNG (offset per rank).
        mixed_precision: "auto" = bf16 on CUDA with bf16, else fp16 on CUDA, else no (CPU).
        max_nonfinite_skips: stop after this many consecutive steps with a non-finite loss.
        log_with: "auto" uses tensorboard or wandb when installed, "none" only writes metrics.jsonl.
    """

    output_dir: str = ""
    max_steps: int | None = None
    epochs: float = 1.0
    batch_size: int = 8
    save_every: int = 500
    keep_last: int | None = 3
    seed: int = 0
    mixed_precision: Literal["no", "bf16", "fp16", "auto"] = "auto"
    max_nonfinite_skips: int = 10
    log_with: Literal["auto", "none", "tensorboard", "wandb"] = "auto"

    def validate(self, key: str) -> None:
        if not self.output_dir:
            raise ConfigError(f"{key}.output_dir: required (where checkpoints and metrics go)")
        if self.max_steps is not None:
            _positive(f"{key}.max_steps", self.max_steps)
        if not self.epochs > 0:
            raise ConfigError(f"{key}.epochs must be > 0, got {self.epochs}")
        _positive(f"{key}.batch_size", self.batch_size)
        if self.save_every < 0:
            raise ConfigError(f"{key}.save_every must be >= 0, got {self.save_every}")
        if self.keep_last is not None:
            _positive(f"{key}.keep_last", self.keep_last)
        _positive(f"{key}.max_nonfinite_skips", self.max_nonfinite_skips)


@dataclass
class StageConfig:
    """One training stage (I–IV): model source, data, optimizer, loss weights and run settings."""

    name: str
    model: ModelSpec
    data: DataSpec
    optim: OptimSpec
    loss: LossSpec = field(default_factory=LossSpec)
    run: RunSpec = field(default_factory=RunSpec)

    def validate(self) -> StageConfig:
        if not self.name:
            raise ConfigError("name: required")
        for section in ("model", "data", "optim", "loss", "run"):
            getattr(self, section).validate(section)
        return self

    @property
    def trainable_groups(self) -> list[str]:
        """Module groups this stage trains, in `MODULE_GROUPS` order."""
        return [group for group in MODULE_GROUPS if group in self.optim.lr]

    def to_dict(self) -> dict[str, Any]:
        """Plain YAML/JSON-ready dict (tuples become lists)."""
        return _plain(dataclasses.asdict(self))

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StageConfig:
        """Build and validate from a nested dict; unknown keys are errors naming the dotted key."""
        return _build(cls, data, "").validate()

    def with_overrides(self, overrides: dict[str, Any]) -> StageConfig:
        """A validated copy with dotted-key overrides applied (`{"run.max_steps": 10}`)."""
        return StageConfig.from_dict(apply_overrides(self.to_dict(), overrides))


@dataclass
class PipelineStage:
    """One entry of a pipeline: a stage config file (relative to the pipeline file) and dotted overrides."""

    config: str
    overrides: dict[str, Any] = field(default_factory=dict)


@dataclass
class PipelineConfig:
    """Stages I–IV in order; stage i+1 starts from stage i's final checkpoint.

    Attributes:
        output_dir: each stage writes into `<output_dir>/<stage name>`.
        stages: stage config files (a plain string, or `{config, overrides}`).
    """

    output_dir: str
    stages: list[PipelineStage]

    def validate(self) -> PipelineConfig:
        if not self.output_dir:
            raise ConfigError("output_dir: required")
        if not self.stages:
            raise ConfigError("stages: list at least one stage config")
        return self

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PipelineConfig:
        return _build(cls, data, "").validate()


def load_pipeline_config(path: str | Path) -> tuple[PipelineConfig, Path]:
    """Read a pipeline YAML; return it and the directory its stage paths are relative to."""
    try:
        return PipelineConfig.from_dict(read_yaml(path)), Path(path).parent
    except ConfigError as error:
        raise ConfigError(f"{path}: {error}") from None


# --------------------------------------------------------------------------------------------------------------
# Loading and overrides
def load_stage_config(path: str | Path, overrides: dict[str, Any] | None = None) -> StageConfig:
    """Read a stage YAML file, apply dotted overrides, validate."""
    data = read_yaml(path)
    if overrides:
        data = apply_overrides(data, overrides)
    try:
        return StageConfig.from_dict(data)
    except ConfigError as error:
        raise ConfigError(f"{path}: {error}") from None


def read_yaml(path: str | Path) -> dict[str, Any]:
    """A YAML file holding a mapping."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    return data


def parse_override_args(args: list[str]) -> dict[str, Any]:
    """`["--optim.lr.projector=1e-3", "--run.seed", "3"]` → `{"optim.lr.projector": 0.001, "run.seed": 3}`.

    Values are parsed as YAML scalars/flow collections (`null`, `true`, `[1, 2]`); a value that is not valid
    YAML stays a string.
    """
    overrides: dict[str, Any] = {}
    index = 0
    while index < len(args):
        arg = args[index]
        if not arg.startswith("--") or len(arg) == 2:
            raise ConfigError(f"unexpected argument {arg!r}: overrides look like --section.key=value")
        key, sep, value = arg[2:].partition("=")
        if not sep:
            if index + 1 >= len(args) or args[index + 1].startswith("--"):
                raise ConfigError(f"override --{key} needs a value (--{key}=VALUE)")
            index += 1
            value = args[index]
        if "." not in key:
            raise ConfigError(f"override --{key}: use a dotted key such as --run.{key.replace('-', '_')}")
        overrides[key] = _parse_scalar(value)
        index += 1
    return overrides


def apply_overrides(data: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """Set dotted keys in a copy of a nested dict, creating intermediate mappings as needed."""
    data = copy.deepcopy(data)
    for dotted, value in overrides.items():
        parts = dotted.split(".")
        node = data
        for depth, part in enumerate(parts[:-1]):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            elif not isinstance(child, dict):
                raise ConfigError(f"override {dotted}: {'.'.join(parts[: depth + 1])} is not a section")
            node = child
        node[parts[-1]] = value
    return data


def _parse_scalar(text: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


# --------------------------------------------------------------------------------------------------------------
# Typed conversion of plain dicts into the dataclasses above
def _build(cls: type, data: Any, key: str) -> Any:
    where = key or "config"
    if isinstance(data, cls):
        return data
    if cls is RecordSource and isinstance(data, str):
        return RecordSource(path=data)
    if cls is PipelineStage and isinstance(data, str):
        return PipelineStage(config=data)
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(data).__name__} {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = [name for name in data if name not in fields]
    if unknown:
        raise ConfigError(f"{_join(key, unknown[0])}: unknown key (known: {', '.join(fields)})")
    values = {}
    for name, spec in fields.items():
        if name in data:
            values[name] = _convert(hints[name], data[name], _join(key, name))
        elif spec.default is dataclasses.MISSING and spec.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{_join(key, name)}: required")
    return cls(**values)


def _convert(hint: Any, value: Any, key: str) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        options = [arg for arg in args if arg is not type(None)]
        if len(options) == 1:
            return _convert(options[0], value, key)
        errors = []
        for option in options:
            try:
                return _convert(option, value, key)
            except ConfigError as error:
                errors.append(str(error))
        raise ConfigError(errors[0])
    if value is None:
        raise ConfigError(f"{key}: must not be null")
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{key}: must be one of {list(args)}, got {value!r}")
        return value
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, key)
    if origin is list:
        items = value if isinstance(value, list) else [value]
        return [_convert(args[0], item, f"{key}[{i}]") for i, item in enumerate(items)]
    if origin is tuple:
        if not isinstance(value, (list, tuple)) or len(value) != len(args):
            raise ConfigError(f"{key}: expected a list of {len(args)} values, got {value!r}")
        return tuple(_convert(arg, item, f"{key}[{i}]") for i, (arg, item) in enumerate(zip(args, value)))
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {type(value).__name__} {value!r}")
        return {str(k): _convert(args[1], v, f"{key}.{k}") for k, v in value.items()}
    if hint is Any:
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return value
    if hint is float:
        # YAML 1.1 reads `1e-3` (no dot) as a string; accept it as the number it obviously is.
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                raise ConfigError(f"{key}: expected a number, got {value!r}") from None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return str(value)
    raise TypeError(f"{key}: unsupported config type {hint!r}")  # a bug in this module, not in the YAML


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _positive(key: str, value: int) -> None:
    if value < 1:
        raise ConfigError(f"{key} must be >= 1, got {value}")


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return value
