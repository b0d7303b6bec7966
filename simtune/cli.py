"""``simtune`` command line: each subcommand parses, validates and calls one library function.

User errors (``SimtuneError``) print one line on stderr and exit with code 2; a diverged
run (``NonFiniteLoss``) prints one line and exits with code 3; ``--debug`` shows the
traceback instead.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from simtune.errors import EXIT_DIVERGED, EXIT_INTERRUPTED, EXIT_USER_ERROR, NonFiniteLoss, SimtuneError

# Each module defines ``register(subparsers)``, which adds its parser with ``func=run``.
COMMANDS = ("validate", "data", "train", "eval", "sweep", "retrain", "report", "ui", "ablation", "bench")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="simtune", description=__doc__.splitlines()[0])
    parser.add_argument("--debug", action="store_true", help="show tracebacks for user errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"simtune.commands.{name}")
        except ModuleNotFoundError as exc:
            if exc.name and exc.name.startswith("simtune.commands"):
                continue  # a command whose module is not part of this build
            raise
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``simtune`` console script; returns the exit code."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except SimtuneError as exc:
        if args.debug:
            raise
        print(f"simtune {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except NonFiniteLoss as exc:
        if args.debug:
            raise
        kept = f"; run directory kept for inspection: {exc.run_dir}" if exc.run_dir is not None else ""
        print(f"simtune {args.command}: diverged: {exc}{kept}", file=sys.stderr)
        return EXIT_DIVERGED
    except KeyboardInterrupt:
        print(f"simtune {args.command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
