"""Run a segmenter on a fixed, seeded subset of unlabelled target images and score it.

``SelectionSubset`` is drawn once per run (same images and pixels at every evaluation and
in every trial of a sweep with the same seed); ``compute_validators`` runs the model on it
and returns ``{name: score}`` with higher = better (``simtune.selection.validators``).
Target images are read without labels; DEV's source images are the only labelled ones.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch import Tensor

from simtune.labels import IGNORE
from simtune.seeds import derived_seed
from simtune.selection import dev
from simtune.selection.validators import (
    MIX_LAMBDA,
    SND_TAU,
    entropy_score,
    mix_images,
    mix_partners,
    mixval_scores,
    snd_score,
)



class Items(Protocol):
    """An indexable dataset of dicts (a ``SegmentationDataset`` or a list)."""

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> dict[str, Any]: ...


@dataclass(frozen=True)
class SelectionSubset:
    """What the validators look at, fixed for a whole run.

    Attributes:
        images: ``(B, 3, H, W)`` preprocessed target *train* images, no labels.
        pixels: ``(B, P)`` flat indices into ``H * W``: SND's sampled pixels per image.
        src_images: ``(S, 3, H_s, W_s)`` labelled source images for DEV, or None (no DEV).
        src_labels: ``(S, H_s, W_s)`` their train ids (255 = ignore), or None.
        feature_pixels: pixels per image DEV samples on the feature grid.
        seed: seeds every draw (images, pixels, DEV's feature pixels).
    """

    images: Tensor
    pixels: Tensor
    src_images: Tensor | None
    src_labels: Tensor | None
    feature_pixels: int
    seed: int


def choose(total: int, count: int, seed: int) -> list[int]:
    """``min(count, total)`` distinct indices of ``range(total)``, seeded, in ascending order."""
    generator = torch.Generator().manual_seed(seed)
    return sorted(torch.randperm(total, generator=generator)[: min(count, total)].tolist())


def sample_positions(rows: int, numel: int, per_row: int, seed: int) -> Tensor:
    """``(rows, min(per_row, numel))`` distinct flat positions in ``range(numel)`` per row, seeded."""
    generator = torch.Generator().manual_seed(seed)
    count = min(per_row, numel)
    return torch.stack([torch.randperm(numel, generator=generator)[:count] for _ in range(rows)])


def load_subset(target: Items, *, images: int, pixels: int, seed: int,
                source: Items | None = None, source_images: int = 0,
                feature_pixels: int = 256) -> SelectionSubset:
    """Read the subset once: ``images`` target images (and ``source_images`` for DEV).

    Args:
        target: unlabelled target train items (dicts with ``image`` (3, H, W)).
        pixels: SND pixels per image.
        source: labelled source items (``image``, ``label``), needed when ``source_images`` > 0.
    """
    chosen = choose(len(target), images, derived_seed(seed, "subset_images"))
    picked = torch.stack([target[i]["image"] for i in chosen])
    positions = sample_positions(len(picked), picked.shape[-2] * picked.shape[-1], pixels,
                                 derived_seed(seed, "subset_pixels"))
    src_images = src_labels = None
    if source is not None and source_images >= 2:
        items = [source[i] for i in choose(len(source), source_images, derived_seed(seed, "subset_source_images"))]
        src_images = torch.stack([item["image"] for item in items])
        src_labels = torch.stack([item["label"] for item in items])
    return SelectionSubset(picked, positions, src_images, src_labels, feature_pixels, seed)


Predict = Callable[[Tensor], Any]  # (1, 3, H, W) -> an object with .features and .logits (SegOutput)


@torch.no_grad()
def compute_validators(predict: Predict, subset: SelectionSubset, device: torch.device | str = "cpu", *,
                       tau: float = SND_TAU, lam: float = MIX_LAMBDA) -> dict[str, float]:
    """Every validator on ``subset``; the caller puts the model in eval mode.

    Returns:
        ``{"entropy", "im", "snd", "mixval", "mixval_intra", "mixval_inter"}`` and ``"dev"``
        when the subset has source images; higher = better for each.
    """
    device = torch.device(device)
    images = subset.images.to(device)
    height, width = images.shape[-2:]
    entropy_sum, marginal_sum, sampled, pseudo, trg_feats = 0.0, None, [], [], []
    for i in range(len(images)):
        out = predict(images[i : i + 1])
        probs = _upsampled_probs(out.logits, (height, width))  # (K, H, W)
        flat = probs.flatten(1).T  # (H*W, K)
        entropy_sum += -entropy_score(flat) * len(flat)
        marginal_sum = flat.double().sum(0) if marginal_sum is None else marginal_sum + flat.double().sum(0)
        sampled.append(flat[subset.pixels[i].to(device)])
        pseudo.append(probs.argmax(dim=0))
        feature_seed = derived_seed(subset.seed, "target_feature_pixels", i)
        trg_feats.append(_grid_rows(out.features[0], subset.feature_pixels, feature_seed))
    assert marginal_sum is not None
    count = len(images) * height * width
    scores = {"entropy": -entropy_sum / count,
              "im": _marginal_entropy(marginal_sum / count) - entropy_sum / count,
              "snd": snd_score(torch.stack(sampled), tau)}
    scores.update(_mixval(predict, images, torch.stack(pseudo), lam))
    if subset.src_images is not None and subset.src_labels is not None:
        scores["dev"] = _dev(predict, subset, torch.cat(trg_feats), device)
    return scores


def _upsampled_probs(logits: Tensor, size: tuple[int, int]) -> Tensor:
    """Softmax of ``(1, K, h, w)`` logits upsampled bilinearly to ``size``; ``(K, H, W)`` float32."""
    up = F.interpolate(logits.float(), size=size, mode="bilinear", align_corners=False)
    return up[0].softmax(dim=0)


def _marginal_entropy(marginal: Tensor) -> float:
    return -float(torch.special.xlogy(marginal, marginal).sum())


def _mixval(predict: Predict, images: Tensor, pseudo: Tensor, lam: float) -> dict[str, float]:
    """Forward the mixed probes and score them against the pseudo-labels ``(B, H, W)``."""
    partners = mix_partners(len(images)).to(images.device)
    mixed = mix_images(images, partners, lam)
    preds = [_upsampled_probs(predict(mixed[i : i + 1]).logits, (pseudo.shape[-2], pseudo.shape[-1])).argmax(dim=0)
             for i in range(len(mixed))]
    return mixval_scores(torch.stack(preds), pseudo, pseudo[partners])


def _grid_rows(features: Tensor, per_image: int, seed: int) -> Tensor:
    """``(min(per_image, h*w), C)`` feature rows of ``(C, h, w)`` at seeded positions."""
    flat = features.float().flatten(1)  # (C, h*w)
    positions = sample_positions(1, flat.shape[1], per_image, seed)[0].to(flat.device)
    return flat[:, positions].T


def _dev(predict: Predict, subset: SelectionSubset, trg_feats: Tensor, device: torch.device) -> float:
    """DEV with the first half of the source images training the domain classifier and the
    second half as the labelled validation pixels."""
    assert subset.src_images is not None and subset.src_labels is not None
    feats, losses = [], []
    for i in range(len(subset.src_images)):
        out = predict(subset.src_images[i : i + 1].to(device))
        logits, features = out.logits.float(), out.features.float()  # (1, K, h, w), (1, C, h, w)
        label = F.interpolate(subset.src_labels[i : i + 1, None].float(), size=logits.shape[-2:],
                              mode="nearest")[:, 0].long().to(device)  # (1, h, w)
        loss = F.cross_entropy(logits, label.clamp_max(logits.shape[1] - 1), reduction="none")[0]
        positions = sample_positions(1, loss.numel(), subset.feature_pixels,
                                     derived_seed(subset.seed, "source_feature_pixels", i))[0].to(device)
        keep = positions[label.flatten()[positions] != IGNORE]
        feats.append(features[0].flatten(1)[:, keep].T)
        losses.append(loss.flatten()[keep])
    half = len(feats) // 2
    classifier = dev.fit_domain_classifier(torch.cat(feats[:half]).cpu(), trg_feats.cpu())
    val_feats, val_loss = torch.cat(feats[half:]).cpu(), torch.cat(losses[half:]).cpu()
    if len(val_loss) < 2:
        return math.nan
    weight = dev.density_ratio(dev.target_probability(val_feats, classifier))
    return -dev.dev_risk(val_loss, weight)
