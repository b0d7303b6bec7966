"""Loading GTA5, SYNTHIA-RAND-CITYSCAPES and Cityscapes samples (layouts: ``simtune.data.layouts``).

Images are fed the way the authors' DeepLab-v2 weights expect: BGR, minus the mean
``MEAN_BGR``, no division by a standard deviation.

Cityscapes val is split by city into a part for hyperparameter selection (frankfurt) and
a part for reporting (lindau + munster); see ``simtune.data.splits``.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from simtune.data.layouts import (CITYSCAPES_IMAGE_SUFFIX, CITYSCAPES_LABEL_SUFFIX, DATASETS, DEFAULT_IMAGES_DIR,
                                   DatasetSpec, Sample, dataset_spec)
from simtune.data.splits import SPLIT_PARTS, VAL_SPLITS, split_samples
from simtune.errors import DataError
from simtune.labels import lookup_table

__all__ = [
    "DATASETS", "MEAN_BGR", "SPLIT_PARTS", "VAL_SPLITS", "Sample", "SegmentationDataset",
    "check_samples", "image_to_tensor", "list_samples", "read_image", "read_label_ids",
    "split_samples",
    "to_train_ids",
]

# Per-channel mean of the authors' preprocessing, in B, G, R order.
MEAN_BGR: tuple[float, float, float] = (104.008, 116.669, 122.675)


# ----------------------------------------------------------------------------- listing


def list_samples(
    dataset: str,
    root: Path,
    split: str = "train",
    *,
    images_dir: str = "images",
    list_file: Path | None = None,
    with_labels: bool = True,
    stat_labels: bool = True,
) -> list[Sample]:
    """List a dataset's samples, checking that every file the loader will open exists.

    Args:
        dataset: ``"gta5"``, ``"synthia"`` or ``"cityscapes"``.
        root: dataset root (see the module docstring for the layouts).
        split: Cityscapes split folder (``train``/``val``/``test``); GTA5 and SYNTHIA have
            no split folders, so it is ignored for them (select subsets with ``list_file``).
        images_dir: images folder under the root, e.g. a CycleGAN-translated copy. The
            default ``"images"`` stands for each dataset's own folder (``images``, ``RGB``,
            ``leftImg8bit``), so one config default serves all three datasets.
        list_file: text file of sample names, one per line; None = every image found.
        with_labels: pair each image with its label (required to exist); False for
            unlabelled target images.
        stat_labels: check that every label file exists (one ``stat`` each); False where the
            same file list passed a full check already (``data.check``: a sweep trial's start).
    Returns:
        Samples sorted by name, or in list-file order.
    Raises:
        DataError: missing root or folder, no images, an image without its label, a
            list-file entry that does not exist.
    """
    spec = dataset_spec(dataset)
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: {dataset} root does not exist")
    image_root = root / (spec.images_dir if images_dir == DEFAULT_IMAGES_DIR else images_dir)
    label_root = root / spec.labels_dir
    if spec.has_splits:
        image_root, label_root = image_root / split, label_root / split
    _require_dir(image_root, dataset)
    if with_labels:
        _require_dir(label_root, dataset)
    if list_file is not None:
        names = _read_list_file(Path(list_file), image_root)
    else:
        names = _scan_images(image_root, spec.has_splits)
    return [_make_sample(dataset, image_root, label_root if with_labels else None, name, stat_labels)
            for name in names]


def _require_dir(path: Path, dataset: str) -> None:
    if not path.is_dir():
        raise DataError(f"{path}: folder missing; expected the {dataset} layout "
                        f"(see simtune.data.datasets)")


def _scan_images(image_root: Path, has_splits: bool) -> list[str]:
    pattern = f"*/*{CITYSCAPES_IMAGE_SUFFIX}" if has_splits else "*.png"
    names = sorted(path.relative_to(image_root).as_posix() for path in image_root.glob(pattern))
    if not names:
        raise DataError(f"{image_root}: no images found (expected {pattern})")
    return names


def _read_list_file(list_file: Path, image_root: Path) -> list[str]:
    if not list_file.is_file():
        raise DataError(f"{list_file}: list file does not exist")
    names = [line.strip() for line in list_file.read_text().splitlines() if line.strip()]
    if not names:
        raise DataError(f"{list_file}: list file names no samples")
    for name in names:
        if not (image_root / name).is_file():
            raise DataError(f"{list_file}: entry {name!r} not found at {image_root / name}")
    return names


def _make_sample(dataset: str, image_root: Path, label_root: Path | None, name: str, stat_label: bool) -> Sample:
    image_path = image_root / name
    city = ""
    label_name = name
    if dataset == "cityscapes":
        if "/" not in name or not name.endswith(CITYSCAPES_IMAGE_SUFFIX):
            raise DataError(f"{image_path}: expected a name like "
                            f"<city>/<stem>{CITYSCAPES_IMAGE_SUFFIX}, got {name!r}")
        city = name.split("/", 1)[0]
        label_name = name[: -len(CITYSCAPES_IMAGE_SUFFIX)] + CITYSCAPES_LABEL_SUFFIX
    label_path = None if label_root is None else label_root / label_name
    if stat_label and label_path is not None and not label_path.is_file():
        raise DataError(f"{image_path}: image has no label; expected {label_path}")
    return Sample(image_path=image_path, label_path=label_path, name=name, city=city)


# ----------------------------------------------------------------------------- reading


def read_image(path: Path, size: tuple[int, int] | None = None) -> np.ndarray:
    """Read an RGB image, resized bilinearly to ``size`` = (W, H) if given.

    Returns:
        (H, W, 3) uint8 RGB array.
    Raises:
        DataError: the file is missing or cannot be decoded.
    """
    try:
        with Image.open(path) as img:
            rgb = img.convert("RGB")
    except (OSError, ValueError, SyntaxError) as exc:  # PIL's errors for bad files
        raise DataError(f"{path}: cannot read image ({_one_line(exc)})") from exc
    if size is not None and rgb.size != tuple(size):
        rgb = rgb.resize((int(size[0]), int(size[1])), Image.Resampling.BILINEAR)
    return np.asarray(rgb)


def image_to_tensor(rgb: np.ndarray) -> torch.Tensor:
    """The network input for an RGB image: BGR order minus ``MEAN_BGR``, no std.

    Args:
        rgb: (H, W, 3) uint8 RGB array.
    Returns:
        (3, H, W) float32 tensor, channels B, G, R.
    """
    bgr = rgb[:, :, ::-1].astype(np.float32) - np.asarray(MEAN_BGR, dtype=np.float32)
    return torch.from_numpy(np.ascontiguousarray(bgr.transpose(2, 0, 1)))


def read_label_ids(dataset: str, path: Path) -> np.ndarray:
    """Read a label file's raw ids (Cityscapes label ids or SYNTHIA class ids).

    Returns:
        (H, W) uint8 (GTA5, Cityscapes) or uint16 (SYNTHIA) array.
    Raises:
        DataError: the file is missing, cannot be decoded, or is not a label image.
    """
    if dataset_spec(dataset).sixteen_bit_labels:
        return _read_synthia_label(path)
    return read_png8(path, "label")


def read_png8(path: Path, what: str) -> np.ndarray:
    """Read an 8-bit single-channel PNG (greyscale, or palette indices as values).

    GTA5 labels are palette PNGs whose indices are the ids; Cityscapes' are greyscale.
    Raises:
        DataError: naming ``path`` and ``what`` it should hold, when unreadable or multi-channel.
    """
    try:
        with Image.open(path) as img:
            mode = img.mode
            values = np.array(img)
    except (OSError, ValueError, SyntaxError) as exc:
        raise DataError(f"{path}: cannot read {what} ({_one_line(exc)})") from exc
    if mode not in ("L", "P"):
        raise DataError(f"{path}: {what} has PIL mode {mode}; expected an 8-bit single-channel PNG")
    return values


def _read_synthia_label(path: Path) -> np.ndarray:
    raw = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if raw is None:
        raise DataError(f"{path}: cannot read label")
    if raw.ndim == 2:
        return raw
    # cv2 returns channels as B, G, R(, A): the PNG's first channel, the class id, is 2.
    return np.ascontiguousarray(raw[:, :, 2])


@cache
def _train_id_table(dataset: str) -> np.ndarray:
    return lookup_table(dataset_spec(dataset).id_to_train)


def to_train_ids(dataset: str, raw: np.ndarray) -> np.ndarray:
    """Map a dataset's raw label ids to the 19 train ids (255 = ignore).

    Args:
        dataset: ``"gta5"``, ``"synthia"`` or ``"cityscapes"``.
        raw: (H, W) integer array of label ids, e.g. from ``read_label_ids``.
    Returns:
        (H, W) uint8 array of train ids.
    """
    table = _train_id_table(dataset)
    raw = np.asarray(raw)
    if raw.dtype.kind not in "ui":
        raise TypeError(f"label ids must be integers, got dtype {raw.dtype}")
    if raw.dtype not in (np.uint8, np.uint16) and raw.size and (
        raw.min() < 0 or raw.max() >= len(table)
    ):
        raise ValueError(f"label ids must lie in 0..{len(table) - 1}, got {raw.min()}..{raw.max()}")
    return table[raw]


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


# ----------------------------------------------------------------------------- dataset


class SegmentationDataset(Dataset[dict[str, Any]]):
    """Images (and labels) of a sample list, preprocessed for DeepLab-v2.

    Items are dicts:
        image: (3, H, W) float32, BGR minus ``MEAN_BGR``.
        label: (H, W) uint8 train ids, 255 = ignore; absent for unlabelled samples
            (``data.loaders.to_device`` widens it to int64 on the device).
        name, city: from the ``Sample``.
    """

    def __init__(
        self,
        dataset: str,
        samples: list[Sample],
        *,
        size: tuple[int, int] | None,
        label_size: str = "input",
    ) -> None:
        """Wrap a sample list.

        Args:
            dataset: ``"gta5"``, ``"synthia"`` or ``"cityscapes"`` (picks the id table).
            samples: from ``list_samples``.
            size: (W, H) the image is resized to (bilinear); None keeps its size.
            label_size: ``"input"`` resizes the label (nearest) to the image's size;
                ``"original"`` keeps the label's resolution (evaluation upsamples logits).
        """
        dataset_spec(dataset)
        if label_size not in ("input", "original"):
            raise DataError(f"label_size must be 'input' or 'original', got {label_size!r}")
        self.dataset = dataset
        self.samples = list(samples)
        self.size = None if size is None else (int(size[0]), int(size[1]))
        self.label_size = label_size

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict[str, Any]:
        sample = self.samples[index]
        rgb = read_image(sample.image_path, self.size)
        item: dict[str, Any] = {
            "image": image_to_tensor(rgb), "name": sample.name, "city": sample.city,
        }
        if sample.label_path is not None:
            height, width = rgb.shape[:2]
            train_ids = self._train_ids(sample.label_path, (width, height))
            item["label"] = torch.tensor(train_ids, dtype=torch.uint8)
        return item

    def _train_ids(self, path: Path, image_size: tuple[int, int]) -> np.ndarray:
        """(H, W) uint8 train ids, at the image's (W, H) ``image_size`` for "input"."""
        train_ids = to_train_ids(self.dataset, read_label_ids(self.dataset, path))
        if self.label_size == "input" and train_ids.shape[::-1] != image_size:
            # Resizing train ids (not raw ids) is equivalent under nearest and cheaper.
            resized = Image.fromarray(train_ids).resize(image_size, Image.Resampling.NEAREST)
            train_ids = np.asarray(resized)
        return train_ids


# ----------------------------------------------------------------------------- checking


def check_samples(
    dataset: str,
    samples: list[Sample],
    *,
    max_files: int | None = None,
    check_sizes: bool = True,
) -> None:
    """Open images and labels before training, so bad data fails in seconds, not hours.

    Args:
        dataset: ``"gta5"``, ``"synthia"`` or ``"cityscapes"``.
        samples: from ``list_samples``.
        max_files: check only the first this many samples; None = all.
        check_sizes: require each label to have its image's size. The loader resizes
            both when training, so a user may turn this off for known-odd files.
    Raises:
        DataError: an unreadable image or label, a label id outside the dataset's table
            (``"<file>: label id 77 is not a Cityscapes label id (expected 0..33)"``),
            or an image and label of different sizes.
    """
    spec = dataset_spec(dataset)
    for sample in samples if max_files is None else samples[:max_files]:
        image_size = _decoded_size(sample.image_path)
        if sample.label_path is None:
            continue
        raw = read_label_ids(dataset, sample.label_path)
        _check_label_ids(spec, sample.label_path, raw)
        label_size = (raw.shape[1], raw.shape[0])
        if check_sizes and label_size != image_size:
            raise DataError(
                f"{sample.label_path}: label is {label_size[0]}x{label_size[1]} but image "
                f"{sample.image_path} is {image_size[0]}x{image_size[1]}"
            )


def _decoded_size(path: Path) -> tuple[int, int]:
    """(W, H) of an image, after decoding all of it (a truncated file fails here)."""
    try:
        with Image.open(path) as img:
            img.load()
            return img.size
    except (OSError, ValueError, SyntaxError) as exc:
        raise DataError(f"{path}: cannot read image ({_one_line(exc)})") from exc


def _check_label_ids(spec: DatasetSpec, path: Path, raw: np.ndarray) -> None:
    unknown = sorted(set(np.unique(raw).tolist()) - spec.label_ids)
    if unknown:
        raise DataError(
            f"{path}: label id {unknown[0]} is not a {spec.id_kind} label id "
            f"(expected {min(spec.label_ids)}..{max(spec.label_ids)})"
        )
