"""Finding and evaluating the models a run directory holds."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from simtune import config
from simtune.errors import ConfigError


def locate(path: Path) -> tuple[Path, Path]:
    """(run directory, segmenter weights file) for a run dir, a ``model.pt`` or a ``checkpoint.pt``.

    A run directory resolves to its last finished stage's ``model.pt``.
    """
    path = path.resolve()
    if path.is_dir():
        for stage in ("stage2", "stage1"):
            if (path / stage / "model.pt").is_file():
                return path, path / stage / "model.pt"
            if (path / stage / "checkpoint.pt").is_file():
                return path, path / stage / "checkpoint.pt"
        raise ConfigError(f"{path}: no stage1/ or stage2/ model.pt or checkpoint.pt in this run directory")
    if not path.is_file():
        raise ConfigError(f"{path}: checkpoint not found")
    run_dir = path.parent.parent
    if not (run_dir / "config.yaml").is_file():
        raise ConfigError(f"{path}: expected it inside a run directory with config.yaml two levels up")
    return run_dir, path


def load_segmenter_state(weights: Path) -> dict[str, Any]:
    """Segmenter weights from a ``model.pt`` or from the ``nets`` of a resumable checkpoint."""
    state = torch.load(weights, map_location="cpu", weights_only=False)
    if isinstance(state, dict) and "nets" in state:
        return state["nets"]["segmenter"]
    return state


def evaluate_checkpoint(path: Path) -> dict[str, float]:
    """Selection and report mIoU (+ per-class IoU) of a checkpoint, with its run's config."""
    from simtune.train.builders import build_datasets, build_nets, pick_device
    from simtune.train.stage import eval_metrics

    run_dir, weights = locate(path)
    cfg = config.build(config.read_yaml(run_dir / "config.yaml"), source=str(run_dir / "config.yaml"))
    device = pick_device(cfg.runtime.device)
    data = build_datasets(cfg)
    nets, _ = build_nets(cfg, device)
    nets.segmenter.load_state_dict(load_segmenter_state(weights))
    return eval_metrics(nets, data.val, device, device.type == "cuda" and cfg.runtime.amp, cfg.data.source.dataset)
