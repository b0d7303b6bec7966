"""Region labelling (eq. 7's T(L, k)) and region / class pooling."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage.measure import label as sk_label

from simtune.sim.regions import (
    RegionSet,
    label_regions,
    label_regions_batch,
    pool_classes,
    pool_regions,
    reference_style_instance_features,
)

IGNORE = 255


def random_map(rng: np.random.Generator, shape: tuple[int, int], num_classes: int, density: float) -> np.ndarray:
    """A label map with ``num_classes`` classes on a ``density`` fraction of pixels, 255 elsewhere."""
    labels = rng.integers(0, num_classes, size=shape).astype(np.uint8)
    return np.where(rng.random(shape) < density, labels, IGNORE).astype(np.uint8)


def blobby_map(rng: np.random.Generator, shape: tuple[int, int], num_classes: int) -> np.ndarray:
    """Large irregular regions with diagonal contacts: an upsampled coarse map plus noise."""
    coarse = rng.integers(0, num_classes + 1, size=(shape[0] // 3 + 1, shape[1] // 3 + 1))
    fine = np.kron(coarse, np.ones((3, 3), dtype=np.int64))[: shape[0], : shape[1]]
    noise = rng.random(shape) < 0.1
    fine = np.where(noise, rng.integers(0, num_classes + 1, size=shape), fine)
    return np.where(fine == num_classes, IGNORE, fine).astype(np.uint8)


def our_pixel_sets(regions: RegionSet) -> dict[int, set[frozenset[int]]]:
    flat = regions.index_map.ravel()
    out: dict[int, set[frozenset[int]]] = {}
    for r, cls in enumerate(regions.classes):
        out.setdefault(int(cls), set()).add(frozenset(np.flatnonzero(flat == r).tolist()))
    return out


def skimage_pixel_sets(label_map: np.ndarray, classes: list[int]) -> dict[int, set[frozenset[int]]]:
    out: dict[int, set[frozenset[int]]] = {}
    for cls in classes:
        components = sk_label(label_map == cls, connectivity=2).ravel()
        for i in range(1, components.max() + 1):
            out.setdefault(cls, set()).add(frozenset(np.flatnonzero(components == i).tolist()))
    return out


SHAPES = [(1, 1), (1, 17), (23, 1), (5, 5), (16, 24), (31, 9), (40, 40)]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("density", [0.05, 0.3, 0.6, 1.0])
def test_regions_equal_skimage_connectivity_2_on_random_maps(shape: tuple[int, int], density: float) -> None:
    rng = np.random.default_rng(hash((shape, density)) % 2**32)
    for num_classes in (1, 2, 5):
        for _ in range(8):
            label_map = random_map(rng, shape, num_classes, density)
            classes = list(range(num_classes))
            assert our_pixel_sets(label_regions(label_map, classes)) == skimage_pixel_sets(label_map, classes)


@pytest.mark.parametrize("seed", range(20))
def test_regions_equal_skimage_on_blobby_maps(seed: int) -> None:
    rng = np.random.default_rng(seed)
    shape = (int(rng.integers(1, 50)), int(rng.integers(1, 50)))
    label_map = blobby_map(rng, shape, num_classes=4)
    assert our_pixel_sets(label_regions(label_map, [0, 1, 2, 3])) == skimage_pixel_sets(label_map, [0, 1, 2, 3])


def test_single_class_map_is_one_region_and_unrequested_classes_are_ignored() -> None:
    label_map = np.full((7, 9), 13, dtype=np.uint8)
    regions = label_regions(label_map, [13])
    assert regions.num_regions == 1 and regions.areas.tolist() == [63]
    assert (regions.index_map == 0).all()
    assert label_regions(label_map, [5, 11]).num_regions == 0
    assert (label_regions(label_map, [5]).index_map == -1).all()


def test_diagonal_pixels_join_one_region() -> None:
    label_map = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1]], dtype=np.uint8)
    assert label_regions(label_map, [1]).areas.tolist() == [3]
    # The two off-diagonal triangles touch at (0, 1)-(1, 0) and (1, 2)-(2, 1) corners.
    assert label_regions(label_map, [0]).areas.tolist() == [6]


def test_keeps_largest_regions_per_class_in_area_order_with_raster_tie_break() -> None:
    label_map = np.full((6, 12), IGNORE, dtype=np.uint8)
    label_map[0, 0] = 5                # area 1, first in raster order
    label_map[0, 4:6] = 5              # area 2
    label_map[0, 10] = 5               # area 1, later
    label_map[3:6, 0:3] = 5            # area 9
    label_map[3:5, 8:10] = 7           # class 7, area 4
    label_map[5, 11] = 7               # class 7, area 1
    regions = label_regions(label_map, [7, 5], max_per_class=3)
    assert regions.classes.tolist() == [7, 7, 5, 5, 5]  # in the order the classes were asked for
    assert regions.areas.tolist() == [4, 1, 9, 2, 1]
    # The area-1 region of class 5 kept is the one at (0, 0); (0, 10) is dropped.
    assert regions.index_map[0, 0] == 4 and regions.index_map[0, 10] == -1
    assert regions.index_map[4, 1] == 2 and regions.index_map[0, 5] == 3
    assert label_regions(label_map, [5], max_per_class=0).num_regions == 0


def test_batch_indices_are_global_and_match_single_maps() -> None:
    rng = np.random.default_rng(3)
    maps = np.stack([random_map(rng, (12, 15), 4, 0.5) for _ in range(3)])
    batch = label_regions_batch(maps, [0, 2, 3], max_per_class=4)
    offset = 0
    for n in range(3):
        single = label_regions(maps[n], [0, 2, 3], max_per_class=4)
        count = single.num_regions
        assert batch.images[offset:offset + count].tolist() == [n] * count
        assert batch.classes[offset:offset + count].tolist() == single.classes.tolist()
        assert batch.areas[offset:offset + count].tolist() == single.areas.tolist()
        expected = np.where(single.index_map >= 0, single.index_map + offset, -1)
        np.testing.assert_array_equal(batch.index_map[n], expected)
        offset += count
    assert offset == batch.num_regions


def test_pool_regions_equals_naive_mean_and_is_differentiable() -> None:
    rng = np.random.default_rng(0)
    maps = np.stack([random_map(rng, (9, 11), 3, 0.7) for _ in range(2)])
    regions = label_regions_batch(maps, [0, 1, 2], max_per_class=3)
    features = torch.randn(2, 4, 9, 11, dtype=torch.float64, requires_grad=True)
    pooled = pool_regions(features, torch.from_numpy(regions.index_map), regions.num_regions)
    for r in range(regions.num_regions):
        mask = torch.from_numpy(regions.index_map == r)  # (N, h, w)
        naive = features.permute(0, 2, 3, 1)[mask].mean(dim=0)
        torch.testing.assert_close(pooled[r], naive)
    pooled.sum().backward()
    assert features.grad is not None
    # Pixels of no kept region get no gradient.
    unkept = torch.from_numpy(regions.index_map < 0)
    assert (features.grad.permute(0, 2, 3, 1)[unkept] == 0).all()


def test_pool_regions_with_no_regions_is_empty() -> None:
    features = torch.randn(1, 3, 4, 4)
    out = pool_regions(features, torch.full((1, 4, 4), -1, dtype=torch.long), 0)
    assert out.shape == (0, 3)


def test_pool_classes_equals_naive_mean_and_counts() -> None:
    labels = torch.randint(0, 4, (2, 6, 7))
    labels[1][labels[1] == 2] = IGNORE  # class 2 absent from image 1
    features = torch.randn(2, 5, 6, 7, dtype=torch.float64)
    classes = torch.tensor([2, 0, 3])
    means, counts = pool_classes(features, labels, classes)
    for n in range(2):
        for s, cls in enumerate(classes.tolist()):
            mask = labels[n] == cls
            assert counts[n, s] == mask.sum()
            expected = features[n][:, mask].mean(dim=1) if mask.any() else torch.zeros(5, dtype=torch.float64)
            torch.testing.assert_close(means[n, s], expected)


def test_reference_style_path_gives_the_same_vectors() -> None:
    rng = np.random.default_rng(7)
    maps = np.stack([blobby_map(rng, (20, 26), 5) for _ in range(2)])
    classes = [4, 1, 3]
    features = torch.randn(2, 6, 20, 26, dtype=torch.float64)
    ref_vectors, ref_classes = reference_style_instance_features(features, torch.from_numpy(maps), classes, 3)
    ours = label_regions_batch(maps, classes, max_per_class=3)
    pooled = pool_regions(features, torch.from_numpy(ours.index_map), ours.num_regions)
    assert ref_classes == ours.classes.tolist()
    torch.testing.assert_close(pooled, ref_vectors)
