"""The training step of both stages (eq. 12 and eq. 13) as one function, and its weights.

A step returns a dict of named loss tensors; nothing here syncs with the host except the
one label-map copy inside ``SimMatcher.step``. ``LOSS_WEIGHTS`` names the weight of every
generator loss; which of them each ablation row turns on is ``schema.MODES``. Adding a loss
is computing it in ``adaptation_step``, one ``LOSS_WEIGHTS`` entry and its ``StageConfig``
weight.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from simtune.schema import MODES, Mode, StageConfig
from simtune.labels import IGNORE
from simtune.models import SegOutput
from simtune.sim import SimMatcher
from simtune.sim.losses import augmented_target_map, correct_source_map
from simtune.train.builders import Nets

SOURCE_LABEL = 0.0  # D's target for source maps (eq. 3); G wants target maps to look like this (eq. 2)
TARGET_LABEL = 1.0


@dataclass(frozen=True)
class StepWeights:
    """Loss weights and switches of one stage, as plain numbers (``step_weights``: ``StageConfig`` + mode).

    No defaults: every value comes from the config, whose schema holds the only defaults.
    """

    lambda_seg: float
    lambda_adv: float
    lambda_d: float
    lambda_ci: float
    lambda_seg_aux: float
    lambda_adv_aux: float
    adversarial: bool
    matching: bool
    gan: str


# Generator loss -> the StepWeights field (a StageConfig weight) that scales it (eq. 12, 13).
LOSS_WEIGHTS: dict[str, str] = {
    "loss/seg_src": "lambda_seg", "loss/seg_trg": "lambda_seg", "loss/seg_src_aux": "lambda_seg_aux",
    "loss/adv_trg": "lambda_adv", "loss/adv_trg_aux": "lambda_adv_aux",
    "loss/stuff_trg": "lambda_ci", "loss/inst_trg": "lambda_ci",
}

def step_weights(stage: StageConfig, mode: Mode, gan: str) -> StepWeights:
    """The loss weights of one stage with the switches of its ablation row (``schema.MODES``)."""
    losses = MODES[mode]
    return StepWeights(lambda_seg=stage.lambda_seg, lambda_adv=stage.lambda_adv, lambda_d=stage.lambda_d,
                       lambda_ci=stage.lambda_ci, lambda_seg_aux=stage.lambda_seg_aux,
                       lambda_adv_aux=stage.lambda_adv_aux, adversarial=losses.adversarial,
                       matching=losses.matching, gan=gan)


def seg_loss(logits: Tensor, label: Tensor) -> Tensor:
    """Pixel cross-entropy (eq. 1, 10) with logits upsampled to the label size.

    Args:
        logits: (N, K, h, w) at stride 8.
        label: (N, H, W) train ids, 255 ignored.
    """
    up = F.interpolate(logits.float(), size=label.shape[-2:], mode="bilinear", align_corners=False)  # fp32 under bf16
    return F.cross_entropy(up, label, ignore_index=IGNORE)


def gan_loss(d_logits: Tensor, target: float, kind: str) -> Tensor:
    """BCE-with-logits (paper) or least squares (LS-GAN) against a constant domain label."""
    goal = torch.full_like(d_logits, target)
    if kind == "lsgan":
        return F.mse_loss(d_logits.float(), goal.float())
    return F.binary_cross_entropy_with_logits(d_logits.float(), goal.float())


def upsampled_softmax(logits: Tensor, size: Sequence[int]) -> Tensor:
    """D's input: softmax of the logits upsampled (bilinear) to the image size, (N, K, H, W)."""
    up = F.interpolate(logits.float(), size=tuple(size), mode="bilinear", align_corners=False)  # fp32 under bf16
    return F.softmax(up, dim=1)


def set_requires_grad(module: torch.nn.Module, flag: bool) -> None:
    for p in module.parameters():
        p.requires_grad_(flag)


