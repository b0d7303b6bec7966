"""The validators inside a training run: the subset a run draws, and ``select/*`` metrics."""

from __future__ import annotations

import torch

from simtune.schema import SelectConfig
from simtune.errors import ConfigError
from simtune.models.deeplab import Segmenter
from simtune.selection import PREFIX
from simtune.selection.compute import Items, SelectionSubset, compute_validators, load_subset


def check_select(settings: SelectConfig) -> None:
    """Raise ``ConfigError`` naming the key when a ``select`` setting cannot work."""
    if not settings.enabled:
        return
    if settings.images < 2:
        raise ConfigError(f"select.images: MixVal mixes pairs of images, so it must be >= 2, got {settings.images}")
    if settings.pixels < 2:
        raise ConfigError(f"select.pixels: SND needs >= 2 pixels per image, got {settings.pixels}")
    if settings.source_images == 1 or settings.source_images < 0:
        raise ConfigError(f"select.source_images: DEV splits the source images in two halves, so it must be "
                          f"0 (no DEV) or >= 2, got {settings.source_images}")


def draw_subset(settings: SelectConfig, target: Items, source: Items) -> SelectionSubset | None:
    """The run's fixed subset (``target`` read without labels), or None when validators are off."""
    if not settings.enabled:
        return None
    return load_subset(target, images=settings.images, pixels=settings.pixels, seed=settings.seed,
                       source=source if settings.source_images else None,
                       source_images=settings.source_images)


def select_metrics(segmenter: Segmenter, subset: SelectionSubset, device: torch.device,
                   autocast: bool) -> dict[str, float]:
    """``{"select/<name>": score}`` of ``segmenter`` (restored to its previous train/eval mode)."""
    was_training = segmenter.training

    def predict(image: torch.Tensor):  # type: ignore[no-untyped-def]
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=autocast):
            return segmenter(image)

    segmenter.eval()
    try:
        scores = compute_validators(predict, subset, device)
    finally:
        segmenter.train(was_training)
    return {PREFIX + name: value for name, value in scores.items()}
