"""Label-free validators: scores of a segmenter computed from unlabelled target pixels.

Every score is oriented so that **higher = better** (a model the validator prefers scores
higher), which is what a sweep maximising ``select/<name>`` needs. Definitions, and where
they follow or depart from the papers, are in ``docs/selection.md``.

=========  ==========================================  =====================================
name       score                                        range (K classes)
=========  ==========================================  =====================================
entropy    -mean_i H(p_i)                               [-log K, 0]; 0 = every pixel one-hot
im         H(mean_i p_i) - mean_i H(p_i)                [0, log K] (entropy is concave)
snd        mean over images of the mean row entropy     [0, log(P - 1)] for P pixels an image
           of softmax(cos(p_i, p_j) / tau), j != i
mixval     mean of the intra- and inter-cluster         [0, 1]
           accuracies on mixed images (ICE)
dev        -(importance-weighted source risk with a     (-inf, +inf)
           control variate)
=========  ==========================================  =====================================

The functions here are pure: tensors in, numbers out. ``simtune.selection.compute`` runs
a model on the fixed target subset and calls them.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

SND_TAU = 0.05  # temperature of the similarity softmax (Saito et al. 2021)
MIX_LAMBDA = 0.55  # weight of the dominant image in a MixVal probe (Hu et al. 2023)


def pixel_entropy(probs: Tensor) -> Tensor:
    """Shannon entropy (nats) of each row.

    Args:
        probs: ``(N, K)`` class probabilities, rows summing to 1.
    Returns:
        ``(N,)``; 0 log 0 counts as 0.
    """
    return -torch.special.xlogy(probs, probs).sum(dim=-1)


def entropy_score(probs: Tensor) -> float:
    """``select/entropy``: minus the mean prediction entropy (confident models score higher).

    Args:
        probs: ``(N, K)`` softmax outputs of N target pixels.
    Returns:
        ``-mean_i H(p_i)`` in ``[-log K, 0]``.
    """
    return -float(pixel_entropy(probs.double()).mean())


def im_score(probs: Tensor) -> float:
    """``select/im``: information maximisation, confident per pixel *and* diverse overall.

    Args:
        probs: ``(N, K)`` softmax outputs of N target pixels.
    Returns:
        ``H(mean_i p_i) - mean_i H(p_i)`` in ``[0, log K]``: the mutual information
        between a pixel and its predicted class under the empirical pixel distribution.
    """
    probs = probs.double()
    marginal = probs.mean(dim=0, keepdim=True)  # (1, K)
    return float(pixel_entropy(marginal)[0] - pixel_entropy(probs).mean())


def snd_score(probs: Tensor, tau: float = SND_TAU) -> float:
    """``select/snd``: soft neighbourhood density of sampled pixels, image by image.

    For each image, the P sampled pixels' probability vectors are L2-normalised, their
    cosine similarities divided by ``tau`` and soft-maxed over the *other* pixels; the
    score is the mean entropy of those rows, averaged over images. Dense, well-separated
    clusters of predictions give high entropy (each pixel has many close neighbours).

    Args:
        probs: ``(B, P, K)`` softmax outputs of P sampled pixels in each of B images, P >= 2.
        tau: softmax temperature.
    Returns:
        Mean row entropy in ``[0, log(P - 1)]``.
    """
    if probs.dim() != 3 or probs.shape[1] < 2:
        raise ValueError(f"snd_score needs (B, P, K) probabilities with P >= 2, got {tuple(probs.shape)}")
    feats = torch.nn.functional.normalize(probs.double(), dim=-1)  # (B, P, K)
    sim = feats @ feats.transpose(1, 2) / tau  # (B, P, P)
    self_pairs = torch.eye(sim.shape[-1], dtype=torch.bool, device=sim.device)
    sim = sim.masked_fill(self_pairs, -math.inf)
    neighbours = sim.softmax(dim=-1)  # (B, P, P), 0 on the diagonal
    return float(pixel_entropy(neighbours).mean())


def mix_partners(count: int) -> Tensor:
    """Partner of each image in a MixVal probe: image i is mixed with ``(i + count // 2) % count``.

    A fixed shift of at least 1 gives every image a partner other than itself.

    Returns:
        ``(count,)`` int64 indices.
    """
    if count < 2:
        raise ValueError(f"MixVal needs at least 2 images, got {count}")
    return (torch.arange(count) + max(1, count // 2)) % count


def mix_images(images: Tensor, partners: Tensor, lam: float = MIX_LAMBDA) -> Tensor:
    """Mixup probes ``lam * x_i + (1 - lam) * x_partner(i)``.

    Args:
        images: ``(B, 3, H, W)`` preprocessed images (mixing commutes with the affine
            preprocessing, so mixing preprocessed or raw images is the same).
        partners: ``(B,)`` from ``mix_partners``.
        lam: weight of the dominant image, > 0.5 so the dominant image's label wins.
    Returns:
        ``(B, 3, H, W)``.
    """
    return lam * images + (1.0 - lam) * images[partners]


def mixval_scores(pred_mixed: Tensor, pseudo: Tensor, pseudo_partner: Tensor) -> dict[str, float]:
    """``select/mixval``: agreement of predictions on mixed images with the dominant pseudo-label.

    A pixel is *intra*-cluster where the model predicted the same class for it in both
    source images of the mix, *inter*-cluster where it predicted different classes.
    ICE (inverse-consistency accuracy) on a group = fraction of its pixels where the
    prediction on the mixed image equals the dominant image's pseudo-label.

    Args:
        pred_mixed: ``(N,)`` argmax on the mixed images, any shape flattened alike.
        pseudo: ``(N,)`` argmax on the dominant images (weight ``lam``).
        pseudo_partner: ``(N,)`` argmax on the partner images (weight ``1 - lam``).
    Returns:
        ``{"mixval_intra", "mixval_inter", "mixval"}``; ``mixval`` is the mean of the
        groups that have pixels (NaN where neither has).
    """
    pred_mixed, pseudo, pseudo_partner = (t.reshape(-1) for t in (pred_mixed, pseudo, pseudo_partner))
    correct = pred_mixed == pseudo
    same = pseudo == pseudo_partner
    intra = float(correct[same].double().mean()) if bool(same.any()) else math.nan
    inter = float(correct[~same].double().mean()) if bool((~same).any()) else math.nan
    defined = [v for v in (intra, inter) if not math.isnan(v)]
    mixval = sum(defined) / len(defined) if defined else math.nan
    return {"mixval_intra": intra, "mixval_inter": inter, "mixval": mixval}
