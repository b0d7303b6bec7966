"""Class tables: Cityscapes label ids, the 19 train ids, stuff/thing groups, SYNTHIA ids.

The id -> train-id table follows the official Cityscapes ``labels.py`` (cityscapesScripts);
ids absent from it or marked "ignore in eval" map to ``IGNORE`` (255).
"""

from __future__ import annotations

import numpy as np

IGNORE = 255
NUM_CLASSES = 19

CLASS_NAMES: tuple[str, ...] = (
    "road", "sidewalk", "building", "wall", "fence", "pole", "light", "sign",
    "vegetation", "terrain", "sky", "person", "rider", "car", "truck", "bus", "train",
    "motorcycle", "bicycle",
)

# Train ids of the background ("stuff") and foreground ("thing") classes, SIM_SPEC.md.
STUFF_IDS: tuple[int, ...] = (0, 1, 2, 3, 4, 8, 9, 10)
THING_IDS: tuple[int, ...] = (5, 6, 7, 11, 12, 13, 14, 15, 16, 17, 18)

# Cityscapes label id -> train id, for every label id with a train id in 0..18.
CITYSCAPES_ID_TO_TRAIN: dict[int, int] = {
    7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10,
    24: 11, 25: 12, 26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18,
}
# Label ids defined by Cityscapes (0..33; -1 "license plate" never appears in labelIds PNGs).
CITYSCAPES_LABEL_IDS: frozenset[int] = frozenset(range(34))

# SYNTHIA-RAND-CITYSCAPES class id (first channel of GT/LABELS/*.png) -> train id.
SYNTHIA_ID_TO_TRAIN: dict[int, int] = {
    3: 0, 4: 1, 2: 2, 21: 3, 5: 4, 7: 5, 15: 6, 9: 7, 6: 8, 1: 10, 10: 11, 17: 12,
    8: 13, 19: 15, 12: 17, 11: 18,
}
# SYNTHIA class ids that exist in the dataset (0 void .. 22).
SYNTHIA_LABEL_IDS: frozenset[int] = frozenset(range(23))

# Evaluation class subsets (train ids).
ALL_19: tuple[int, ...] = tuple(range(NUM_CLASSES))
SYNTHIA_16: tuple[int, ...] = tuple(sorted(SYNTHIA_ID_TO_TRAIN.values()))
SYNTHIA_13: tuple[int, ...] = tuple(c for c in SYNTHIA_16 if c not in (3, 4, 5))

# Official Cityscapes colours of the train ids, for figures.
PALETTE: tuple[tuple[int, int, int], ...] = (
    (128, 64, 128), (244, 35, 232), (70, 70, 70), (102, 102, 156), (190, 153, 153),
    (153, 153, 153), (250, 170, 30), (220, 220, 0), (107, 142, 35), (152, 251, 152),
    (70, 130, 180), (220, 20, 60), (255, 0, 0), (0, 0, 142), (0, 0, 70), (0, 60, 100),
    (0, 80, 100), (0, 0, 230), (119, 11, 32),
)


def lookup_table(id_to_train: dict[int, int], size: int = 65536) -> np.ndarray:
    """A uint8 table ``t`` with ``t[label_id] = train_id`` (``IGNORE`` elsewhere).

    Args:
        id_to_train: label id -> train id.
        size: table length; covers every value the label PNG's dtype can hold.
    Returns:
        (size,) uint8 array, for ``t[label_array]``.
    """
    table = np.full(size, IGNORE, dtype=np.uint8)
    for label_id, train_id in id_to_train.items():
        table[label_id] = train_id
    return table


def colorize(train_ids: np.ndarray) -> np.ndarray:
    """Colour a (H, W) train-id map with the Cityscapes palette; ignore is black.

    Returns:
        (H, W, 3) uint8 RGB image.
    """
    table = np.zeros((256, 3), dtype=np.uint8)
    table[: len(PALETTE)] = np.asarray(PALETTE, dtype=np.uint8)
    return table[train_ids]
