"""mIoU: hand-made cases, the official Cityscapes script, prediction folders, models."""

from __future__ import annotations

import copy
import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from simtune.data.datasets import (
    Sample,
    SegmentationDataset,
    list_samples,
    read_label_ids,
    to_train_ids,
)
from simtune.errors import DataError
from simtune.evaluation import (
    confusion_matrix,
    evaluate_model,
    evaluate_predictions_dir,
    scores,
)
from simtune.labels import (
    CITYSCAPES_ID_TO_TRAIN,
    CLASS_NAMES,
    IGNORE,
    NUM_CLASSES,
    SYNTHIA_13,
    SYNTHIA_16,
)
from simtune.testing import make_cityscapes_tree, write_png

TRAIN_TO_ID = {train: label for label, train in CITYSCAPES_ID_TO_TRAIN.items()}


def _gt(sample: Sample) -> np.ndarray:
    """(H, W) uint8 ground-truth train ids of a Cityscapes sample."""
    assert sample.label_path is not None
    return to_train_ids("cityscapes", read_label_ids("cityscapes", sample.label_path))


def _t(rows: list[list[int]]) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.int64)


# ----------------------------------------------------------------------------- hand-made


def test_confusion_rows_are_ground_truth() -> None:
    label = _t([[0, 0, 1, IGNORE]])
    pred = _t([[0, 1, 1, 2]])
    confusion = confusion_matrix(pred, label, num_classes=3)
    assert confusion.dtype == torch.int64
    assert confusion.tolist() == [[1, 1, 0], [0, 1, 0], [0, 0, 0]]


def test_confusion_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="shapes differ"):
        confusion_matrix(_t([[0, 1]]), _t([[0], [1]]))
    with pytest.raises(ValueError, match="0..18"):
        confusion_matrix(_t([[0, 19]]), _t([[0, 1]]))
    # A bad prediction on an ignored pixel is harmless: it is never counted.
    assert confusion_matrix(_t([[0, 255]]), _t([[0, IGNORE]])).sum() == 1


def test_perfect_prediction_is_100() -> None:
    label = torch.randint(0, NUM_CLASSES, (2, 16, 16))
    result = scores(confusion_matrix(label, label))
    assert result.miou == pytest.approx(100.0)
    assert set(result.per_class.values()) == {100.0}


def test_two_by_two_by_hand() -> None:
    # road: tp 2, fn 1, fp 0 -> 2/3; sidewalk: tp 1, fn 0, fp 1 -> 1/2.
    label = _t([[0, 0, IGNORE], [0, 1, IGNORE]])
    pred = _t([[0, 0, 1], [1, 1, 0]])
    result = scores(confusion_matrix(pred, label))
    assert result.per_class == pytest.approx({"road": 200 / 3, "sidewalk": 50.0})
    # The 17 classes in neither map are left out, not counted as 0.
    assert result.miou == pytest.approx((200 / 3 + 50) / 2)


def test_predicted_but_absent_class_scores_zero() -> None:
    label = _t([[0, 0]])
    pred = _t([[0, 13]])
    result = scores(confusion_matrix(pred, label))
    assert result.per_class == pytest.approx({"road": 50.0, "car": 0.0})
    assert result.miou == pytest.approx(25.0)


def test_synthia_16_and_13_subsets() -> None:
    confusion = np.zeros((NUM_CLASSES, NUM_CLASSES), dtype=np.int64)
    for c in range(NUM_CLASSES):
        confusion[c, c] = c + 1
        confusion[c, (c + 1) % NUM_CLASSES] = 1  # IoU_c = (c+1) / (c+3)
    iou = {c: 100 * (c + 1) / (c + 3) for c in range(NUM_CLASSES)}
    result = scores(confusion, SYNTHIA_16, subsets={"13": SYNTHIA_13})
    assert set(result.per_class) == {CLASS_NAMES[c] for c in SYNTHIA_16}
    assert "terrain" not in result.per_class and "wall" in result.per_class
    assert result.miou == pytest.approx(np.mean([iou[c] for c in SYNTHIA_16]))
    assert result.extra["miou_13"] == pytest.approx(np.mean([iou[c] for c in SYNTHIA_13]))
    assert result.to_json()["miou_13"] == result.extra["miou_13"]
    metrics = result.to_metrics()
    assert metrics["val/miou"] == result.miou and "val/iou/wall" in metrics


def test_nothing_to_score_is_nan() -> None:
    result = scores(np.zeros((NUM_CLASSES, NUM_CLASSES), dtype=np.int64))
    assert math.isnan(result.miou) and result.per_class == {}


# ----------------------------------------------------------------------------- official script