def adaptation_step(
    nets: Nets,
    optimizers: dict[str, torch.optim.Optimizer],
    weights: StepWeights,
    src_image: Tensor,
    src_label: Tensor,
    trg_image: Tensor | None = None,
    trg_pseudo: Tensor | None = None,
    matcher: SimMatcher | None = None,
    autocast: bool = False,
) -> dict[str, Tensor]:
    """One iteration: update G on eq. 12 (eq. 13 when ``trg_pseudo`` is given), then D.

    Args:
        src_image: (1, 3, Hs, Ws) preprocessed source image (target image in target_only mode).
        src_label: (1, Hs, Ws) its train ids.
        trg_image: (1, 3, Ht, Wt) target image; None when no loss looks at the target.
        trg_pseudo: (1, Ht, Wt) pseudo-labels (255 = unset), stage 2 only.
        matcher: stuff/instance matcher; None disables L_stf/L_ins.
        autocast: bf16 autocast (CUDA).
    Returns:
        named detached loss tensors: ``loss/seg_src``, ``loss/adv_trg``, ``loss/d``, ...
    """
    for opt in optimizers.values():
        opt.zero_grad(set_to_none=True)
    ctx = torch.autocast("cuda", dtype=torch.bfloat16) if autocast else contextlib.nullcontext()
    with ctx:
        src_out = nets.segmenter(src_image)
        trg_out = nets.segmenter(trg_image) if trg_image is not None else None
        losses = _segmentation_losses(src_out, src_label, trg_out, trg_pseudo)
        heads = _heads(nets, src_out, trg_out) if weights.adversarial and trg_out is not None else []
        trg_size = tuple(trg_image.shape[-2:]) if trg_image is not None else (0, 0)
        for suffix, _, trg_logits, disc in heads:
            set_requires_grad(disc, False)
            d_out = disc(upsampled_softmax(trg_logits, trg_size))
            losses[f"loss/adv_trg{suffix}"] = gan_loss(d_out, SOURCE_LABEL, weights.gan)
        if matcher is not None and weights.matching and trg_out is not None:
            losses.update(_matching_losses(matcher, src_out, src_label, trg_out, trg_pseudo))
    total = _weighted_total(losses, weights)
    total.backward()
    if heads:
        losses.update(_discriminator_losses(heads, tuple(src_image.shape[-2:]), trg_size, weights, ctx))
    for opt in optimizers.values():
        opt.step()
    losses["loss/total"] = total
    return {k: v.detach() for k, v in losses.items()}


def _segmentation_losses(src_out: SegOutput, src_label: Tensor, trg_out: SegOutput | None,
                         trg_pseudo: Tensor | None) -> dict[str, Tensor]:
    losses = {"loss/seg_src": seg_loss(src_out.logits, src_label)}
    if src_out.aux_logits is not None:
        losses["loss/seg_src_aux"] = seg_loss(src_out.aux_logits, src_label)
    if trg_out is not None and trg_pseudo is not None:
        losses["loss/seg_trg"] = seg_loss(trg_out.logits, trg_pseudo)
    return losses


Head = tuple[str, Tensor, Tensor, torch.nn.Module]


def _heads(nets: Nets, src_out: SegOutput, trg_out: SegOutput) -> list[Head]:
    """(suffix, source logits, target logits, discriminator) of each output head."""
    heads: list[Head] = [("", src_out.logits, trg_out.logits, nets.discriminator)]
    if nets.discriminator_aux is not None and src_out.aux_logits is not None and trg_out.aux_logits is not None:
        heads.append(("_aux", src_out.aux_logits, trg_out.aux_logits, nets.discriminator_aux))
    return heads


def _matching_losses(matcher: SimMatcher, src_out: SegOutput, src_label: Tensor, trg_out: SegOutput,
                     trg_pseudo: Tensor | None) -> dict[str, Tensor]:
    """L_stf and L_ins: source banks from L_C (eq. 4), target map L_P or eq. 11's augmented map."""
    src_map = correct_source_map(src_label, src_out.logits)
    trg_map = trg_out.logits.argmax(1)
    if trg_pseudo is not None:
        trg_map = augmented_target_map(trg_map, trg_pseudo)
    return matcher.step(src_out.features.float(), src_map, trg_out.features.float(), trg_map)


def _weighted_total(losses: dict[str, Tensor], w: StepWeights) -> Tensor:
    return sum(getattr(w, LOSS_WEIGHTS[name]) * value for name, value in losses.items())  # type: ignore[return-value]


def _discriminator_losses(heads: list[Head], src_size: tuple[int, ...], trg_size: tuple[int, ...], w: StepWeights,
                          ctx: contextlib.AbstractContextManager[object]) -> dict[str, Tensor]:
    """Eq. 3 on detached softmax maps; each domain's half divided by 2 (authors' code)."""
    out: dict[str, Tensor] = {}
    total = torch.zeros((), device=heads[0][1].device)
    with ctx:
        for suffix, src_logits, trg_logits, disc in heads:
            set_requires_grad(disc, True)
            d_src = gan_loss(disc(upsampled_softmax(src_logits.detach(), tuple(src_size))), SOURCE_LABEL, w.gan) / 2
            d_trg = gan_loss(disc(upsampled_softmax(trg_logits.detach(), trg_size)), TARGET_LABEL, w.gan) / 2
            out[f"loss/d{suffix}"] = d_src + d_trg
            total = total + w.lambda_d * (d_src + d_trg)
    total.backward()
    return out
