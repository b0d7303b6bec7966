"""Pseudo-labels for the target train set: the SIM rule (eq. 9) and CBST, from streaming histograms.

Thresholds come from per-class histograms of the confidence of the pixels predicted as each
class, accumulated image by image on the device: memory is ``(K, bins)`` counts whatever the
number of images (the full set is 1.56e9 pixels; a sort of all of them does not fit).
A quantile read off a histogram with ``bins`` bins on ``[0, 1]`` is within one bin width
(``1 / bins``; 5e-4 at the default 2000 bins) of the exact quantile of the pixels.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from simtune.labels import CLASS_NAMES, IGNORE
from simtune.files import write_with

DEFAULT_BINS = 2000


class ConfidenceHistogram:
    """Per-class int64 counts of confidences in ``bins`` equal bins on ``[0, value_scale[c]]``.

    Args:
        num_classes: K.
        bins: bins per class; quantiles are exact to ``value_scale[c] / bins``.
        device: where the counts accumulate (the probabilities' device: no host copies).
        value_scale: ``(K,)`` upper end of each class's range; default 1 (softmax
            confidences). CBST with a spatial prior histograms prior * probability, whose
            range per class is the prior's peak.

    Attributes:
        counts: ``(K, bins)`` int64.
    """

    def __init__(self, num_classes: int, *, bins: int = DEFAULT_BINS, device: torch.device | str = "cpu",
                 value_scale: Tensor | None = None) -> None:
        if num_classes < 1 or bins < 1:
            raise ValueError(f"num_classes >= 1 and bins >= 1 must hold, but got num_classes={num_classes}, "
                             f"bins={bins}")
        self.num_classes = num_classes
        self.bins = bins
        self.counts = torch.zeros(num_classes, bins, dtype=torch.int64, device=device)
        scale = torch.ones(num_classes) if value_scale is None else torch.as_tensor(value_scale).float()
        if scale.shape != (num_classes,) or not bool((scale > 0).all()):
            raise ValueError(f"value_scale must be ({num_classes},) and positive, but got {scale.tolist()}")
        self.value_scale = scale.to(device)

    @classmethod
    def from_counts(cls, counts: Tensor, value_scale: Tensor | None = None) -> ConfidenceHistogram:
        """A histogram holding stored ``(K, bins)`` counts (e.g. ``np.load``-ed ``counts``)."""
        counts = torch.as_tensor(counts)
        hist = cls(counts.shape[0], bins=counts.shape[1], device=counts.device, value_scale=value_scale)
        hist.counts.copy_(counts.to(torch.int64))
        return hist

    def update(self, probs_or_conf: Tensor, pred: Tensor | None = None) -> None:
        """Count a batch of pixels.

        Args:
            probs_or_conf: ``(N, K, H, W)`` class probabilities (or CBST potentials); or
                ``(N, H, W)`` confidences when ``pred`` is given.
            pred: ``(N, H, W)`` predicted class of each pixel, or None to take the argmax.
        """
        if pred is None:
            conf, pred = probs_or_conf.max(dim=1)
        else:
            conf = probs_or_conf
        pred = pred.reshape(-1).long()
        scaled = conf.reshape(-1).float() / self.value_scale[pred]
        # floor(x * bins) puts 1.0 one past the last bin: clamp it back in.
        bin_index = (scaled * self.bins).long().clamp_(0, self.bins - 1)
        ones = torch.ones(1, dtype=torch.int64, device=pred.device).expand(pred.shape[0])
        # index_add_ instead of bincount: CUDA bincount reads the max to the host (a sync).
        self.counts.view(-1).index_add_(0, pred * self.bins + bin_index, ones)

    def totals(self) -> Tensor:
        """``(K,)`` int64 number of pixels predicted as each class."""
        return self.counts.sum(dim=1)

    def order_statistic(self, position: Tensor) -> Tensor:
        """Estimate, per class, the value at a 0-based ascending rank, interpolating fractional ranks.

        A rank is placed inside its bin by its position among the bin's pixels, so the
        estimate stays within one bin width of the true order statistic.

        Args:
            position: ``(K,)`` float ranks in ``[0, N_c - 1]``.
        Returns:
            ``(K,)`` float32 values in the histogram's units; NaN for a class with no pixels.
        """
        position = position.to(self.counts.device, torch.float64)
        low = position.floor()
        high = torch.minimum(low + 1, (self.totals() - 1).clamp_min(0).double())
        lo_value, hi_value = self._value_at_rank(low), self._value_at_rank(high)
        value = lo_value + (position - low) * (hi_value - lo_value)
        return torch.where(self.totals() > 0, value, math.nan).float()

    def _value_at_rank(self, rank: Tensor) -> Tensor:
        """``(K,)`` float64 estimate of the value at integer ascending rank ``rank`` (``(K,)``)."""
        cumulative = self.counts.cumsum(dim=1)  # (K, bins)
        bin_index = torch.searchsorted(cumulative, rank.long()[:, None], right=True)[:, 0].clamp_(max=self.bins - 1)
        before = torch.where(bin_index > 0, cumulative.gather(1, (bin_index - 1).clamp_min(0)[:, None])[:, 0], 0)
        in_bin = self.counts.gather(1, bin_index[:, None])[:, 0].clamp_min(1)
        offset = (rank - before + 0.5) / in_bin  # in (0, 1): the rank's place inside its bin
        return (bin_index + offset) / self.bins * self.value_scale.double()

    def quantile(self, q: float) -> Tensor:
        """``(K,)`` q-quantile of each class's values (linear between ranks, as ``numpy.quantile``).

        NaN for a class never predicted.
        """
        if not 0.0 <= q <= 1.0:
            raise ValueError(f"0 <= q <= 1 must hold, but got q={q}")
        return self.order_statistic(q * (self.totals() - 1).clamp_min(0).double())


def sim_thresholds(hist: ConfidenceHistogram, quantile: float = 0.5, cap: float = 0.9) -> Tensor:
    """The SIM rule's class thresholds y_t^k = min(quantile of class k's confidences, cap).

    A class never predicted gets ``cap`` (no pixel of it exists, so the value is moot).

    Returns:
        ``(K,)`` float32.
    """
    if not 0.0 <= cap <= 1.0:
        raise ValueError(f"0 <= cap <= 1 must hold, but got cap={cap}")
    q = hist.quantile(quantile)
    return torch.where(torch.isnan(q), cap, q.clamp(max=cap))


def cbst_thresholds(hist: ConfidenceHistogram, portion: float = 0.2) -> Tensor:
    """CBST's exp(-k_c): class c's confidence at descending rank floor(portion * N_c).

    Algorithm 2 of the CBST paper indexes the descending-sorted confidences of the pixels
    predicted as c with ``length * p``; as an index that is its floor. A class never
    predicted gets its range's upper end, so no pixel can exceed its threshold.

    Returns:
        ``(K,)`` float32, in the histogram's units (potentials when it holds prior * p).
    """
    if not 0.0 <= portion <= 1.0:
        raise ValueError(f"0 <= portion <= 1 must hold, but got portion={portion}")
    totals = hist.totals().double()
    descending = torch.minimum((portion * totals).floor(), (totals - 1).clamp_min(0))
    value = hist.order_statistic(totals - 1 - descending)
    # A zero threshold would divide by zero in apply_cbst; it only occurs with an empty bin 0 estimate.
    value = value.clamp_min(torch.finfo(torch.float32).tiny)
    return torch.where(torch.isnan(value), hist.value_scale.float(), value)


def threshold_predictions(conf: Tensor, pred: Tensor, thresholds: Tensor) -> Tensor:
    """Eq. 9 on stored predictions: keep ``pred`` where ``conf >= thresholds[pred]``, else 255.

    Args:
        conf: ``(N, H, W)`` max probability; pred: ``(N, H, W)`` its class.
        thresholds: ``(K,)``.
    Returns:
        ``(N, H, W)`` uint8.
    """
    limit = thresholds.to(conf.device, conf.dtype)[pred.long()]
    return torch.where(conf >= limit, pred.long(), IGNORE).to(torch.uint8)


def apply_thresholds(probs: Tensor, thresholds: Tensor) -> Tensor:
    """The SIM rule (eq. 9): the argmax class where its probability reaches its class threshold.

    The paper writes ``>``; ties have probability zero and ``>=`` keeps a class whose
    threshold equals its top confidence.

    Args:
        probs: ``(N, K, H, W)`` softmax probabilities.
        thresholds: ``(K,)``.
    Returns:
        ``(N, H, W)`` uint8 train ids, 255 where the pixel is left unlabelled.
    """
    conf, pred = probs.max(dim=1)
    return threshold_predictions(conf, pred, thresholds)


def apply_cbst(probs: Tensor, class_thresholds: Tensor, prior: Tensor | None = None) -> Tensor:
    """CBST (eq. 8 of the CBST paper): argmax_c p_c / exp(-k_c) where that maximum exceeds 1.

    Args:
        probs: ``(N, K, H, W)`` softmax probabilities.
        class_thresholds: ``(K,)`` exp(-k_c) from ``cbst_thresholds``.
        prior: ``(K, H, W)`` spatial prior (CBST-SP) multiplied into ``probs``, or None.
    Returns:
        ``(N, H, W)`` uint8 train ids, 255 where no class passes.
    """
    potential = probs if prior is None else probs * prior.to(probs.device, probs.dtype).unsqueeze(0)
    ratio = potential / class_thresholds.to(probs.device, probs.dtype).view(1, -1, 1, 1)
    best, label = ratio.max(dim=1)
    return torch.where(best > 1, label, IGNORE).to(torch.uint8)


def accumulate_class_frequency(counts: Tensor, labels: Tensor) -> None:
    """Add a batch of source label maps to per-pixel class counts (for the spatial prior).

    Args:
        counts: ``(K, H, W)`` int64, updated in place.
        labels: ``(N, H', W')`` train ids (255 ignored), resized nearest to ``(H, W)``.
    """
    k, h, w = counts.shape
    if tuple(labels.shape[-2:]) != (h, w):
        labels = F.interpolate(labels[:, None].float(), size=(h, w), mode="nearest")[:, 0]
    labels = labels.long().to(counts.device)
    valid = (labels >= 0) & (labels < k)
    pixel = torch.arange(h * w, device=counts.device).view(1, h, w)
    # Ignored pixels add 0 at slot 0 rather than being masked out (masking needs a sync).
    index = torch.where(valid, labels * (h * w) + pixel, 0).reshape(-1)
    counts.view(-1).index_add_(0, index, valid.reshape(-1).long())


def spatial_prior(counts: Tensor, kernel_size: int = 70) -> Tensor:
    """CBST-SP's prior q_n(c): class frequency per pixel, Gaussian-smoothed, each class summing to 1.

    The CBST paper smooths with a 70x70 Gaussian kernel without giving sigma; here sigma is
    ``kernel_size / 6`` (the kernel spans +-3 sigma). Edges are padded by replication. A class
    absent from every source label gets a uniform map.

    Args:
        counts: ``(K, H, W)`` per-pixel class counts (``accumulate_class_frequency``).
        kernel_size: Gaussian kernel width in pixels at the prior's resolution.
    Returns:
        ``(K, H, W)`` float32, each class summing to 1 over the pixels.
    """
    k, h, w = counts.shape
    sigma = max(kernel_size / 6.0, 1e-6)
    offsets = torch.arange(kernel_size, dtype=torch.float32, device=counts.device) - (kernel_size - 1) / 2
    kernel = torch.exp(-0.5 * (offsets / sigma) ** 2)
    kernel = kernel / kernel.sum()
    x = counts.float().unsqueeze(0)  # (1, K, H, W)
    pad = (kernel_size // 2, (kernel_size - 1) // 2)
    x = F.conv2d(F.pad(x, (*pad, 0, 0), mode="replicate"), kernel.view(1, 1, 1, -1).expand(k, 1, 1, -1), groups=k)
    x = F.conv2d(F.pad(x, (0, 0, *pad), mode="replicate"), kernel.view(1, 1, -1, 1).expand(k, 1, -1, 1), groups=k)
    smooth = x[0]
    total = smooth.sum(dim=(1, 2), keepdim=True)
    uniform = torch.full_like(smooth, 1.0 / (h * w))
    return torch.where(total > 0, smooth / total.clamp_min(1e-30), uniform)


def prior_histogram(prior: Tensor, *, bins: int = DEFAULT_BINS) -> ConfidenceHistogram:
    """An empty histogram for CBST-SP potentials: class c spans [0, max_n q_n(c)].

    Fill it with ``hist.update(probs * prior)`` (argmax and max of the potential, as the
    CBST paper's Algorithm 2 with p replaced by q * p), then ``cbst_thresholds`` and
    ``apply_cbst(probs, thresholds, prior)``.
    """
    return ConfidenceHistogram(prior.shape[0], bins=bins, device=prior.device, value_scale=prior.amax(dim=(1, 2)))


def write_pseudo_label(path: str | os.PathLike[str], label: np.ndarray | Tensor) -> None:
    """Write a ``(H, W)`` uint8 train-id map (255 = unlabelled) as a PNG, atomically.

    The PNG goes to a temporary name beside ``path`` and is renamed over it, so a reader
    never sees half a file.
    """
    array = label.detach().cpu().numpy() if isinstance(label, Tensor) else np.asarray(label)
    if array.ndim != 2 or array.dtype != np.uint8:
        raise ValueError(f"label must be a (H, W) uint8 array, but got shape {array.shape}, dtype {array.dtype}")
    write_with(Path(path), lambda tmp: Image.fromarray(array).save(tmp, format="PNG"))


def _json_number(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def thresholds_report(thresholds: np.ndarray | Tensor, kept_fraction: np.ndarray | Tensor,
                      class_names: Sequence[str] | None = None) -> dict[str, Any]:
    """A JSON-serialisable summary: each class's threshold and the fraction of its pixels kept.

    Args:
        thresholds: ``(K,)``.
        kept_fraction: ``(K,)`` kept / predicted pixels of each class.
        class_names: defaults to the Cityscapes names when K = 19, else ``class_<i>``.
    Returns:
        ``{"classes": {name: {"threshold", "kept_fraction"}}, "mean_threshold", "mean_kept_fraction"}``;
        non-finite numbers become None.
    """
    thr = np.asarray(torch.as_tensor(thresholds).cpu(), dtype=np.float64)
    kept = np.asarray(torch.as_tensor(kept_fraction).cpu(), dtype=np.float64)
    if thr.shape != kept.shape or thr.ndim != 1:
        raise ValueError(f"thresholds and kept_fraction must be (K,), but got {thr.shape} and {kept.shape}")
    names = list(class_names) if class_names is not None else (
        list(CLASS_NAMES) if thr.shape[0] == len(CLASS_NAMES) else [f"class_{i}" for i in range(thr.shape[0])])
    classes = {name: {"threshold": _json_number(t), "kept_fraction": _json_number(f)}
               for name, t, f in zip(names, thr, kept)}
    return {"classes": classes, "mean_threshold": _json_number(float(np.nanmean(thr))) if thr.size else None,
            "mean_kept_fraction": _json_number(float(np.nanmean(kept))) if kept.size else None}
