"""Argument helpers shared by subcommands."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from simtune import config
from simtune.errors import ConfigError
from simtune.schema import Config

_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def add_config_args(parser: argparse.ArgumentParser, *, experiment_required: bool = True) -> None:
    """``EXPERIMENT.yaml`` and repeatable ``--set key=value``."""
    parser.add_argument("experiment", type=Path, nargs=None if experiment_required else "?",
                        help="experiment YAML (only the differences from the defaults)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value, e.g. --set stage1.lambda_ci=0.01 (repeatable)")


def load_config(args: argparse.Namespace) -> Config:
    return config.load(args.experiment, args.overrides)


def storage_folder(text: str | None, default: str = "sweeps") -> Path:
    """``--storage`` as an absolute folder on a filesystem every node mounts.

    Raises:
        ConfigError: a ``scheme://`` URI (``s3://``, ``gs://``, ``hdfs://``): trials write their
            run directories and shared stage caches with plain file operations, so the sweep
            storage must be a mounted path (NFS, a cluster filesystem), not an object store.
    """
    if text is not None and _URI.match(text):
        raise ConfigError(f"--storage {text}: a URI is not supported; give a folder that every node mounts at the "
                          f"same path (e.g. NFS), see docs/sweeps.md#clusters")
    return Path(text if text is not None else default).resolve()
