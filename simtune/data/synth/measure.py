"""How large the benchmark's thing regions are where the network sees them: connected
regions of each thing class, measured in feature pixels at a training size and stride."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

from simtune.labels import CITYSCAPES_ID_TO_TRAIN, THING_IDS, lookup_table

_TO_TRAIN = lookup_table(CITYSCAPES_ID_TO_TRAIN, 256)
_EIGHT = np.ones((3, 3), dtype=bool)


def thing_region_areas(label_paths: Iterable[Path], train_size: tuple[int, int],
                       stride: int = 8) -> dict[int, list[float]]:
    """Area of every 8-connected region of each thing class, in feature pixels.

    Args:
        label_paths: label PNGs of Cityscapes label ids.
        train_size: (W, H) the images are resized to for training.
        stride: the network's output stride; one feature pixel covers stride x stride
            pixels at ``train_size``.
    Returns:
        train id -> areas, one per region, for every id in ``THING_IDS``.
    """
    areas: dict[int, list[float]] = {c: [] for c in THING_IDS}
    for path in label_paths:
        train = _TO_TRAIN[np.asarray(Image.open(path))]  # (H, W) train ids
        scale = train_size[0] * train_size[1] / (train.shape[0] * train.shape[1] * stride**2)
        for c in THING_IDS:
            regions, n = ndimage.label(train == c, structure=_EIGHT)
            if n:
                areas[c] += (np.bincount(regions.ravel())[1:] * scale).tolist()
    return areas


def pixel_median(areas: list[float]) -> float:
    """The region size that half of a class's pixels lie in regions at least as large as
    (NaN for no regions); occlusion slivers, many but tiny, do not drag it down."""
    if not areas:
        return float("nan")
    ordered = np.sort(np.asarray(areas))
    covered = np.cumsum(ordered) / ordered.sum()
    return float(ordered[np.searchsorted(covered, 0.5)])