def _random_predictions(root: Path, pred_dir: Path, id_dir: Path, seed: int) -> tuple[list[str], list[str]]:
    """Train-id predictions in ``pred_dir``, label-id copies for the official script in
    ``id_dir``; returns (official prediction files, ground-truth files)."""
    rng = np.random.default_rng(seed)
    pred_choices = [c for c in range(NUM_CLASSES) if c != 16]  # "train": in no map -> NaN
    official_preds, gts = [], []
    for sample in list_samples("cityscapes", root, "val"):
        assert sample.label_path is not None
        gt = _gt(sample)
        noise = rng.choice(pred_choices, size=gt.shape).astype(np.uint8)
        keep = (gt != IGNORE) & (rng.random(gt.shape) < 0.6)
        pred = np.where(keep, gt, noise).astype(np.uint8)
        file_name = sample.label_path.name
        write_png(pred_dir / sample.city / file_name, pred)
        label_ids = np.vectorize(TRAIN_TO_ID.get)(pred).astype(np.uint8)
        official_preds.append(str(write_png(id_dir / file_name, label_ids)))
        gts.append(str(sample.label_path))
    return official_preds, gts


def _official_scores(preds: list[str], gts: list[str], tmp_path: Path) -> dict:
    from cityscapesscripts.evaluation import evalPixelLevelSemanticLabeling as official

    args = copy.copy(official.args)  # never change the module's global settings
    args.evalInstLevelScore = False  # needs *_instanceIds.png, which nIoU alone uses
    args.evalPixelAccuracy = False
    args.JSONOutput = False
    args.quiet = True
    args.colorized = False
    args.exportFile = str(tmp_path / "official.json")
    return official.evaluateImgLists(preds, gts, args)


def test_matches_official_cityscapes_script(tmp_path: Path) -> None:
    from cityscapesscripts.helpers.labels import trainId2label

    # Labels draw from every id, ignored ones (0, 4, 9, ...) included, except bus (28)
    # and train (31): bus is predicted but absent (IoU 0), train is in no map (NaN).
    ids = [i for i in range(34) if i not in (28, 31)]
    root = tmp_path / "cityscapes"
    make_cityscapes_tree(root, "val", cities=[("frankfurt", 3), ("lindau", 2), ("munster", 2)],
                         size=(64, 32), seed=7, label_ids=ids)
    preds, gts = _random_predictions(root, tmp_path / "pred", tmp_path / "ids", seed=8)
    official = _official_scores(preds, gts, tmp_path)
    ours = evaluate_predictions_dir(tmp_path / "pred", "cityscapes", root, "val")

    assert ours.miou == pytest.approx(100 * official["averageScoreClasses"], abs=0.01)
    for train_id in range(NUM_CLASSES):
        expected = official["classScores"][trainId2label[train_id].name]
        if math.isnan(expected):
            assert CLASS_NAMES[train_id] not in ours.per_class
        else:
            assert ours.per_class[CLASS_NAMES[train_id]] == pytest.approx(100 * expected, abs=0.01)
    assert "train" not in ours.per_class and ours.per_class["bus"] == 0.0
    official_matrix = np.asarray(official["confMatrix"])
    ids_in_train_order = [TRAIN_TO_ID[c] for c in range(NUM_CLASSES)]
    assert (ours.confusion == official_matrix[np.ix_(ids_in_train_order, ids_in_train_order)]).all()


# ----------------------------------------------------------------------------- prediction folders


@pytest.fixture
def val_tree(tmp_path: Path) -> Path:
    root = tmp_path / "cityscapes"
    make_cityscapes_tree(root, "val")
    return root


def _write_perfect(root: Path, pred_dir: Path, name_of: str = "label", flat: bool = False) -> None:
    for sample in list_samples("cityscapes", root, "val"):
        assert sample.label_path is not None
        gt = _gt(sample)
        name = sample.label_path.name if name_of == "label" else sample.image_path.name
        folder = pred_dir if flat else pred_dir / sample.city
        write_png(folder / name, np.where(gt == IGNORE, 0, gt))


@pytest.mark.parametrize("name_of, flat", [("label", False), ("label", True),
                                           ("image", False), ("image", True)])
def test_prediction_names_accepted(val_tree: Path, tmp_path: Path, name_of: str, flat: bool) -> None:
    _write_perfect(val_tree, tmp_path / "pred", name_of, flat)
    result = evaluate_predictions_dir(tmp_path / "pred", "cityscapes", val_tree)
    assert result.miou == pytest.approx(100.0)


def test_part_scores_only_its_cities(val_tree: Path, tmp_path: Path) -> None:
    _write_perfect(val_tree, tmp_path / "pred")
    for path in (tmp_path / "pred" / "lindau").glob("*.png"):
        path.unlink()  # not needed for the selection part
    result = evaluate_predictions_dir(tmp_path / "pred", "cityscapes", val_tree, part="selection")
    frankfurt = [_gt(s) for s in list_samples("cityscapes", val_tree, "val")
                 if s.city == "frankfurt"]
    assert result.confusion.sum() == sum(int((gt != IGNORE).sum()) for gt in frankfurt)
    with pytest.raises(DataError, match="prediction missing"):
        evaluate_predictions_dir(tmp_path / "pred", "cityscapes", val_tree, part="report")


