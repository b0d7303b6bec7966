"""Argument helpers shared by subcommands."""

from __future__ import annotations

import argparse
from pathlib import Path

from simtune import config
from simtune.schema import Config


def add_config_args(parser: argparse.ArgumentParser, *, experiment_required: bool = True) -> None:
    """``EXPERIMENT.yaml`` and repeatable ``--set key=value``."""
    parser.add_argument("experiment", type=Path, nargs=None if experiment_required else "?",
                        help="experiment YAML (only the differences from the defaults)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value, e.g. --set stage1.lambda_ci=0.01 (repeatable)")


def load_config(args: argparse.Namespace) -> Config:
    return config.load(args.experiment, args.overrides)
