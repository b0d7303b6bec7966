"""Regions of a label map (eq. 7's T(L, k)) and the mean features over them (eq. 5, eq. 7).

Labelling runs on the host, on a copy of the small feature-resolution label maps that the
training step makes once; pooling runs on the features' device as one batched op, so no
step waits on the device more than that one copy.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from scipy import ndimage
from torch import Tensor

EPS = 1e-5  # eq. 5/7's epsilon: the count floor of a mean; only an empty region ever reaches it

# 8-connectivity (the authors' code): diagonal neighbours join a region.
_EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)


def host_to_device(array: np.ndarray, device: torch.device) -> Tensor:
    """Copy a host array to ``device`` without making the host wait for queued device work.

    A plain ``.to("cuda")`` of pageable memory synchronises the stream; a pinned buffer
    copied with ``non_blocking`` does not (the caching host allocator keeps the buffer alive
    until the copy has run).
    """
    tensor = torch.from_numpy(np.ascontiguousarray(array))
    if device.type != "cuda":
        return tensor.to(device)
    return tensor.pin_memory().to(device, non_blocking=True)


@dataclass(frozen=True)
class RegionSet:
    """Connected regions kept from one label map or a batch of them.

    Attributes:
        index_map: ``(h, w)`` or ``(N, h, w)`` int64; the index (0..R-1) of the kept region
            each pixel belongs to, -1 elsewhere.
        classes: ``(R,)`` int64 class of each region.
        areas: ``(R,)`` int64 pixel count of each region.
        images: ``(R,)`` int64 image (batch index) of each region; all 0 for one map.

    Regions are ordered by image, then by class in the order asked for, then by area
    descending (ties: the region whose first pixel comes first in raster order).
    """

    index_map: np.ndarray
    classes: np.ndarray
    areas: np.ndarray
    images: np.ndarray

    @property
    def num_regions(self) -> int:
        """R, the number of kept regions."""
        return int(self.classes.shape[0])


def _class_components(mask: np.ndarray, max_regions: int | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """8-connected components of one boolean mask, largest first.

    Returns:
        ``(labels (h, w) int32, kept (M,) component numbers, areas (M,))``; component numbers
        are scipy's (1..n, numbered in raster order of their first pixel).
    """
    labels, count = ndimage.label(mask, structure=_EIGHT_CONNECTED)
    areas = np.bincount(labels.ravel(), minlength=count + 1)[1:]
    # A stable sort keeps scipy's raster numbering among equal areas: a deterministic tie-break.
    order = np.argsort(-areas, kind="stable")
    if max_regions is not None:
        order = order[:max_regions]
    return labels, order + 1, areas[order]


def _label_into(label_map: np.ndarray, classes: Sequence[int], max_per_class: int | None,
                index_map: np.ndarray, start: int) -> tuple[list[int], list[int]]:
    """Label one (h, w) map, writing global region indices from ``start`` into ``index_map``.

    Returns:
        the class and the area of each kept region, in region order.
    """
    present = np.bincount(label_map.ravel(), minlength=256)
    region_classes: list[int] = []
    region_areas: list[int] = []
    for cls in classes:
        if not 0 <= cls < present.shape[0] or present[cls] == 0:
            continue
        mask = label_map == cls
        labels, kept, areas = _class_components(mask, max_per_class)
        lookup = np.full(int(labels.max()) + 1, -1, dtype=np.int64)
        first = start + len(region_classes)
        lookup[kept] = np.arange(first, first + kept.shape[0])
        index_map[mask] = lookup[labels[mask]]
        region_classes.extend([int(cls)] * kept.shape[0])
        region_areas.extend(int(a) for a in areas)
    return region_classes, region_areas


def label_regions_batch(label_maps: np.ndarray, classes: Sequence[int],
                        max_per_class: int | None = None) -> RegionSet:
    """Connected regions of each class in a batch of label maps, indexed across the batch.

    Args:
        label_maps: ``(N, h, w)`` integer train ids (255 = ignore), on the host.
        classes: the classes to split into regions (e.g. the thing ids).
        max_per_class: keep at most this many regions per class and image (the largest);
            None keeps all.
    Returns:
        a ``RegionSet`` with an ``(N, h, w)`` index map.
    """
    if label_maps.ndim != 3:
        raise ValueError(f"label_maps must be (N, h, w), but got shape {label_maps.shape}")
    if max_per_class is not None and max_per_class < 0:
        raise ValueError(f"max_per_class must be >= 0 or None, but got {max_per_class}")
    maps = np.asarray(label_maps)
    if maps.dtype != np.uint8:
        # Values outside 0..255 can never be a class id; 255 keeps them ignored.
        maps = np.where((maps >= 0) & (maps < 256), maps, 255).astype(np.uint8)
    index_map = np.full(maps.shape, -1, dtype=np.int64)
    all_classes: list[int] = []
    all_areas: list[int] = []
    images: list[int] = []
    for n in range(maps.shape[0]):
        region_classes, region_areas = _label_into(maps[n], classes, max_per_class, index_map[n], len(all_classes))
        all_classes += region_classes
        all_areas += region_areas
        images += [n] * len(region_classes)
    return RegionSet(index_map, np.asarray(all_classes, dtype=np.int64), np.asarray(all_areas, dtype=np.int64),
                     np.asarray(images, dtype=np.int64))


def label_regions(label_map: np.ndarray, classes: Sequence[int], max_per_class: int | None = None) -> RegionSet:
    """Connected regions (8-connectivity) of each class in one label map, largest first.

    Args:
        label_map: ``(h, w)`` integer train ids (255 = ignore), on the host.
        classes: the classes to split into regions.
        max_per_class: keep at most this many regions per class (the largest); None keeps all.
    Returns:
        a ``RegionSet`` with an ``(h, w)`` index map.
    """
    if label_map.ndim != 2:
        raise ValueError(f"label_map must be (h, w), but got shape {label_map.shape}")
    batch = label_regions_batch(label_map[None], classes, max_per_class)
    return RegionSet(batch.index_map[0], batch.classes, batch.areas, batch.images)


def _sums_and_counts(features: Tensor, keys: Tensor, values: Tensor) -> tuple[Tensor, Tensor]:
    """Per image, the feature sum and pixel count where ``keys == value``, for every value.

    A one-hot matmul rather than a scatter: deterministic on CUDA (no float atomics) and a
    single tensor-core op; for N = 1 (or channels-last features) nothing is copied.

    Args:
        features: ``(N, C, h, w)``; keys: ``(N, h, w)`` integers; values: ``(S,)`` same dtype family.
    Returns:
        ``(N, S, C)`` sums and ``(N, S)`` counts.
    """
    n, c, h, w = features.shape
    one_hot = (keys.reshape(n, 1, h * w) == values.view(1, -1, 1)).to(features.dtype)  # (N, S, hw)
    sums = torch.bmm(one_hot, features.reshape(n, c, h * w).transpose(1, 2))  # (N, S, C)
    return sums, one_hot.sum(dim=2)


def pool_regions(features: Tensor, index_map: Tensor, num_regions: int, eps: float = EPS) -> Tensor:
    """Mean feature of every region (eq. 7's I(r, f)) in one batched op over the batch.

    Args:
        features: ``(N, C, h, w)``.
        index_map: ``(N, h, w)`` int64 on the features' device; region index or -1.
        num_regions: R; indices must lie in ``0..R-1``.
        eps: floor of the pixel count (eq. 7's epsilon).
    Returns:
        ``(R, C)`` region means, differentiable w.r.t. ``features``.
    """
    n, _, h, w = features.shape
    if index_map.shape != (n, h, w):
        raise ValueError(f"index_map must be {(n, h, w)}, but got {tuple(index_map.shape)}")
    regions = torch.arange(num_regions, device=features.device)
    sums, counts = _sums_and_counts(features, index_map, regions)
    # A region lies in one image: summing over the batch adds only zeros from the others.
    return sums.sum(dim=0) / counts.sum(dim=0).clamp_min(eps).unsqueeze(1)


def pool_classes(features: Tensor, label_map: Tensor, classes: Tensor, eps: float = EPS) -> tuple[Tensor, Tensor]:
    """Mean feature of every class in every image (eq. 5's A^b(L, f)) as one batched matmul.

    Args:
        features: ``(N, C, h, w)``.
        label_map: ``(N, h, w)`` integer labels on the features' device.
        classes: ``(S,)`` int64 class ids on the same device.
    Returns:
        ``(N, S, C)`` means (zero where a class is absent) and ``(N, S)`` pixel counts.
    """
    sums, counts = _sums_and_counts(features, label_map, classes)
    return sums / counts.clamp_min(eps).unsqueeze(2), counts


def reference_style_instance_features(features: Tensor, label_maps: Tensor, classes: Sequence[int],
                                      max_per_class: int) -> tuple[Tensor, list[int]]:
    """Region means computed the authors' way, kept only as the baseline to time against.

    scikit-image labels each class on the CPU, then every region is pooled by its own
    device call with a ``.item()`` on its area, so the host waits once per region.

    Args:
        features: ``(N, C, h, w)``.
        label_maps: ``(N, h, w)`` integer labels (any device).
        classes: thing classes, in the order regions are listed.
        max_per_class: regions kept per class and image, the largest first.
    Returns:
        ``(R, C)`` region means and their classes, in ``label_regions_batch``'s order.
    """
    from skimage.measure import label as sk_label  # test-only dependency

    vectors: list[Tensor] = []
    region_classes: list[int] = []
    for n in range(features.shape[0]):
        for cls in classes:
            mask = (label_maps[n] == cls).cpu().numpy()
            components = sk_label(mask, connectivity=2)
            areas = np.bincount(components.ravel())[1:]
            order = sorted(range(areas.shape[0]), key=lambda i: areas[i], reverse=True)[:max_per_class]
            for i in order:
                region = torch.from_numpy(components == i + 1).to(features.device, features.dtype)
                area = max(EPS, region.sum().item())
                vectors.append((features[n] * region).sum(dim=(1, 2)) / area)
                region_classes.append(int(cls))
    if not vectors:
        return features.new_zeros(0, features.shape[1]), []
    return torch.stack(vectors), region_classes
