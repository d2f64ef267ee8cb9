"""`lare analyze …` end to end on a saved tiny model and the synthetic benchmark: each sub-command writes its
files and prints its table."""

from __future__ import annotations

import json

import pytest

from lare.cli import main
from lare.cli.analyze import parse_benchmark_specs
from tests.analysis.pngs import assert_png

# sub-command, extra arguments, files it must write, PNG size (W, H) or None.
CASES = [
    ("heatmaps", ["--limit", "2", "--latent-steps", "2", "--max-new-tokens", "2"],
     ["heatmaps.png", "heatmaps.json", "heatmaps.md"], (800, 420)),
    ("reconstruct", ["--limit", "2", "--sampling-steps", "2", "--latent-steps", "1"],
     ["reconstruction.png", "reconstruction.json", "reconstruction.md"], (600, 440)),
    ("probe", [], ["probe.json", "probe.md"], None),
    ("attention", ["--limit", "3", "--latent-steps", "1"], ["attention.json", "attention.md",
                                                            "attention_per_token.npz"], None),
    ("steps", ["--limit", "2", "--steps", "0", "1", "--halting", "none", "cosine", "--halting-steps", "2",
               "--max-new-tokens", "2"], ["steps.png", "steps.json", "steps.md"], (640, 400)),
    ("precision", ["--limit", "4", "--latent-steps", "2"], ["refocus_precision.json", "refocus_precision.md"], None),
    ("latent-use", ["--limit", "5"], ["latent_use.json", "latent_use.md"], None),
]


@pytest.mark.parametrize("command, extra, files, png_size", CASES, ids=[case[0] for case in CASES])
def test_analyze_command(command, extra, files, png_size, saved_model_dir, synthetic, tmp_path, capsys):
    out = tmp_path / command
    code = main(["--log-level", "WARNING", "analyze", command, "--model", str(saved_model_dir), "--data",
                 str(synthetic.test_path), "--out", str(out), "--batch-size", "4", "--device", "cpu", *extra])
    assert code == 0
    for name in files:
        assert (out / name).stat().st_size > 0, name
    if png_size is not None:
        assert_png(out / files[0], png_size)
    printed = capsys.readouterr().out
    assert "| " in printed and str(out) in printed  # the markdown table and the paths
    json_files = [name for name in files if name.endswith(".json")]
    assert json.loads((out / json_files[0]).read_text())


def test_benchmark_specs():
    specs = parse_benchmark_specs(["pope=a/random.jsonl", "pope=a/popular.jsonl", "data/test.json"],
                                  ["pope=a/images"])
    assert {name: ([str(p) for p in paths], str(images) if images else None)
            for name, (paths, images) in specs.items()} == {
        "pope": (["a/random.jsonl", "a/popular.jsonl"], "a/images"), "test": (["data/test.json"], None)}
    with pytest.raises(SystemExit, match="match no --against"):
        parse_benchmark_specs(["pope=x.jsonl"], ["mmbench=dir"])
