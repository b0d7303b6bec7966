"""The pseudo-labelling pass between the stages.

One model pass over the target train set stores, per image, the predicted class and its
confidence (uint8 + uint16) and fills per-class confidence histograms. The SIM rule then
needs no further model pass: a thresholds sweep re-labels from these files. CBST needs the
full class probabilities and runs the model again; CBST with the spatial prior (CBST-SP)
runs it twice, once to histogram the prior-weighted probabilities, once to label.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from simtune.data.datasets import SegmentationDataset, read_label_ids, to_train_ids
from simtune.data.loaders import Loading, batches
from simtune.labels import IGNORE
from simtune.rundir import HISTOGRAM, RunDir, write_json
from simtune.sim.thresholds import (
    ConfidenceHistogram,
    accumulate_class_frequency,
    apply_cbst,
    cbst_thresholds,
    prior_histogram,
    spatial_prior,
    sim_thresholds,
    thresholds_report,
    write_pseudo_label,
)

CONF_SCALE = 65535  # confidences stored as uint16: resolution 1.5e-5, far below a histogram bin


@dataclass(frozen=True)
class PseudoLabelRule:
    """Plain arguments of the pseudo-label rule (from ``PseudoLabelConfig``, whose schema holds the defaults)."""

    method: str
    quantile: float
    cap: float
    portion: float
    bins: int


@torch.no_grad()
def image_probs(segmenter: torch.nn.Module, image: torch.Tensor, autocast: bool) -> torch.Tensor:
    """Softmax of the logits upsampled to the image size: (1, K, H, W) float32."""
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=autocast):
        logits = segmenter(image).logits
    up = F.interpolate(logits.float(), size=image.shape[-2:], mode="bilinear", align_corners=False)
    return F.softmax(up, dim=1)


@torch.no_grad()
def predict_target(segmenter: torch.nn.Module, dataset: Dataset[Any], out: Path, *, num_classes: int,
                   bins: int, device: torch.device, autocast: bool,
                   loading: Loading = Loading()) -> ConfidenceHistogram:
    """Predict every target train image; write ``out/<index>.npz`` (pred, conf) and the histogram.

    Host memory is one image's maps plus a (K, bins) histogram, whatever the set size.
    """
    out.mkdir(parents=True, exist_ok=True)
    hist = ConfidenceHistogram(num_classes, bins=bins, device=device)
    segmenter.eval()
    for index, batch in enumerate(batches(dataset, loading, device)):
        probs = image_probs(segmenter, batch["image"], autocast)
        conf, pred = probs.max(dim=1)
        hist.update(conf, pred)
        np.savez(out / f"{index:06d}.npz", pred=pred[0].to(torch.uint8).cpu().numpy(),
                 conf=(conf[0] * CONF_SCALE).round().to(torch.int32).cpu().numpy().astype(np.uint16))
    np.save(out / HISTOGRAM, hist.counts.cpu().numpy())
    return hist


def label_from_predictions(pred_dir: Path, labels_dir: Path, thresholds: np.ndarray,
                           num_classes: int) -> np.ndarray:
    """SIM rule from stored predictions: keep a pixel if its confidence reaches its class threshold.

    Returns:
        (K,) fraction of each class's predicted pixels that were kept.
    """
    labels_dir.mkdir(parents=True, exist_ok=True)
    kept = np.zeros(num_classes, dtype=np.int64)
    total = np.zeros(num_classes, dtype=np.int64)
    limit = np.round(np.asarray(thresholds, dtype=np.float64) * CONF_SCALE)
    for path in sorted(pred_dir.glob("*.npz")):
        stored = np.load(path)
        pred, conf = stored["pred"], stored["conf"]
        keep = conf >= limit[pred]
        label = np.where(keep, pred, IGNORE).astype(np.uint8)
        write_pseudo_label(labels_dir / f"{path.stem}.png", label)
        total += np.bincount(pred.ravel(), minlength=num_classes)[:num_classes]
        kept += np.bincount(pred[keep].ravel(), minlength=num_classes)[:num_classes]
    return kept / np.maximum(total, 1)


PRIOR_KERNEL_AT_1024 = 70  # CBST-SP's Gaussian kernel width (px) for 1024-wide target images


def source_prior(source: SegmentationDataset, size: tuple[int, int], num_classes: int,
                 device: torch.device) -> torch.Tensor:
    """CBST-SP's spatial prior: the source labels' class frequency per pixel, smoothed.

    Reads only the label files. The kernel scales with the target width (70 px at 1024).

    Args:
        size: (W, H) of the target images the prior multiplies.
    Returns:
        (K, H, W) float32, each class summing to 1 over the pixels.
    """
    width, height = size
    counts = torch.zeros(num_classes, height, width, dtype=torch.int64, device=device)
    for sample in source.samples:
        if sample.label_path is not None:
            train_ids = to_train_ids(source.dataset, read_label_ids(source.dataset, sample.label_path))
            accumulate_class_frequency(counts, torch.from_numpy(train_ids.astype(np.int64))[None].to(device))
    return spatial_prior(counts, kernel_size=max(3, round(PRIOR_KERNEL_AT_1024 * width / 1024)))


@torch.no_grad()
def potential_histogram(segmenter: torch.nn.Module, dataset: Dataset[Any], prior: torch.Tensor, *, bins: int,
                        device: torch.device, autocast: bool, loading: Loading = Loading()) -> ConfidenceHistogram:
    """CBST-SP's histograms: per class, the max over classes of prior * probability (one model pass)."""
    hist = prior_histogram(prior.to(device), bins=bins)
    for batch in batches(dataset, loading, device):
        potential = image_probs(segmenter, batch["image"], autocast) * prior.to(device)[None]
        value, label = potential.max(dim=1)
        hist.update(value, label)
    return hist


