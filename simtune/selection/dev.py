"""Deep embedded validation (DEV; You et al., ICML 2019) on pixel features.

DEV estimates the target risk from labelled source pixels, each weighted by the density
ratio w(x) = p_trg(x) / p_src(x) of its feature, with a control variate that cancels most
of the variance the weights add:

    L_i = w_i * loss_i,   eta = -Cov(L, w) / Var(w),   R = mean(L) + eta * mean(w) - eta.

The density ratio comes from a domain classifier d(x) = P(target | x) trained on features:
w = (n_src / n_trg) * d / (1 - d). Lower R is better; ``select/dev`` is -R.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

CLASSIFIER_STEPS = 50  # L-BFGS iterations of the logistic-regression domain classifier
CLASSIFIER_L2 = 1e-3  # weight decay of the domain classifier (features are standardised)
PROB_CLAMP = 1e-4  # d(x) is clamped to [PROB_CLAMP, 1 - PROB_CLAMP] so w stays finite


def fit_domain_classifier(src: Tensor, trg: Tensor, *, steps: int = CLASSIFIER_STEPS,
                          l2: float = CLASSIFIER_L2) -> tuple[Tensor, Tensor, Tensor]:
    """Logistic regression separating target (1) from source (0) features, deterministic.

    Args:
        src: ``(N_s, C)`` source pixel features.
        trg: ``(N_t, C)`` target pixel features.
    Returns:
        ``(mean, std, weights)``: standardisation ``(C,)``, ``(C,)`` and ``(C + 1,)``
        weights with the bias last, for ``target_probability``.
    """
    feats = torch.cat([src, trg]).double()
    labels = torch.cat([torch.zeros(len(src)), torch.ones(len(trg))]).double()
    mean, std = feats.mean(dim=0), feats.std(dim=0).clamp_min(1e-6)
    design = F.pad((feats - mean) / std, (0, 1), value=1.0)  # (N, C + 1)
    weights = torch.zeros(design.shape[1], dtype=torch.float64, requires_grad=True)
    balance = torch.where(labels > 0, len(feats) / (2.0 * len(trg)), len(feats) / (2.0 * len(src)))
    optimizer = torch.optim.LBFGS([weights], max_iter=steps, line_search_fn="strong_wolfe")

    def closure() -> Tensor:
        optimizer.zero_grad()
        # Balanced classes: d(x) then estimates P(trg|x) under equal priors, and the
        # density ratio below needs no n_src / n_trg correction.
        loss = (balance * F.binary_cross_entropy_with_logits(design @ weights, labels, reduction="none")).mean()
        loss = loss + l2 * weights[:-1].pow(2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        optimizer.step(closure)
    return mean, std, weights.detach()


def target_probability(feats: Tensor, classifier: tuple[Tensor, Tensor, Tensor]) -> Tensor:
    """d(x) = P(target | x) of ``(N, C)`` features under a ``fit_domain_classifier`` result; ``(N,)``."""
    mean, std, weights = classifier
    design = F.pad((feats.double() - mean) / std, (0, 1), value=1.0)
    return torch.sigmoid(design @ weights)


def density_ratio(p_target: Tensor) -> Tensor:
    """w = d / (1 - d) for a class-balanced domain classifier's ``(N,)`` outputs d."""
    p = p_target.double().clamp(PROB_CLAMP, 1.0 - PROB_CLAMP)
    return p / (1.0 - p)


def dev_risk(loss: Tensor, weight: Tensor) -> float:
    """DEV's control-variate estimate of the target risk.

    Args:
        loss: ``(N,)`` per-pixel loss on labelled source validation pixels.
        weight: ``(N,)`` their density ratios w.
    Returns:
        ``mean(w * loss) + eta * mean(w) - eta`` with ``eta = -Cov(w * loss, w) / Var(w)``
        (eta = 0 when all weights are equal, giving the plain mean loss). NaN for N < 2.
    """
    loss, weight = loss.double().reshape(-1), weight.double().reshape(-1)
    if loss.numel() < 2:
        return math.nan
    weighted = weight * loss
    var_w = weight.var()
    cov = ((weighted - weighted.mean()) * (weight - weight.mean())).sum() / (len(weight) - 1)
    eta = -cov / var_w if float(var_w) > 0 else torch.zeros((), dtype=torch.float64)
    return float(weighted.mean() + eta * weight.mean() - eta)
