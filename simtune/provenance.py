"""What makes a run self-describing: code revision, package versions, host."""

from __future__ import annotations

import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

PACKAGES = ("simtune", "torch", "torchvision", "numpy", "scipy", "ray", "optuna", "mlflow")


def git_revision() -> str:
    """The simtune checkout's commit (with ``-dirty`` when it has uncommitted changes), or ``unknown``."""
    here = Path(__file__).resolve().parent
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True,
                             timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                               capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return rev + ("-dirty" if dirty else "")


def package_versions() -> dict[str, str]:
    out = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def describe(seed: int) -> dict[str, Any]:
    """Revision, versions, seed and host of the current process, for ``run.json`` and MLflow."""
    import torch

    return {
        "git_revision": git_revision(),
        "packages": package_versions(),
        "seed": seed,
        "python": platform.python_version(),
        "host": platform.node(),
        "cuda": torch.version.cuda if torch.cuda.is_available() else None,
        "device_name": torch.cuda.get_device_name(0) if torch.cuda.is_available() else platform.processor() or "cpu",
    }
