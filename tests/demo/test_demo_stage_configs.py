"""The stage configs `lare demo` trains with: the fine-tuning seed and what the latents replace in each stage."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from lare.cli import main
from lare.demo import run as demo_run
from lare.demo.config import DemoConfig


@pytest.fixture()
def train_all_configs(monkeypatch, tmp_path):
    """Run `train_all` with every stage's training replaced by a recorder; return {run key: StageConfig}."""

    def train_all(config: DemoConfig) -> dict:
        configs: dict = {}

        def record(key, stage_config):
            configs[key] = stage_config
            return tmp_path / key, tmp_path / f"{key}.jsonl"

        monkeypatch.setattr(demo_run, "_train", record)
        monkeypatch.setattr(demo_run, "pretrain_vision_stage",
                            lambda config, synthetic, run_dir: (tmp_path / "stage0", tmp_path / "stage0.jsonl"))
        synthetic = SimpleNamespace(image_root=tmp_path, captions_path=tmp_path / "captions.json",
                                    instructions_path=tmp_path / "instructions.json")
        prompted = {method: tmp_path / f"train_{method}.json" for method in demo_run.METHODS}
        demo_run.train_all(config, tmp_path, prompted, synthetic)
        return configs

    return train_all


@pytest.mark.parametrize("seed, finetune_seed, expected", [(0, 7, 7), (3, None, 3)])
def test_runs_after_stage1_use_the_finetune_seed(train_all_configs, tmp_path, seed, finetune_seed, expected):
    configs = train_all_configs(DemoConfig.quick(out_dir=tmp_path, seed=seed, finetune_seed=finetune_seed))

    assert {key: c.run.seed for key, c in configs.items()} == {
        "stage1": seed, "lare_stage2": expected, "lare_stage3": expected, "lare_stage4": expected,
        "cot": expected, "direct": expected}


def test_latent_replaces_per_stage(train_all_configs, tmp_path):
    # Default: the curriculum (stage III trains on the whole rationale after the latents).
    configs = train_all_configs(DemoConfig.quick(out_dir=tmp_path))
    assert {key: c.data.latent_replaces for key, c in configs.items() if key.startswith("lare_")} == {
        "lare_stage2": "prefix", "lare_stage3": "none", "lare_stage4": "prefix"}
    assert {configs[key].data.target for key in ("cot", "direct")} == {"cot", "direct"}

    configs = train_all_configs(DemoConfig.quick(out_dir=tmp_path, latent_replaces={
        "stage2": "all", "stage3": "prefix", "stage4": "none"}))
    assert [configs[f"lare_stage{n}"].data.latent_replaces for n in (2, 3, 4)] == ["all", "prefix", "none"]


@pytest.mark.parametrize("latent_replaces, message", [
    ({"stage2": "prefix", "stage3": "none"}, "needs exactly the stages"),
    ({"stage2": "prefix", "stage3": "half", "stage4": "prefix"}, r"latent_replaces\['stage3'\] must be one of"),
])
def test_bad_latent_replaces_is_rejected(latent_replaces, message):
    with pytest.raises(ValueError, match=message):
        DemoConfig.default(latent_replaces=latent_replaces)


class _StopBeforeTraining(Exception):
    """Raised by the stand-in `run_demo`: the config is all a CLI test needs."""


@pytest.fixture()
def cli_config(monkeypatch):
    """`lare demo ARGS…` with `run_demo` stopped before training: returns the `DemoConfig` the CLI built."""

    def parse(args: list[str]) -> DemoConfig:
        seen: dict = {}

        def stop(config):
            seen["config"] = config
            raise _StopBeforeTraining

        monkeypatch.setattr(demo_run, "run_demo", stop)
        with pytest.raises(_StopBeforeTraining):
            main(["demo", *args])
        return seen["config"]

    return parse


def test_cli_latent_replaces_overrides_one_stage(cli_config, tmp_path):
    config = cli_config(["--quick", "--out", str(tmp_path), "--latent-replaces", "stage3=prefix"])
    assert config.latent_replaces == {"stage2": "prefix", "stage3": "prefix", "stage4": "prefix"}
    with pytest.raises(SystemExit, match="expected STAGE=MODE"):
        main(["demo", "--quick", "--latent-replaces", "stage5=none"])


def test_grounding_reaches_lare_stages_only(train_all_configs, tmp_path):
    configs = train_all_configs(DemoConfig.quick(out_dir=tmp_path))
    for key in ("lare_stage2", "lare_stage3", "lare_stage4"):
        assert configs[key].loss.grounding_weight == 1.0
        assert configs[key].loss.evidence_windows_in_training is True
    for key in ("stage1", "cot", "direct"):
        assert configs[key].loss.latent_steps == 0  # plain forward: no latent loop to ground
        assert configs[key].loss.grounding_weight is None
    paper = train_all_configs(DemoConfig.quick(out_dir=tmp_path, grounding_weight=0.0,
                                               evidence_windows_in_training=False))
    assert paper["lare_stage3"].loss.grounding_weight == 0.0
    assert paper["lare_stage3"].loss.evidence_windows_in_training is False


def test_cli_no_grounding_and_window(cli_config, tmp_path):
    config = cli_config(["--quick", "--out", str(tmp_path), "--no-grounding", "--window", "2"])
    assert (config.grounding_weight, config.evidence_windows_in_training, config.window) == (0.0, False, 2)
    with pytest.raises(SystemExit, match="DemoConfig.window must be >= 1"):
        main(["demo", "--quick", "--window", "0"])
