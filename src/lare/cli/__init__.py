"""The `lare` command line: `lare demo | train | eval | infer | analyze | data`.

Each sub-command lives in its own module under `lare.cli` and exposes `register(subparsers)`, which adds its
parser and sets `handler`. This is the only package that prints.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

# Sub-command modules; a module that does not exist yet is skipped so partial installs still run.
_COMMAND_MODULES = ("demo", "train", "eval", "infer", "analyze", "data")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lare", description=__doc__.splitlines()[0])
    parser.add_argument("--log-level", default="INFO", help="Python logging level (default INFO)")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for name in _COMMAND_MODULES:
        try:
            module = importlib.import_module(f"lare.cli.{name}")
        except ModuleNotFoundError as error:
            if error.name != f"lare.cli.{name}":
                raise
            continue
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extras = parser.parse_known_args(argv)
    # Commands that take free-form config overrides (`lare train --optim.lr.projector=1e-3`) receive the
    # arguments argparse does not know; every other command rejects them as usual.
    if extras and not getattr(args, "accepts_overrides", False):
        parser.error(f"unrecognized arguments: {' '.join(extras)}")
    args.overrides = extras
    logging.basicConfig(level=args.log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    return int(args.handler(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
