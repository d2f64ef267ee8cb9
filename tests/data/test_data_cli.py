"""`lare data synthetic`: the CLI writes the benchmark and prints its per-family summary."""

from __future__ import annotations

import argparse
import json

import pytest

from lare.cli import data as data_cli


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="lare")
    data_cli.register(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(argv)


def test_synthetic_command_writes_benchmark_and_prints_summary(tmp_path, capsys):
    out = tmp_path / "bench"
    args = _parse(["data", "synthetic", "--out", str(out), "--train", "10", "--test", "10", "--seed", "5"])
    assert args.handler(args) == 0

    printed = capsys.readouterr().out
    assert "10 train / 10 test" in printed
    for family in ("mmbench", "mmstar", "mmvp", "pope", "scienceqa"):
        assert family in printed
    stats = json.loads((out / "stats.json").read_text())
    assert stats["seed"] == 5 and stats["n_train"] == 10 and stats["n_test"] == 10


def test_data_needs_a_subcommand():
    with pytest.raises(SystemExit):
        _parse(["data"])
