"""Loaders for GTA5, SYNTHIA and Cityscapes on tiny trees in the real layouts."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from simtune.data.loaders import to_device
from torch.utils.data import DataLoader

from simtune.data.datasets import (
    MEAN_BGR,
    Sample,
    SegmentationDataset,
    check_samples,
    list_samples,
    read_label_ids,
    to_train_ids,
)
from simtune.data.splits import VAL_SPLITS, split_samples
from simtune.errors import DataError
from simtune.labels import CITYSCAPES_ID_TO_TRAIN, IGNORE, SYNTHIA_ID_TO_TRAIN
from simtune.testing import (
    blocky_labels,
    make_cityscapes_tree,
    make_gta5_tree,
    make_synthia_tree,
    write_list_file,
    write_png,
    write_png16_rgb,
)

MAKERS: dict[str, Callable[..., list[str]]] = {
    "gta5": make_gta5_tree, "synthia": make_synthia_tree, "cityscapes": make_cityscapes_tree,
}


def _label(sample: Sample) -> Path:
    assert sample.label_path is not None
    return sample.label_path


# ----------------------------------------------------------------------------- id tables


def test_cityscapes_table_matches_official_labels() -> None:
    from cityscapesscripts.helpers.labels import labels as official

    expected = {lab.id: lab.trainId for lab in official if 0 <= lab.trainId <= 18}
    assert CITYSCAPES_ID_TO_TRAIN == expected
    ids = np.array([lab.id for lab in official if lab.id >= 0], dtype=np.uint8)
    mapped = to_train_ids("cityscapes", ids)
    official_train = [lab.trainId if 0 <= lab.trainId <= 18 else IGNORE
                      for lab in official if lab.id >= 0]
    assert mapped.tolist() == official_train


def test_synthia_table_covers_the_16_classes() -> None:
    assert sorted(SYNTHIA_ID_TO_TRAIN.values()) == sorted(set(range(19)) - {9, 14, 16})
    raw = np.array([[0, 3, 21], [22, 1, 11]], dtype=np.uint16)
    assert to_train_ids("synthia", raw).tolist() == [[IGNORE, 0, 3], [IGNORE, 10, 18]]


# ----------------------------------------------------------------------------- GTA5


def test_gta5_lists_sorted_pairs(tmp_path: Path) -> None:
    names = make_gta5_tree(tmp_path, n=3)
    samples = list_samples("gta5", tmp_path)
    assert [s.name for s in samples] == names == ["00001.png", "00002.png", "00003.png"]
    assert samples[1].image_path == tmp_path / "images" / "00002.png"
    assert samples[1].label_path == tmp_path / "labels" / "00002.png"
    assert all(s.city == "" for s in samples)


def test_gta5_translated_images_dir(tmp_path: Path) -> None:
    make_gta5_tree(tmp_path, n=2, images_dir="images_cyclegan")
    samples = list_samples("gta5", tmp_path, images_dir="images_cyclegan")
    assert samples[0].image_path == tmp_path / "images_cyclegan" / "00001.png"
    with pytest.raises(DataError, match="images"):
        list_samples("gta5", tmp_path)  # the default folder is absent


def test_translated_images_dir_for_synthia_and_cityscapes(tmp_path: Path) -> None:
    make_synthia_tree(tmp_path / "synthia", n=1)
    (tmp_path / "synthia/RGB").rename(tmp_path / "synthia/RGB_cyclegan")
    sample = list_samples("synthia", tmp_path / "synthia", images_dir="RGB_cyclegan")[0]
    assert sample.image_path == tmp_path / "synthia/RGB_cyclegan/0000000.png"
    make_cityscapes_tree(tmp_path / "cs", "val", cities=[("lindau", 1)])
    # The default "images" means each dataset's own folder, here leftImg8bit.
    default = list_samples("cityscapes", tmp_path / "cs", "val", images_dir="images")
    assert default[0].image_path.parent == tmp_path / "cs/leftImg8bit/val/lindau"


def test_gta5_palette_labels_become_train_ids(tmp_path: Path) -> None:
    make_gta5_tree(tmp_path, n=1, size=(16, 8))
    sample = list_samples("gta5", tmp_path)[0]
    item = SegmentationDataset("gta5", [sample], size=None)[0]
    raw = read_label_ids("gta5", _label(sample))
    assert item["image"].shape == (3, 8, 16) and item["image"].dtype == torch.float32
    assert item["label"].dtype == torch.uint8  # a quarter of int64's bytes through the loader workers
    assert to_device({"label": item["label"][None]}, torch.device("cpu"))["label"].dtype == torch.int64
    lookup = np.array([CITYSCAPES_ID_TO_TRAIN.get(i, IGNORE) for i in range(256)])
    assert item["label"].numpy().tolist() == lookup[raw].tolist()
    assert item["name"] == "00001.png" and item["city"] == ""


# ----------------------------------------------------------------------------- SYNTHIA


def test_synthia_reads_first_png_channel(tmp_path: Path) -> None:
    make_synthia_tree(tmp_path, n=2)
    sample = list_samples("synthia", tmp_path)[1]
    assert sample.label_path == tmp_path / "GT" / "LABELS" / "0000001.png"
    classes = blocky_labels(np.random.default_rng(3), (16, 8), [3, 21, 10, 0])
    write_png16_rgb(_label(sample), np.stack([classes, classes + 500, classes + 900], -1))
    assert read_label_ids("synthia", _label(sample)).tolist() == classes.tolist()
    check_samples("synthia", list_samples("synthia", tmp_path))


def test_synthia_label_written_by_cv2(tmp_path: Path) -> None:
    make_synthia_tree(tmp_path, n=1)
    sample = list_samples("synthia", tmp_path)[0]
    classes = np.array([[3, 4], [17, 0]], dtype=np.uint16)
    bgr = np.stack([classes + 40000, classes + 1000, classes], -1)  # cv2 order: R is last
    assert cv2.imwrite(str(sample.label_path), bgr)
    write_png(sample.image_path, np.zeros((2, 2, 3), dtype=np.uint8))
    item = SegmentationDataset("synthia", [sample], size=None)[0]
    assert item["label"].tolist() == [[0, 1], [12, IGNORE]]


# ----------------------------------------------------------------------------- Cityscapes


def test_cityscapes_lists_by_city(tmp_path: Path) -> None:
    names = make_cityscapes_tree(tmp_path, "val")
    samples = list_samples("cityscapes", tmp_path, "val")
    assert [s.name for s in samples] == sorted(names)
    first = samples[0]
    assert first.name == "frankfurt/frankfurt_000000_000019_leftImg8bit.png"
    assert first.city == "frankfurt"
    assert first.label_path == (tmp_path / "gtFine/val/frankfurt"
                                / "frankfurt_000000_000019_gtFine_labelIds.png")


def test_cityscapes_without_labels(tmp_path: Path) -> None:
    make_cityscapes_tree(tmp_path, "train", cities=[("aachen", 2)])
    for label in (tmp_path / "gtFine").rglob("*.png"):
        label.unlink()
    samples = list_samples("cityscapes", tmp_path, "train", with_labels=False)
    assert [s.label_path for s in samples] == [None, None]
    item = SegmentationDataset("cityscapes", samples, size=(8, 4))[0]
    assert "label" not in item and item["image"].shape == (3, 4, 8)


def test_list_files_keep_their_order(tmp_path: Path) -> None:
    make_gta5_tree(tmp_path / "gta5", n=3)
    listed = list_samples("gta5", tmp_path / "gta5",
                          list_file=write_list_file(tmp_path / "g.txt", ["00003.png", "00001.png"]))
    assert [s.name for s in listed] == ["00003.png", "00001.png"]
    names = make_cityscapes_tree(tmp_path / "cs", "val")
    listed = list_samples("cityscapes", tmp_path / "cs", "val",
                          list_file=write_list_file(tmp_path / "c.txt", [names[-1], names[0]]))
    assert [(s.name, s.city) for s in listed] == [(names[-1], "munster"), (names[0], "frankfurt")]


# ----------------------------------------------------------------------------- items


def test_resize_image_bilinear_label_nearest(tmp_path: Path) -> None:
    make_cityscapes_tree(tmp_path, "val", cities=[("lindau", 1)], size=(16, 8))
    samples = list_samples("cityscapes", tmp_path, "val")
    full = to_train_ids("cityscapes", read_label_ids("cityscapes", _label(samples[0])))
    item = SegmentationDataset("cityscapes", samples, size=(8, 4))[0]
    assert item["image"].shape == (3, 4, 8)
    # Labels are 4x4 blocks, so halving with nearest keeps every other pixel exactly.
    assert item["label"].numpy().tolist() == full[::2, ::2].tolist()
    original = SegmentationDataset("cityscapes", samples, size=(8, 4), label_size="original")[0]
    assert original["image"].shape == (3, 4, 8)
    assert original["label"].numpy().tolist() == full.tolist()


def test_image_is_bgr_minus_mean(tmp_path: Path) -> None:
    make_gta5_tree(tmp_path, n=1, size=(4, 4))
    sample = list_samples("gta5", tmp_path)[0]
    rgb = np.zeros((4, 4, 3), dtype=np.uint8)
    rgb[1, 2] = (10, 20, 30)
    write_png(sample.image_path, rgb)
    image = SegmentationDataset("gta5", [sample], size=None)[0]["image"]
    expected = [30 - MEAN_BGR[0], 20 - MEAN_BGR[1], 10 - MEAN_BGR[2]]
    assert image[:, 1, 2].tolist() == pytest.approx(expected, abs=1e-4)
    assert image[:, 0, 0].tolist() == pytest.approx([-m for m in MEAN_BGR], abs=1e-4)


def test_dataloader_batches_items(tmp_path: Path) -> None:
    make_cityscapes_tree(tmp_path, "val")
    dataset = SegmentationDataset("cityscapes", list_samples("cityscapes", tmp_path, "val"),
                                  size=(8, 4), label_size="original")
    batch = next(iter(DataLoader(dataset, batch_size=2)))
    assert batch["image"].shape == (2, 3, 4, 8) and batch["label"].shape == (2, 8, 16)
    assert batch["city"] == ["frankfurt", "frankfurt"]


# ----------------------------------------------------------------------------- splits


def test_val_splits_by_city(tmp_path: Path) -> None:
    make_cityscapes_tree(tmp_path, "val")
    samples = list_samples("cityscapes", tmp_path, "val")
    assert {s.city for s in split_samples(samples, "selection")} == set(VAL_SPLITS["selection"])
    assert {s.city for s in split_samples(samples, "report")} == {"lindau", "munster"}
    assert split_samples(samples, "all") == samples
    with pytest.raises(DataError, match="'test'"):
        split_samples(samples, "test")
    with pytest.raises(DataError, match="empty"):
        split_samples([s for s in samples if s.city == "frankfurt"], "report")


# ----------------------------------------------------------------------------- bad input


def test_missing_root(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=re.escape(str(tmp_path / "nowhere"))):
        list_samples("gta5", tmp_path / "nowhere")


def test_unknown_dataset(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="'kitti'"):
        list_samples("kitti", tmp_path)


@pytest.mark.parametrize("dataset, missing", [
    ("gta5", "labels"), ("synthia", "GT/LABELS"), ("cityscapes", "gtFine/val"),
    ("cityscapes", "leftImg8bit/val"),
])
def test_wrong_layout(tmp_path: Path, dataset: str, missing: str) -> None:
    MAKERS[dataset](tmp_path)
    (tmp_path / missing).rename(tmp_path / "moved")
    with pytest.raises(DataError, match=re.escape(f"{tmp_path / missing}: folder missing")):
        list_samples(dataset, tmp_path, "val")


def test_no_images(tmp_path: Path) -> None:
    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    with pytest.raises(DataError, match="no images found"):
        list_samples("gta5", tmp_path)


def test_image_without_label(tmp_path: Path) -> None:
    make_cityscapes_tree(tmp_path, "val")
    label = tmp_path / "gtFine/val/lindau/lindau_000000_000019_gtFine_labelIds.png"
    label.unlink()
    with pytest.raises(DataError, match=re.escape(f"lindau_000000_000019_leftImg8bit.png: image has no "
                                                  f"label; expected {label}")):
        list_samples("cityscapes", tmp_path, "val")


def test_list_file_entry_missing(tmp_path: Path) -> None:
    make_gta5_tree(tmp_path, n=2)
    list_file = write_list_file(tmp_path / "list.txt", ["00001.png", "09999.png"])
    with pytest.raises(DataError, match=re.escape(f"{list_file}: entry '09999.png' not found")):
        list_samples("gta5", tmp_path, list_file=list_file)
    with pytest.raises(DataError, match="list file does not exist"):
        list_samples("gta5", tmp_path, list_file=tmp_path / "absent.txt")


def test_label_id_outside_table(tmp_path: Path) -> None:
    make_cityscapes_tree(tmp_path, "val")
    samples = list_samples("cityscapes", tmp_path, "val")
    check_samples("cityscapes", samples)
    bad = np.full((8, 16), 7, dtype=np.uint8)
    bad[3, 5] = 77
    write_png(_label(samples[2]), bad)
    message = f"{samples[2].label_path}: label id 77 is not a Cityscapes label id (expected 0..33)"
    with pytest.raises(DataError) as caught:
        check_samples("cityscapes", samples)
    assert str(caught.value) == message
    check_samples("cityscapes", samples, max_files=2)  # the bad file is the third


def test_synthia_id_outside_table(tmp_path: Path) -> None:
    make_synthia_tree(tmp_path, n=1)
    sample = list_samples("synthia", tmp_path)[0]
    write_png16_rgb(_label(sample), np.full((8, 16, 3), 30, dtype=np.uint16))
    with pytest.raises(DataError, match="label id 30 is not a SYNTHIA label id \\(expected 0..22\\)"):
        check_samples("synthia", [sample])


def test_unreadable_image(tmp_path: Path) -> None:
    make_gta5_tree(tmp_path, n=2)
    samples = list_samples("gta5", tmp_path)
    samples[1].image_path.write_bytes(b"not a png")
    with pytest.raises(DataError, match=re.escape(f"{samples[1].image_path}: cannot read image")):
        check_samples("gta5", samples)
    with pytest.raises(DataError, match=re.escape(f"{samples[1].image_path}: cannot read image")):
        SegmentationDataset("gta5", samples, size=(8, 4))[1]


def test_truncated_image(tmp_path: Path) -> None:
    make_gta5_tree(tmp_path, n=1, size=(64, 64))
    sample = list_samples("gta5", tmp_path)[0]
    data = sample.image_path.read_bytes()
    sample.image_path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match=re.escape(f"{sample.image_path}: cannot read image")):
        check_samples("gta5", [sample])


@pytest.mark.parametrize("dataset", ["gta5", "synthia"])
def test_unreadable_label(tmp_path: Path, dataset: str) -> None:
    MAKERS[dataset](tmp_path, n=1)
    sample = list_samples(dataset, tmp_path)[0]
    _label(sample).write_bytes(b"garbage")
    with pytest.raises(DataError, match=re.escape(f"{sample.label_path}: cannot read label")):
        SegmentationDataset(dataset, [sample], size=None)[0]
    with pytest.raises(DataError, match=re.escape(f"{sample.label_path}: cannot read label")):
        check_samples(dataset, [sample])


def test_rgb_label_rejected(tmp_path: Path) -> None:
    make_gta5_tree(tmp_path, n=1)
    sample = list_samples("gta5", tmp_path)[0]
    write_png(_label(sample), np.zeros((8, 16, 3), dtype=np.uint8))
    with pytest.raises(DataError, match="mode RGB"):
        check_samples("gta5", [sample])


def test_image_and_label_sizes_disagree(tmp_path: Path) -> None:
    make_gta5_tree(tmp_path, n=1, size=(16, 8))
    sample = list_samples("gta5", tmp_path)[0]
    write_png(_label(sample), np.full((6, 16), 7, dtype=np.uint8))
    with pytest.raises(DataError, match="label is 16x6 but image .* is 16x8"):
        check_samples("gta5", [sample])
    check_samples("gta5", [sample], check_sizes=False)
    # Training still gets matching tensors: the label follows the image's size.
    item = SegmentationDataset("gta5", [sample], size=None)[0]
    assert item["label"].shape == item["image"].shape[1:]


def test_bad_label_size_option() -> None:
    with pytest.raises(DataError, match="label_size"):
        SegmentationDataset("gta5", [], size=None, label_size="full")