@torch.no_grad()
def label_cbst(segmenter: torch.nn.Module, dataset: Dataset[Any], labels_dir: Path, thresholds: np.ndarray,
               *, device: torch.device, autocast: bool, prior: torch.Tensor | None = None,
               loading: Loading = Loading()) -> np.ndarray:
    """CBST rule (needs all class probabilities): one more model pass over the target set.

    Args:
        prior: (K, H, W) CBST-SP prior multiplied into the probabilities, or None.
    """
    labels_dir.mkdir(parents=True, exist_ok=True)
    num_classes = len(thresholds)
    kept = np.zeros(num_classes, dtype=np.int64)
    total = np.zeros(num_classes, dtype=np.int64)
    class_thresholds = torch.as_tensor(thresholds, device=device, dtype=torch.float32)
    for index, batch in enumerate(batches(dataset, loading, device)):
        probs = image_probs(segmenter, batch["image"], autocast)
        label = apply_cbst(probs, class_thresholds, prior)[0].cpu().numpy()
        pred = probs.argmax(1)[0].cpu().numpy()
        write_pseudo_label(labels_dir / f"{index:06d}.png", label)
        total += np.bincount(pred.ravel(), minlength=num_classes)[:num_classes]
        kept += np.bincount(label[label != IGNORE].ravel(), minlength=num_classes)[:num_classes]
    return kept / np.maximum(total, 1)


def make_pseudo_labels(segmenter: torch.nn.Module, dataset: Dataset[Any], rule: PseudoLabelRule,
                       pred_dir: Path, run: RunDir, *, device: torch.device, autocast: bool,
                       prior: torch.Tensor | None = None, loading: Loading = Loading()) -> dict[str, Any]:
    """Pseudo-labels for every target train image in the run's ``pseudo/labels`` + ``thresholds.json``.

    ``pred_dir`` may already hold the predictions (shared stage 1): then no model pass runs
    for the SIM rule.

    Args:
        prior: (K, H, W) spatial prior (``source_prior``) for CBST-SP; needs ``rule.method`` cbst.
        loading: worker processes and pinned memory of the passes over ``dataset``.
    """
    # getattr: nn.Module types a plain attribute as Tensor | Module
    num_classes = int(getattr(segmenter, "num_classes"))  # noqa: B009
    if (pred_dir / HISTOGRAM).is_file():
        hist = ConfidenceHistogram.from_counts(torch.as_tensor(np.load(pred_dir / HISTOGRAM)))
    else:
        hist = predict_target(segmenter, dataset, pred_dir, num_classes=num_classes, bins=rule.bins,
                              device=device, autocast=autocast, loading=loading)
    if rule.method == "sim":
        thresholds = sim_thresholds(hist, quantile=rule.quantile, cap=rule.cap).cpu().numpy()
        kept = label_from_predictions(pred_dir, run.labels, thresholds, num_classes)
    else:
        if prior is not None:
            hist = potential_histogram(segmenter, dataset, prior, bins=rule.bins, device=device, autocast=autocast,
                                       loading=loading)
        thresholds = cbst_thresholds(hist, portion=rule.portion).cpu().numpy()
        kept = label_cbst(segmenter, dataset, run.labels, thresholds, device=device, autocast=autocast, prior=prior,
                          loading=loading)
    report = thresholds_report(thresholds, kept)
    report["method"] = rule.method + ("-sp" if prior is not None else "")
    write_json(run.thresholds, report)
    return report


class PseudoLabelled(Dataset[dict[str, Any]]):
    """Target train images with their pseudo-label (``pseudo``: (H, W) uint8, 255 unset)."""

    def __init__(self, images: Dataset[Any], labels_dir: Path) -> None:
        self.images = images
        self.labels_dir = labels_dir

    def __len__(self) -> int:
        return len(self.images)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> dict[str, Any]:
        from PIL import Image

        item = dict(self.images[index])
        label = np.array(Image.open(self.labels_dir / f"{index:06d}.png"), dtype=np.uint8)
        item["pseudo"] = torch.from_numpy(label)
        return item
