"""`lare demo --quick` end to end: the report, the JSON and the PNGs exist and hold numbers."""

from __future__ import annotations

import json
import math

import numpy as np
from PIL import Image

from lare.cli import main


def _is_fraction(value) -> bool:
    return isinstance(value, float) and 0.0 <= value <= 1.0


def test_quick_demo_writes_report_json_and_figures(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| standard CoT |" in printed and f"report in {out / 'report.md'}" in printed

    results = json.loads((out / "results.json").read_text())
    assert set(results["methods"]) == {"lare", "cot", "direct"}
    assert set(results["latent_ablations"]) == {"zero", "shuffle"}
    for entry in [*results["methods"].values(), *results["latent_ablations"].values()]:
        assert _is_fraction(entry["accuracy"])
        assert entry["tokens_correct"] is None or entry["tokens_correct"] > 0
        assert set(entry["by_family"]) == {"mmbench", "mmstar", "mmvp", "pope", "scienceqa"}
        assert all(_is_fraction(f["accuracy"]) for f in entry["by_family"].values())
    assert results["n_test"] == sum(f["n"] for f in results["methods"]["lare"]["by_family"].values()) > 0
    assert results["seed"] == 0 and results["wall_s"] > 0 and math.isfinite(results["wall_s"])
    precision = results["refocus_precision"]["overall"]
    assert precision["n_steps"] > 0 and _is_fraction(precision["precision"]) and _is_fraction(precision["baseline"])

    latent_use = results["latent_use"]
    assert latent_use["n_samples"] == results["n_test"] and latent_use["n_prefix_tokens"] > 0
    for ce in [*latent_use["prefix_ce"].values(), *latent_use["target_ce"].values()]:
        assert isinstance(ce, float) and math.isfinite(ce) and ce > 0

    report = (out / "report.md").read_text()
    for heading in ("## Accuracy and tokens", "## Accuracy by question type", "## Latent ablation",
                    "## Refocus precision", "## Latent use"):
        assert heading in report
    lare_mmbench = results["methods"]["lare"]["by_family"]["mmbench"]["by_type"]
    assert set(lare_mmbench) == {"colour_recognition", "shape_recognition", "spatial_relationship"}
    assert all(_is_fraction(value) for value in lare_mmbench.values())
    assert set(results["methods"]["cot"]["by_family"]["mmstar"]["by_type"]) == {"two_hop_colour", "two_hop_shape"}
    assert set(results["refocus_precision"]["per_type"]["mmbench"]) == set(lare_mmbench)
    lare_row = next(line for line in report.splitlines() if line.startswith("| LaRe |"))
    assert f"{100 * results['methods']['lare']['accuracy']:.1f}" in lare_row

    for name, min_size in (("refocus.png", (400, 300)), ("curves.png", (600, 200))):
        with Image.open(out / name) as image:
            assert image.size[0] >= min_size[0] and image.size[1] >= min_size[1], name
            assert np.unique(np.asarray(image.convert("L"))).size > 10, f"{name} is blank"
