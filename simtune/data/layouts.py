"""The on-disk layout of each dataset, one ``DatasetSpec`` each: adding a dataset is one
``SPECS`` entry (plus its name in ``schema.DatasetName`` and, if its classes differ, an
``evaluation.REPORTED_CLASSES`` entry).

Layouts (``ROOT`` is the dataset root a user points at):

- gta5:       ``ROOT/images/NNNNN.png`` (RGB), ``ROOT/labels/NNNNN.png`` (8-bit Cityscapes
  label ids). A CycleGAN-translated copy is another images folder (``images_dir``).
- synthia:    ``ROOT/RGB/NNNNNNN.png``, ``ROOT/GT/LABELS/NNNNNNN.png`` (16-bit, the class
  id in the PNG's first channel).
- cityscapes: ``ROOT/leftImg8bit/<split>/<city>/<stem>_leftImg8bit.png`` and
  ``ROOT/gtFine/<split>/<city>/<stem>_gtFine_labelIds.png``.

A sample's ``name`` is its path relative to the images folder, exactly as it appears in
the authors' list files (``00001.png``, ``frankfurt/frankfurt_000000_000294_leftImg8bit.png``),
so a list file can be written back from samples and predictions saved under the name.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from simtune.errors import DataError
from simtune.labels import CITYSCAPES_ID_TO_TRAIN, CITYSCAPES_LABEL_IDS, SYNTHIA_ID_TO_TRAIN, SYNTHIA_LABEL_IDS

DEFAULT_IMAGES_DIR = "images"  # list_samples' stand-in for "the dataset's own folder"
CITYSCAPES_IMAGE_SUFFIX = "_leftImg8bit.png"
CITYSCAPES_LABEL_SUFFIX = "_gtFine_labelIds.png"


@dataclass(frozen=True)
class Sample:
    """One image and (optionally) its label file.

    Attributes:
        image_path: the RGB image.
        label_path: the label PNG, or None for unlabelled (target) samples.
        name: path relative to the images folder, as in the authors' list files.
        city: Cityscapes city (``"frankfurt"``); ``""`` for GTA5 and SYNTHIA.
    """

    image_path: Path
    label_path: Path | None
    name: str
    city: str


@dataclass(frozen=True)
class DatasetSpec:
    """What differs between the three datasets."""

    images_dir: str  # default images folder under the root
    labels_dir: str  # label folder under the root
    has_splits: bool  # Cityscapes nests both folders by split, then city
    id_to_train: dict[int, int]
    label_ids: frozenset[int]  # every id a valid label file may hold
    id_kind: str  # how error messages name the ids
    sixteen_bit_labels: bool = False  # class id in the first channel of a 16-bit PNG (SYNTHIA)


SPECS: dict[str, DatasetSpec] = {
    "gta5": DatasetSpec("images", "labels", False, CITYSCAPES_ID_TO_TRAIN, CITYSCAPES_LABEL_IDS, "Cityscapes"),
    "synthia": DatasetSpec("RGB", "GT/LABELS", False, SYNTHIA_ID_TO_TRAIN, SYNTHIA_LABEL_IDS,
                           "SYNTHIA", sixteen_bit_labels=True),
    "cityscapes": DatasetSpec("leftImg8bit", "gtFine", True, CITYSCAPES_ID_TO_TRAIN, CITYSCAPES_LABEL_IDS,
                              "Cityscapes"),
}


def dataset_spec(dataset: str) -> DatasetSpec:
    """The layout of ``dataset``; ``DataError`` for an unknown name."""
    if dataset not in SPECS:
        raise DataError(f"unknown dataset {dataset!r}; expected one of {', '.join(DATASETS)}")
    return SPECS[dataset]


DATASETS: tuple[str, ...] = tuple(SPECS)