def test_missing_prediction_named(val_tree: Path, tmp_path: Path) -> None:
    _write_perfect(val_tree, tmp_path / "pred")
    missing = tmp_path / "pred/munster/munster_000000_000019_gtFine_labelIds.png"
    missing.unlink()
    with pytest.raises(DataError, match=re.escape(f"{missing}: prediction missing")):
        evaluate_predictions_dir(tmp_path / "pred", "cityscapes", val_tree)


@pytest.mark.parametrize("array, message", [
    (np.zeros((4, 16), dtype=np.uint8), "prediction is 16x4 but its label is 16x8"),
    (np.full((8, 16), 255, dtype=np.uint8), "prediction value 255 is not a train id"),
    (np.zeros((8, 16, 3), dtype=np.uint8), "prediction has PIL mode RGB"),
])
def test_bad_prediction_named(val_tree: Path, tmp_path: Path, array: np.ndarray, message: str) -> None:
    _write_perfect(val_tree, tmp_path / "pred")
    bad = tmp_path / "pred/lindau/lindau_000000_000019_gtFine_labelIds.png"
    write_png(bad, array)
    with pytest.raises(DataError, match=re.escape(f"{bad}: {message}")):
        evaluate_predictions_dir(tmp_path / "pred", "cityscapes", val_tree)


def test_two_predictions_for_one_image(val_tree: Path, tmp_path: Path) -> None:
    _write_perfect(val_tree, tmp_path / "pred")
    _write_perfect(val_tree, tmp_path / "pred", flat=True)
    with pytest.raises(DataError, match="more than one prediction"):
        evaluate_predictions_dir(tmp_path / "pred", "cityscapes", val_tree)


# ----------------------------------------------------------------------------- models


def _one_hot_logits(label: torch.Tensor) -> torch.Tensor:
    """(B, K, H, W) logits whose argmax is ``label`` (ignore -> class 0)."""
    label = torch.where(label == IGNORE, torch.zeros_like(label), label).long()
    return F.one_hot(label, NUM_CLASSES).permute(0, 3, 1, 2).float()


def test_model_scored_at_label_resolution(val_tree: Path) -> None:
    samples = list_samples("cityscapes", val_tree, "val")
    dataset = SegmentationDataset("cityscapes", samples, size=(8, 4), label_size="original")
    labels = iter([dataset[i]["label"].unsqueeze(0) for i in range(len(dataset))])
    seen: list[tuple[int, ...]] = []

    def predict(image: torch.Tensor) -> torch.Tensor:
        seen.append(tuple(image.shape))
        # Half-resolution logits: 4x4 label blocks survive bilinear upsampling exactly.
        return _one_hot_logits(next(labels)[:, ::2, ::2])

    result = evaluate_model(predict, DataLoader(dataset, batch_size=1), device="cpu")
    assert seen == [(1, 3, 4, 8)] * len(dataset)
    assert result.miou == pytest.approx(100.0)
    assert result.confusion.sum() == sum(int((dataset[i]["label"] != IGNORE).sum())
                                         for i in range(len(dataset)))


def test_model_logits_upsampled_bilinearly() -> None:
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(1, NUM_CLASSES, 5, 7, generator=generator)
    label = torch.randint(0, NUM_CLASSES, (1, 20, 28), generator=generator)
    label[0, :3] = IGNORE
    upsampled = F.interpolate(logits, size=(20, 28), mode="bilinear", align_corners=False)
    expected = scores(confusion_matrix(upsampled.argmax(1), label))
    loader = [{"image": torch.zeros(3, 10, 14), "label": label[0], "name": "x"}]  # unbatched
    result = evaluate_model(lambda image: logits, loader, device="cpu")
    assert (result.confusion == expected.confusion).all()
    assert result.miou == expected.miou


def test_model_without_label_or_wrong_classes() -> None:
    with pytest.raises(DataError, match="a.png: no label"):
        evaluate_model(lambda x: x, [{"image": torch.zeros(1, 3, 2, 2), "name": "a.png"}],
                       device="cpu")
    loader = [{"image": torch.zeros(1, 3, 2, 2), "label": torch.zeros(1, 2, 2, dtype=torch.int64)}]
    with pytest.raises(ValueError, match="logits"):
        evaluate_model(lambda x: torch.zeros(1, 5, 2, 2), loader, device="cpu")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_confusion_on_cuda_matches_cpu() -> None:
    label = torch.randint(0, NUM_CLASSES, (2, 64, 64))
    label[:, :8] = IGNORE
    pred = torch.randint(0, NUM_CLASSES, (2, 64, 64))
    on_gpu = confusion_matrix(pred.cuda(), label.cuda())
    assert on_gpu.is_cuda
    assert (on_gpu.cpu() == confusion_matrix(pred, label)).all()
    loader = [{"image": torch.zeros(1, 3, 8, 8), "label": label[:1]}]
    logits = _one_hot_logits(label[:1]).cuda()
    assert evaluate_model(lambda x: logits, loader, device="cuda").miou == pytest.approx(100.0)
