"""mIoU over the Cityscapes train ids, computed as the official cityscapesScripts does.

The official ``evalPixelLevelSemanticLabeling`` builds a confusion matrix over label ids,
skips ground-truth pixels whose label is "ignored in eval", and scores each class as
IoU = tp / (tp + fp + fn); classes with tp + fp + fn = 0 get NaN and are left out of the
mean. With ground truth mapped to train ids (ignored ids -> 255) and predictions in
0..18 the same numbers come out of a 19 x 19 matrix; ``tests/test_evaluation.py`` checks
this against the installed official script.

Class subsets (SYNTHIA's 16 and 13) take the IoUs of the full matrix and average only
the subset, as the published SYNTHIA -> Cityscapes tables do.

Which part of val to score on (``selection`` vs ``report``) is explained in
``simtune.data.splits``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from simtune.data.datasets import Sample, list_samples, read_label_ids, read_png8, to_train_ids
from simtune.data.splits import split_samples
from simtune.errors import DataError
from simtune.labels import ALL_19, CLASS_NAMES, NUM_CLASSES, SYNTHIA_13, SYNTHIA_16

# Classes scored, and extra subset means reported, per source dataset (SIM_SPEC.md).
REPORTED_CLASSES: dict[str, tuple[tuple[int, ...], dict[str, tuple[int, ...]]]] = {
    "gta5": (ALL_19, {}),
    "synthia": (SYNTHIA_16, {"13": SYNTHIA_13}),
}


def confusion_matrix(
    pred: torch.Tensor, label: torch.Tensor, num_classes: int = NUM_CLASSES
) -> torch.Tensor:
    """Count (ground truth, prediction) pairs, on whatever device the inputs live.

    Args:
        pred: predicted train ids in 0..K-1, any shape, e.g. (N, H, W).
        label: ground-truth train ids, same shape; values outside 0..K-1 (255) are ignored.
        num_classes: K.
    Returns:
        (K, K) int64 tensor, rows = ground truth, columns = prediction.
    Raises:
        ValueError: shapes differ, or a prediction outside 0..K-1 on a scored pixel (it
            would otherwise land in another class's cell).
    """
    if pred.shape != label.shape:
        raise ValueError(f"pred and label shapes differ: {tuple(pred.shape)} vs {tuple(label.shape)}")
    pred = pred.reshape(-1).long()
    label = label.reshape(-1).long()
    keep = (label >= 0) & (label < num_classes)
    pred, label = pred[keep], label[keep]
    if bool(((pred < 0) | (pred >= num_classes)).any()):
        raise ValueError(f"predictions must be train ids in 0..{num_classes - 1}")
    counts = torch.bincount(label * num_classes + pred, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes)


@dataclass(frozen=True)
class EvalResult:
    """Scores of one evaluation.

    Attributes:
        miou: mean IoU over ``classes`` with a defined IoU, in percent.
        per_class: class name -> IoU in percent; classes with undefined IoU are omitted.
        classes: the train ids averaged.
        confusion: (K, K) int64 counts, rows = ground truth.
        extra: further means, e.g. ``{"miou_13": 47.1}`` for SYNTHIA.
    """

    miou: float
    per_class: dict[str, float]
    classes: tuple[int, ...]
    confusion: np.ndarray = field(compare=False, repr=False)
    extra: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """``{"miou": ..., "per_class": {...}, **extra}``, JSON-serialisable."""
        return {"miou": self.miou, "per_class": dict(self.per_class), **self.extra}

    def to_metrics(self, prefix: str = "val") -> dict[str, float]:
        """Flat metric names for trackers: ``val/miou``, ``val/iou/<class>``, ``val/miou_13``."""
        metrics = {f"{prefix}/miou": self.miou}
        metrics.update({f"{prefix}/iou/{name}": iou for name, iou in self.per_class.items()})
        metrics.update({f"{prefix}/{key}": value for key, value in self.extra.items()})
        return metrics


def class_iou(confusion: np.ndarray) -> np.ndarray:
    """Per-class IoU = tp / (tp + fp + fn) as a fraction; NaN where the denominator is 0.

    Args:
        confusion: (K, K) counts, rows = ground truth.
    Returns:
        (K,) float64.
    """
    confusion = np.asarray(confusion, dtype=np.float64)
    tp = np.diag(confusion)
    denominator = confusion.sum(axis=0) + confusion.sum(axis=1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, tp / denominator, np.nan)


def scores(
    confusion: np.ndarray | torch.Tensor,
    classes: Sequence[int] = ALL_19,
    *,
    subsets: Mapping[str, Sequence[int]] | None = None,
) -> EvalResult:
    """mIoU and per-class IoU (percent) from a confusion matrix.

    Args:
        confusion: (K, K) counts, rows = ground truth, e.g. from ``confusion_matrix``.
        classes: train ids to average (ALL_19, SYNTHIA_16, SYNTHIA_13).
        subsets: extra means to report, name -> train ids; ``{"13": SYNTHIA_13}`` adds
            ``extra["miou_13"]``.
    Returns:
        The ``EvalResult``; mIoU is NaN when no class has a defined IoU.
    """
    if isinstance(confusion, torch.Tensor):
        confusion = confusion.detach().cpu().numpy()
    confusion = np.asarray(confusion, dtype=np.int64)
    iou = class_iou(confusion)
    classes = tuple(int(c) for c in classes)
    per_class = {CLASS_NAMES[c]: 100.0 * float(iou[c]) for c in classes if not math.isnan(iou[c])}
    extra = {f"miou_{name}": _mean_iou(iou, subset) for name, subset in (subsets or {}).items()}
    return EvalResult(miou=_mean_iou(iou, classes), per_class=per_class, classes=classes,
                      confusion=confusion, extra=extra)


def _mean_iou(iou: np.ndarray, classes: Sequence[int]) -> float:
    defined = [float(iou[c]) for c in classes if not math.isnan(iou[c])]
    return 100.0 * sum(defined) / len(defined) if defined else math.nan


# ----------------------------------------------------------------------------- from files


def evaluate_predictions_dir(
    pred_dir: Path,
    dataset: str,
    root: Path,
    split: str = "val",
    part: str = "all",
    classes: Sequence[int] = ALL_19,
    *,
    subsets: Mapping[str, Sequence[int]] | None = None,
    list_file: Path | None = None,
) -> EvalResult:
    """Score a folder of predicted train-id PNGs against a dataset's ground truth.

    Predictions are single-channel PNGs of train ids (0..18) at the label's size, named
    like the label or the image, in a city folder or flat: for Cityscapes
    ``<city>/<stem>_gtFine_labelIds.png``, ``<stem>_gtFine_labelIds.png``,
    ``<city>/<stem>_leftImg8bit.png`` or ``<stem>_leftImg8bit.png``.

    Args:
        pred_dir: the predictions.
        dataset, root, split, list_file: the ground truth, as for ``list_samples``.
        part: Cityscapes val part, ``"selection"``, ``"report"`` or ``"all"``.
        classes, subsets: as for ``scores``.
    Raises:
        DataError: a missing, ambiguous, unreadable or wrongly sized prediction, or a
            prediction value that is not a train id.
    """
    pred_dir = Path(pred_dir)
    if not pred_dir.is_dir():
        raise DataError(f"{pred_dir}: predictions folder does not exist")
    samples = list_samples(dataset, root, split, list_file=list_file)
    if part != "all":
        samples = split_samples(samples, part)
    confusion = torch.zeros((NUM_CLASSES, NUM_CLASSES), dtype=torch.int64)
    for sample in samples:
        assert sample.label_path is not None  # list_samples pairs every image with a label
        label = to_train_ids(dataset, read_label_ids(dataset, sample.label_path))
        pred = read_prediction(find_prediction(pred_dir, sample), label.shape)
        confusion += confusion_matrix(torch.from_numpy(pred), torch.from_numpy(label))
    return scores(confusion, classes, subsets=subsets)


def find_prediction(pred_dir: Path, sample: Sample) -> Path:
    """The one prediction file for a sample (see ``evaluate_predictions_dir`` for names).

    Raises:
        DataError: none found, or more than one (which would be a stale-file trap).
    """
    names = [sample.image_path.name]
    if sample.label_path is not None and sample.label_path.name not in names:
        names.insert(0, sample.label_path.name)
    folders = [pred_dir / sample.city, pred_dir] if sample.city else [pred_dir]
    candidates = [folder / name for folder in folders for name in names]
    found = [path for path in candidates if path.is_file()]
    if not found:
        others = ", ".join(str(path) for path in candidates[1:])
        raise DataError(f"{candidates[0]}: prediction missing (also looked for {others or '-'})")
    if len(found) > 1:
        raise DataError(f"{found[0]}: more than one prediction for {sample.name} "
                        f"(also {found[1]}); keep one")
    return found[0]


def read_prediction(path: Path, shape: tuple[int, ...]) -> np.ndarray:
    """Read a predicted train-id PNG and check it against its label's (H, W) ``shape``.

    Returns:
        (H, W) uint8 train ids.
    """
    pred = read_png8(path, "prediction")
    if pred.shape != tuple(shape):
        raise DataError(f"{path}: prediction is {pred.shape[1]}x{pred.shape[0]} but its label "
                        f"is {shape[1]}x{shape[0]}")
    if pred.size and int(pred.max()) >= NUM_CLASSES:
        raise DataError(f"{path}: prediction value {int(pred.max())} is not a train id "
                        f"(expected 0..{NUM_CLASSES - 1})")
    return pred


# ----------------------------------------------------------------------------- from a model


@torch.no_grad()
def evaluate_model(
    predict: Callable[[torch.Tensor], torch.Tensor],
    loader: Iterable[dict[str, Any]],
    num_classes: int = NUM_CLASSES,
    classes: Sequence[int] = ALL_19,
    device: torch.device | str | None = None,
    *,
    subsets: Mapping[str, Sequence[int]] | None = None,
) -> EvalResult:
    """Score a model on labelled batches, single scale.

    The caller puts the model in eval mode. Logits are upsampled bilinearly
    (align_corners=False) to the label's resolution before the argmax, so a loader built
    with ``label_size="original"`` scores at full Cityscapes resolution.

    Args:
        predict: image (1, 3, h, w) -> logits (1, K, h', w'); batches of B work the same.
        loader: dicts with ``image`` (B, 3, h, w) or (3, h, w) and ``label`` (B, H, W) or
            (H, W), e.g. a DataLoader over a ``SegmentationDataset``.
        num_classes: K.
        classes, subsets: as for ``scores``.
        device: where images go and counts are kept; None = CUDA when available.
    """
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    confusion = torch.zeros((num_classes, num_classes), dtype=torch.int64, device=device)
    for batch in loader:
        image, label = _batch_tensors(batch, torch.device(device))
        logits = predict(image)  # (B, K, h', w')
        if logits.dim() != 4 or logits.shape[1] != num_classes:
            raise ValueError(f"predict must return (B, {num_classes}, h, w) logits, "
                             f"got shape {tuple(logits.shape)}")
        logits = F.interpolate(logits, size=label.shape[-2:], mode="bilinear", align_corners=False)
        confusion += confusion_matrix(logits.argmax(dim=1), label.to(logits.device), num_classes)
    return scores(confusion, classes, subsets=subsets)


def _batch_tensors(batch: dict[str, Any], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, 3, h, w) image and (B, H, W) label of a batch, on ``device``."""
    if "label" not in batch:
        raise DataError(f"{batch.get('name', 'a sample')}: no label to evaluate against")
    image, label = batch["image"], batch["label"]
    if image.dim() == 3:  # an unbatched dataset item
        image, label = image.unsqueeze(0), label.unsqueeze(0)
    return image.to(device, non_blocking=True), label.to(device, non_blocking=True).long()
